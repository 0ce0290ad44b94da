"""CPU per request of ``Service.serve`` and of ``WireClient.request``, over a real nats-server.

    python libs/bus/bench/serve_bench.py [--base SRC ...] [--requests 20000]
        [--clients 1] [--window 64] [--rounds 5] [--mode inline|suspend]
        [--delays 0,0.0005]

Starts a nats-server (port 0). Each round runs, for each variant (every
``--base`` given, a ``libs/bus/src`` of another checkout, then this one), a
responder process (``Service.serve`` on ``bench.serve``: decode an
:class:`~sipmesh_bus.schema.Envelope` of a 500-byte REGISTER, answer a
:class:`~sipmesh_bus.schema.SendResponse`) and a requester process
(``--clients`` processes of ``WireClient.request`` with ``--window``
requests in flight each). ``--delays`` runs this checkout once per
responder ``nats.write_delay`` given (for a variant that has that setting:
tried in session 5, a delay of 500 us cost more than it saved, closed loop). It prints, per
variant, the best-of-rounds CPU microseconds per request of the responder
(from ``/proc``), of the requester (its own ``process_time``) and of
nats-server. Variants alternate inside each round, so the box's load hits
them alike. ``--mode suspend`` makes the handler await ``asyncio.sleep(0)``
(a task per request, as the registrar's compare-and-set write does). Both
processes run on uvloop (as ``run_service`` does) unless ``--asyncio``.

What it showed (session 5, 2-core box, best of 5): the responder spends 4.5
us per request with 16 in flight (frames batched: one read and one write
carry many) but 12.5 us with 4 clients of one request each; the Python of the
bus layer is ~3-4 us of either (``inproc_bench.py``), the rest is the
epoll/read/write syscalls of one event-loop iteration per message (py-spy
--native: ``write`` alone ~40 % of the responder's samples). So the bus's CPU
per message falls with messages per loop iteration, i.e. with load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
SUBJECT = "bench.serve"
REGISTER = (
    b"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1-1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:user00001@127.0.0.1>;tag=1234-1\r\n"
    b"To: <sip:user00001@127.0.0.1>\r\nCall-ID: 1@127.0.0.1\r\nCSeq: 1 REGISTER\r\n"
    b"Contact: <sip:user00001@127.0.0.1:5062;transport=UDP>\r\n"
    b"Expires: 3600\r\nUser-Agent: sipp-bench\r\nContent-Length: 0\r\n\r\n"
)


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def responder(url: str, mode: str, write_delay: float) -> None:
    from sipmesh_bus import schema  # noqa: PLC0415 - imported from the variant's path
    from sipmesh_bus.config import HttpConfig, NatsConfig, ServiceConfig  # noqa: PLC0415
    from sipmesh_bus.runtime import Service  # noqa: PLC0415

    answer = schema.SendResponse(data=REGISTER.replace(b"REGISTER sip", b"SIP/2.0 200 OK sip"))

    async def handle(env: schema.Envelope) -> schema.SendResponse:
        if mode == "suspend":
            await asyncio.sleep(0)
        return answer

    nats = NatsConfig(url=url)
    if write_delay:  # a nats setting to try, in a variant that has it
        nats = NatsConfig(url=url, write_delay=write_delay)  # type: ignore[call-arg]
    config = ServiceConfig(nats=nats, http=HttpConfig(host="127.0.0.1", port=0))
    async with Service("bench", config, install_signal_handlers=True) as svc:
        await svc.serve(SUBJECT, handle, queue="bench", decode=schema.decode_envelope)
        print("ready", flush=True)
        await svc.wait_stopped()


async def requester(url: str, count: int, window: int) -> None:
    from sipmesh_bus import schema  # noqa: PLC0415
    from sipmesh_bus.config import NatsConfig  # noqa: PLC0415
    from sipmesh_bus.wire import Reply, RequestFailure, WireClient  # noqa: PLC0415

    payload = schema.encode(
        schema.Envelope(
            edge_id="bench-edge",
            transport="udp",
            source_host="127.0.0.1",
            source_port=5062,
            local_host="127.0.0.1",
            local_port=5060,
            received_at=time.time(),
            data=REGISTER,
        )
    )
    wire = WireClient(NatsConfig(url=url), name="bench-client")
    await wire.connect()
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    sent = answered = failed = 0

    def on_reply(value: Reply | RequestFailure) -> None:
        nonlocal answered, failed
        answered += 1
        if not isinstance(value, Reply) or value.status is not None:
            failed += 1
        if sent < count:
            send()
        elif answered == count and not done.done():
            done.set_result(None)

    def send() -> None:
        nonlocal sent
        sent += 1
        wire.request(SUBJECT, payload, on_reply, timeout=5.0)

    # Warm-up: the responder's first requests build its metric series.
    for _ in range(200):
        reply = await wire.ask(SUBJECT, payload, timeout=5.0)
        assert isinstance(reply, Reply), reply
        assert reply.status is None, reply
    print("go", flush=True)
    sys.stdin.readline()
    started = time.process_time()
    for _ in range(min(window, count)):
        send()
    await done
    used = time.process_time() - started
    print(f"{used} {failed}", flush=True)
    await wire.close()


def run_round(
    url: str, variant: tuple[str | None, float], a: argparse.Namespace
) -> tuple[float, ...]:
    src, delay = variant
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    me = [sys.executable, __file__, "--url", url, *(["--asyncio"] if a.asyncio else [])]
    serving = subprocess.Popen(  # noqa: S603 - this script, the variant's path
        [*me, "--role", "responder", "--mode", a.mode, "--write-delay", str(delay)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    share = a.requests // a.clients
    asking: list[subprocess.Popen[str]] = []
    try:
        assert serving.stdout is not None
        assert serving.stdout.readline().strip() == "ready"
        for _ in range(a.clients):
            client = subprocess.Popen(  # noqa: S603
                [*me, "--role", "requester", "--requests", str(share), "--window", str(a.window)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            asking.append(client)
            assert client.stdout is not None
            assert client.stdout.readline().strip() == "go"
        nats_pid = int(os.environ["BENCH_NATS_PID"])
        before = cpu(serving.pid), cpu(nats_pid)
        wall = time.perf_counter()
        for client in asking:
            assert client.stdin is not None
            client.stdin.write("\n")
            client.stdin.flush()
        used = failed = 0.0
        for client in asking:
            assert client.stdout is not None
            spent, lost = client.stdout.readline().split()
            used += float(spent)
            failed += int(lost)
        wall = time.perf_counter() - wall
        after = cpu(serving.pid), cpu(nats_pid)
        if failed:
            print(f"  ({failed:.0f} requests failed)", file=sys.stderr)
    finally:
        for client in asking:
            client.wait()
        serving.terminate()
        serving.wait()
    per = 1e6 / (share * a.clients)
    return (
        (after[0] - before[0]) * per,
        used * per,
        (after[1] - before[1]) * per,
        share * a.clients / wall,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", action="append", default=[], help="PYTHONPATH of another variant")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mode", choices=("inline", "suspend"), default="inline")
    ap.add_argument("--clients", type=int, default=1, help="requester processes")
    ap.add_argument(
        "--delays", default="0", help="the responder's write_delay values for this checkout"
    )
    ap.add_argument("--write-delay", type=float, default=0.0)
    ap.add_argument("--asyncio", action="store_true", help="asyncio's loop, not uvloop")
    ap.add_argument("--role", choices=("responder", "requester"))
    ap.add_argument("--url")
    a = ap.parse_args()
    run = asyncio.run
    if not a.asyncio:
        import uvloop  # noqa: PLC0415 - what run_service uses when installed

        run = uvloop.run
    if a.role == "responder":
        run(responder(a.url, a.mode, a.write_delay))
        return
    if a.role == "requester":
        run(requester(a.url, a.requests, a.window))
        return
    from sipmesh_bus.natsserver import NatsServer  # noqa: PLC0415

    variants: list[tuple[str | None, float]] = [(b, 0.0) for b in a.base]
    variants += [(None, float(d)) for d in a.delays.split(",")]
    best: dict[tuple[str | None, float], list[tuple[float, ...]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as store:
        server = NatsServer(store_dir=Path(store))
        server.start()
        try:
            os.environ["BENCH_NATS_PID"] = str(server._proc.pid)  # type: ignore[union-attr]
            for r in range(a.rounds):
                for v in variants:
                    figures = run_round(server.url, v, a)
                    best[v].append(figures)
                    print(
                        f"round {r}: {label(v)}: responder {figures[0]:.1f} us, requester "
                        f"{figures[1]:.1f} us, nats-server {figures[2]:.1f} us, {figures[3]:.0f}/s",
                        flush=True,
                    )
        finally:
            server.stop()
    print(
        f"best of {a.rounds}, {a.requests} requests, {a.clients} clients of window "
        f"{a.window}, mode {a.mode}:"
    )
    for v, rows in best.items():
        print(
            f"  {label(v)}: responder {min(r[0] for r in rows):.1f} us/req, "
            f"requester {min(r[1] for r in rows):.1f} us/req, "
            f"nats-server {min(r[2] for r in rows):.1f} us/req, "
            f"{max(r[3] for r in rows):.0f}/s"
        )


def label(variant: tuple[str | None, float]) -> str:
    src, delay = variant
    return (src or "this checkout") + (f" (write_delay {delay * 1e6:.0f} us)" if delay else "")


if __name__ == "__main__":
    main()
