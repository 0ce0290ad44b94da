"""One live router process under generated call load: its CPU per call, optionally py-spy.

    python bench/call/router_live.py [--rate 700] [--seconds 8] [--spy OUT.txt [--native]]
                                     [--router-src DIR] [--dialogs always|auto]

Starts a nats-server (JetStream, free loopback port), provisions what the CALL
bench stack has (peer ``loopback`` 127.0.0.1/32, callee ``uas`` registered),
runs ``python -m sipmesh_router`` as in production (the bus runtime, the wire
connection, the outbox lingering), and plays the edge: per call the INVITE,
the 200 (with ``ringing_at``, as the edge reports the 180 it relayed) and the
BYE, as requests on ``sip.route`` and ``sip.route.response`` at ``--rate``
calls/s, built with the helpers of ``router_bench.py``. After a 2 s warm-up it
reads the router's user and system CPU time from /proc over ``--seconds`` and
prints them per call, with its read and write system calls per call (socket
reads and writes: /proc/<pid>/io). With ``--spy`` py-spy records the router
meanwhile (raw format, for flamegraph.pl). ``--router-src`` puts another checkout's
``services/router/src`` first on the router's PYTHONPATH (before/after).

The load generator runs in this process and needs a core of its own at high
rates; py-spy samples wall-clock time, so a router preempted inside a socket
write (which wakes nats-server) shows there even while it uses no CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nats

from sipmesh_bus import kv, records, routing, schema
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.records import BindingSet, aor_key
from sipmesh_bus.schema import Forward, SendResponse
from sipmesh_bus.subjects import SIP_ROUTE, SIP_ROUTE_RESPONSE
from sipmesh_bus.wire import Reply, RequestFailure, WireClient
from sipmsg import Request, make_response, parse

# The repository root, so that bench.call (a namespace package) imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.call import router_bench as rb
from bench.lib.procstat import cpu_of, free_port, wait_ready

SECRET = "bench-secret-bench-secret-bench!"


async def provision(url: str) -> None:
    """The trusted peer and the callee's binding, as bench/lib/stack.py and SIPp leave them."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await kv.ensure_jetstream(js)
    peer = routing.Peer(name="loopback", cidrs=["127.0.0.1/32"])
    await (await js.key_value(kv.BUCKET_ROUTING)).put(
        routing.peer_key("loopback"), routing.encode_record(peer)
    )
    binding = rb.uas_binding(time.time(), ttl=36_000)
    value = BindingSet(aor=f"sip:uas@{rb.DOMAIN}", bindings=[binding])
    await (await js.key_value(kv.BUCKET_LOCATION)).put(
        aor_key("uas", rb.DOMAIN), records.encode_record(value)
    )
    await nc.close()


class Edge:
    """Plays the edge's side of calls over a wire connection."""

    def __init__(self, wire: WireClient) -> None:
        self.wire = wire
        self.failed = 0

    async def ask(self, subject: str, raw: bytes) -> schema.ReplyType:
        fut: asyncio.Future[Reply | RequestFailure] = asyncio.get_running_loop().create_future()

        def done(reply: Reply | RequestFailure) -> None:
            if not fut.done():
                fut.set_result(reply)

        if not self.wire.request(subject, raw, done, timeout=5.0):
            raise RuntimeError("wire down")
        reply = await fut
        if not isinstance(reply, Reply):
            raise RuntimeError(f"no reply: {reply}")
        return schema.decode_reply(reply.payload)

    async def call(self, n: int) -> None:
        try:
            fwd = await self.ask(SIP_ROUTE, rb.wrap(rb.invite(n), rb.UAC))
            assert isinstance(fwd, Forward), fwd
            req = parse(fwd.data)
            assert isinstance(req, Request)
            contact = (
                b"Contact",
                b"<sip:uas@%s:%d;transport=UDP>" % (rb.UAS[0].encode(), rb.UAS[1]),
            )
            ok = make_response(req, 200, to_tag=b"%duas" % n, headers=[contact])
            ok = ok.with_body(rb.SDP.encode(), b"application/sdp")
            up = await self.ask(
                SIP_ROUTE_RESPONSE, rb.wrap(bytes(ok), rb.UAS, fwd.context, time.time())
            )
            assert isinstance(up, SendResponse), up
            answer = parse(up.data)
            assert not isinstance(answer, Request)
            bye = rb.in_dialog("BYE", n, 2, answer)
            assert isinstance(await self.ask(SIP_ROUTE, rb.wrap(bye, rb.UAC)), Forward)
        except (AssertionError, RuntimeError) as exc:
            self.failed += 1
            if self.failed <= 3:
                print(f"call {n} failed: {exc!r}", flush=True)

    async def run(self, first: int, rate: float, seconds: float) -> int:
        """Start ``rate`` calls a second for ``seconds``; returns once all ended."""
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - start) < seconds:
            while n < int(elapsed * rate):
                task = asyncio.create_task(self.call(first + n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(0.002)
        if tasks:
            await asyncio.wait(tasks)
        return n


async def load(url: str, pid: int, a: argparse.Namespace, nats_pid: int) -> None:
    wire = WireClient(NatsConfig(url=url), name="bench-edge")
    await wire.connect()
    edge = Edge(wire)
    await edge.run(0, a.rate, 2.0)  # warm-up
    spy = None
    if a.spy:
        argv = [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-r", "500"]
        argv += ["-f", "raw", "-o", a.spy, "-d", str(int(a.seconds))]
        argv += ["--native"] if a.native else []
        spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (u0, s0), w0, nats0 = cpu_of(pid), time.monotonic(), sum(cpu_of(nats_pid))
    io0 = io_of(pid)
    n = await edge.run(10**7, a.rate, a.seconds)
    (u1, s1), w1, nats1 = cpu_of(pid), time.monotonic(), sum(cpu_of(nats_pid))
    io1 = io_of(pid)
    if spy is not None:
        spy.wait()
    user, system = (u1 - u0) / n * 1e6, (s1 - s0) / n * 1e6
    print(
        f"router, live, {n} calls in {w1 - w0:.1f} s ({edge.failed} failed): "
        f"{user + system:.0f} µs CPU per call (user {user:.0f}, system {system:.0f}); "
        f"{100 * (u1 - u0 + s1 - s0) / (w1 - w0):.0f} % of a core; "
        f"nats-server {(nats1 - nats0) / n * 1e6:.0f} µs per call; "
        f"router system calls per call: {(io1[0] - io0[0]) / n:.1f} reads, "
        f"{(io1[1] - io0[1]) / n:.1f} writes",
        flush=True,
    )
    await wire.close()


def io_of(pid: int) -> tuple[int, int]:
    """Read and write system calls of process ``pid`` so far (/proc/<pid>/io syscr, syscw)."""
    fields = dict(line.split(": ", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["syscr"]), int(fields["syscw"])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=700.0, help="calls per second")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--spy", help="py-spy raw output file")
    ap.add_argument("--native", action="store_true", help="py-spy --native (compiled code)")
    ap.add_argument("--router-src", help="services/router/src of another checkout")
    ap.add_argument("--dialogs", choices=["always", "auto"], help="router.dialogs (default: its)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        server = NatsServer(store_dir=Path(work))
        server.start()
        try:
            await provision(server.url)
            http = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
            env |= {
                "SIPMESH_NATS_URL": server.url,
                "SIPMESH_HTTP_PORT": str(http),
                "SIPMESH_ROUTER_DOMAIN": rb.DOMAIN,
                "SIPMESH_ROUTER_NONCE_SECRET": SECRET,
                "SIPMESH_ROUTER_PROBE": "false",
                "SIPMESH_ROUTER_MEDIA": "never",
            }
            if a.dialogs:
                env["SIPMESH_ROUTER_DIALOGS"] = a.dialogs
            if a.router_src:
                env["PYTHONPATH"] = a.router_src
            with (Path(work) / "router.log").open("wb") as log:
                argv = [sys.executable, "-m", "sipmesh_router"]
                router = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                await wait_ready(http, "router")
                assert server._proc is not None  # private: the bench reads its CPU time
                await load(server.url, router.pid, a, server._proc.pid)
                await asyncio.sleep(0.5)  # the last writes' acks
                print_writes(http)
            finally:
                router.terminate()
                router.wait(10)
        finally:
            server.stop()


def print_writes(port: int) -> None:
    """The router's background-write counters: every event and dialog write acked?"""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
        text = page.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        for family in ("call_events_total", "dialog_writes_total"):
            if line.startswith(f"sipmesh_router_{family}{{"):
                outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
                key = f"{family.removesuffix('_total')} {outcome}"
                totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
        if line.startswith("sipmesh_router_background_writes_pending "):
            totals["pending"] = float(line.rsplit(" ", 1)[1])
    print("background writes:", ", ".join(f"{k} {v:.0f}" for k, v in sorted(totals.items())))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
