"""One live edge process under REG-AUTH load: its CPU per exchange, optionally py-spy.

    python bench/edge/reg_live.py [--rate 2000] [--seconds 6] [--spy OUT.txt] [--strace OUT.txt]
                                  [--edge-src DIR] [--bus-src DIR]

Starts a nats-server (JetStream, free loopback port) and ``python -m
sipmesh_edge`` as in production (the bus runtime, the wire connection, the GC
settings of ``__main__``), then plays the phones and the registrar from this
process: per exchange a REGISTER over UDP, the 401 the fake registrar answers on
``sip.register`` (a real queue subscription on the wire client, a
``SendResponse`` built with ``make_response``), the REGISTER again with
Authorization, the 200. Exchanges start at ``--rate`` per second (open loop,
paced every 2 ms), each user its own source port. After a 2 s warm-up it reads
the edge's user and system CPU time from /proc over ``--seconds`` and prints
them per exchange. With ``--spy`` py-spy (``--native``) records the edge
meanwhile; with ``--strace`` strace counts its system calls (printed per
exchange; the ptrace slows the edge, so its CPU figure is then too high).
``--edge-src`` / ``--bus-src`` put another checkout's ``services/edge/src`` /
``libs/bus/src`` first on the edge's PYTHONPATH (before/after).

The load generator needs most of a core at 2,000/s; the edge's CPU is read
from /proc, so the generator's own CPU is not in the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sipmesh_bus import schema
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.subjects import SIP_REGISTER
from sipmesh_bus.wire import WireClient
from sipmsg import Request, make_response, parse

# The repository root, so that bench.lib (a namespace package) imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.lib.procstat import cpu_of, free_port, wait_ready

USERS = 2000
SOCKETS = 64


def register(user: int, port: int, seq: int, cseq: int, *, auth: bool) -> bytes:
    """A linphone-like REGISTER of ``user`` (digest Authorization when ``auth``)."""
    n = user
    authorization = (
        f'Authorization: Digest realm="example.com", nonce="abc{seq:x}", algorithm=MD5, '
        f'username="u{n}", uri="sip:example.com", response="0123456789abcdef0123456789abcdef", '
        f'cnonce="x{n:x}", nc=00000001, qop=auth\r\n'
        if auth
        else ""
    )
    return (
        f"REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK.{seq:08x}{int(auth)};rport\r\n"
        f"From: <sip:u{n}@example.com>;tag=f{n:x}\r\n"
        f"To: sip:u{n}@example.com\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Call-ID: c{n:x}-reg@127.0.0.1\r\n"
        f"Max-Forwards: 70\r\n"
        f"Supported: replaces, outbound, gruu, path\r\n"
        f"Contact: <sip:u{n}@127.0.0.1:{port};transport=udp>;expires=3600"
        f';+sip.instance="<urn:uuid:0e4b1a2c-2bd0-4b49-9a35-{n:012x}>"\r\n'
        f"{authorization}"
        f"Expires: 3600\r\n"
        f"User-Agent: Linphone-Desktop/5.2.0 (bench) LinphoneSDK/5.2.0\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


class Registrar:
    """Answers ``sip.register``: 401 without Authorization, 200 with it."""

    def __init__(self, wire: WireClient) -> None:
        self.wire = wire
        self.answered = 0

    def on_request(
        self, _subject: bytes, reply: bytes, payload: bytes, _status: int | None
    ) -> None:
        env = schema.decode_envelope(payload)
        req = parse(env.data)
        assert isinstance(req, Request)
        if req.header("authorization") is None:
            resp = make_response(
                req,
                401,
                headers=[
                    (
                        b"WWW-Authenticate",
                        b'Digest realm="example.com", nonce="0123456789abcdef", '
                        b'algorithm=MD5, qop="auth"',
                    )
                ],
                to_tag=b"t401",
            )
        else:
            resp = make_response(
                req,
                200,
                headers=[(b"Contact", req.header("contact") or b""), (b"Expires", b"3600")],
                to_tag=b"t200",
            )
        self.answered += 1
        self.wire.publish(reply, schema.encode(schema.SendResponse(data=bytes(resp))))


class Phones(asyncio.DatagramProtocol):
    """Users spread over a few client sockets; each exchange is REGISTER, 401, REGISTER, 200."""

    def __init__(self, edge: tuple[str, int]) -> None:
        self.edge = edge
        self.transports: list[asyncio.DatagramTransport] = []
        self.ports: list[int] = []
        self.seq = 0
        self.user = 0
        self.started = 0
        self.done = 0
        self.other = 0
        self.open: dict[bytes, tuple[int, int, int]] = {}  # Call-ID -> user, socket, seq

    def start_one(self) -> None:
        self.seq += 1
        self.user = (self.user + 1) % USERS
        sock = self.user % len(self.transports)
        call_id = b"c%x-reg@127.0.0.1" % self.user
        if call_id in self.open:
            return  # that user is still busy
        self.open[call_id] = (self.user, sock, self.seq)
        self.started += 1
        data = register(self.user, self.ports[sock], self.seq, 1, auth=False)
        self.transports[sock].sendto(data, self.edge)

    def on_datagram(self, data: bytes) -> None:
        at = data.find(b"\r\nCall-ID: ")
        call_id = data[at + 11 : data.find(b"\r\n", at + 2)]
        entry = self.open.get(call_id)
        if entry is None:
            self.other += 1
            return
        user, sock, seq = entry
        if data.startswith(b"SIP/2.0 401"):
            data = register(user, self.ports[sock], seq, 2, auth=True)
            self.transports[sock].sendto(data, self.edge)
        elif data.startswith(b"SIP/2.0 200"):
            del self.open[call_id]
            self.done += 1
        else:
            self.other += 1


class _Sock(asyncio.DatagramProtocol):
    def __init__(self, phones: Phones) -> None:
        self.phones = phones

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.phones.on_datagram(data)


async def load(url: str, pid: int, edge: tuple[str, int], a: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    wire = WireClient(NatsConfig(url=url), name="bench-registrar")
    await wire.connect()
    registrar = Registrar(wire)
    wire.subscribe(SIP_REGISTER, registrar.on_request, queue="registrar")
    await wire.flush()
    phones = Phones(edge)
    for _ in range(SOCKETS):
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Sock(phones), local_addr=("127.0.0.1", 0)
        )
        phones.transports.append(transport)
        phones.ports.append(transport.get_extra_info("sockname")[1])

    async def run(seconds: float) -> None:
        begin = loop.time()
        sent = 0
        while (elapsed := loop.time() - begin) < seconds:
            due = int(elapsed * a.rate)
            while sent < due:
                phones.start_one()
                sent += 1
            await asyncio.sleep(0.002)

    await run(a.warmup)  # warm-up (past 32 s: Timer J frees as many transactions as come)
    done0 = phones.done
    tracer = None
    if a.strace:
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(pid), "-o", a.strace], stderr=subprocess.DEVNULL
        )
        await asyncio.sleep(0.2)  # attached
    user0, sys0 = cpu_of(pid)
    wall0 = time.perf_counter()
    await run(a.seconds)
    user1, sys1 = cpu_of(pid)
    if tracer is not None:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(10)
    wall = time.perf_counter() - wall0
    done = phones.done - done0
    await asyncio.sleep(0.5)
    cpu = (user1 - user0) + (sys1 - sys0)
    print(
        f"rate {a.rate:.0f}/s over {wall:.1f} s: {done} exchanges done ({done / wall:.0f}/s), "
        f"{len(phones.open)} open, {phones.other} other; edge CPU {cpu:.2f} s "
        f"(user {user1 - user0:.2f}, sys {sys1 - sys0:.2f}) = "
        f"{cpu / max(done, 1) * 1e6:.1f} us per exchange"
    )
    if a.strace:
        print("system calls per exchange (strace -c; its ptrace inflates the CPU above):")
        print(syscalls_per_exchange(Path(a.strace).read_text(), phones.done - done0))
    for t in phones.transports:
        t.close()
    await wire.close()


def syscalls_per_exchange(summary: str, exchanges: int) -> str:
    """``strace -c``'s table as calls per exchange, most frequent first."""
    rows: list[tuple[float, str]] = []
    for line in summary.splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            rows.append((int(fields[3]) / max(exchanges, 1), fields[-1]))
    return "\n".join(f"  {name:16} {per:6.2f}" for per, name in sorted(rows, reverse=True))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=2000.0, help="REG-AUTH exchanges per second")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    ap.add_argument("--spy", help="py-spy raw output file (--native)")
    ap.add_argument("--strace", help="strace -c output file: system calls per exchange")
    ap.add_argument("--edge-src", help="services/edge/src of another checkout")
    ap.add_argument("--bus-src", help="libs/bus/src of another checkout")
    ap.add_argument(
        "--challenge",
        action="store_true",
        help="the edge answers the first REGISTER's 401 itself (challenge_registers), as deployed",
    )
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        server = NatsServer(store_dir=Path(work))
        server.start()
        try:
            http = free_port()
            sip = free_port(socket.SOCK_DGRAM)
            env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
            env |= {"SIPMESH_NATS_URL": server.url, "SIPMESH_HTTP_PORT": str(http)}
            if a.challenge:
                env |= {
                    "SIPMESH_CHALLENGE_REGISTERS": "true",
                    "SIPMESH_REGISTRAR_AUTH": "true",
                    "SIPMESH_REGISTRAR_NONCE_SECRET": "bench-" + "0" * 40,
                }
            paths = [p for p in (a.edge_src, a.bus_src) if p]
            if paths:
                env["PYTHONPATH"] = os.pathsep.join(paths)
            argv = [sys.executable, "-m", "sipmesh_edge", "--sip-host", "127.0.0.1"]
            argv += ["--sip-port", str(sip), "--edge-id", "bench"]
            with (Path(work) / "edge.log").open("wb") as log:
                edge = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            spy = None
            try:
                await wait_ready(http, "edge")
                if a.spy:
                    spy = subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "--native",
                            "--format",
                            "raw",
                            "-r",
                            "500",
                            "-d",
                            str(int(a.seconds + 2)),
                            "-p",
                            str(edge.pid),
                            "-o",
                            a.spy,
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                await load(server.url, edge.pid, ("127.0.0.1", sip), a)
                if spy is not None:
                    spy.wait(60)
            finally:
                edge.terminate()
                edge.wait(10)
        finally:
            server.stop()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
