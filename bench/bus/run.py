"""CPU cost of one NATS request/reply round trip, per process, for several client variants.

Run with ``.venv/bin/python bench/bus/run.py`` (``--duration``, ``--rate``,
``--window``, ``--burst``, ``--only name,name``). It starts a real nats-server
(:class:`NatsServer` on a free loopback port) and, per scenario and per load
mode, two fresh processes: a responder and a requester (this same file, with
``--role``). The requester offers the load, and over the measured window reads
``utime + stime`` of itself, the responder and nats-server from
``/proc/<pid>/stat`` (all threads). CPU µs per round trip = CPU time / replies
received in the window. A warm-up of 1 s comes first.

Load modes:

- ``rate``: ``--rate`` requests/s, each issued from its own ``call_at`` timer
  (asyncio's timer resolution makes that about 2 per loop iteration at 2,000/s);
- ``burst``: the same rate, ``--burst`` requests issued together per timer
  (how much coalescing many requests into one loop iteration saves);
- ``max``: closed loop, ``--window`` requests in flight, each reply issues the
  next one (requester, responder and nats-server share the box's cores).

Requesters: ``busclient`` is the edge's real :class:`sipmesh_edge.bus.BusClient`
on nats-py; ``minimal`` is the same pattern (one ``<inbox>.*`` subscription,
a pending dict keyed by token) on :class:`minimal_client.MinimalClient`.

Responders: ``serve`` copies :meth:`sipmesh_bus.runtime.Service.serve` (a
semaphore, one task per message, ``msg.respond``, the Prometheus counter and
histogram); ``service`` is the real ``Service.serve`` itself; ``cb`` is a
nats-py callback that replies with ``nc.publish``; ``iter`` is ``async for msg
in sub.messages``; ``minimal`` is a sync callback on :class:`MinimalClient`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import uvloop
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Counter, Histogram

from sipmesh_bus.config import NatsConfig, ServiceConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.runtime import Service
from sipmesh_bus.wire import WireClient
from sipmesh_edge.bus import BusClient, BusFailure

# The repository root, so that bench.bus (a namespace package) imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.bus.minimal_client import MinimalClient

SUBJECT = "bench.bus.req"
QUEUE = "bench"
REQUEST = b"x" * 800  # about an edge envelope with a REGISTER
REPLY = b"y" * 400
WARMUP = 1.0
TICK = os.sysconf("SC_CLK_TCK")

TUNED: dict[str, Any] = {
    "no_echo": True,
    "skip_subject_validation": True,
    "pending_size": 16 * 1024 * 1024,
    "flusher_queue_size": 16384,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    requester: str  # busclient | minimal
    responder: str  # serve | service | cb | iter | minimal
    opts: str = "default"  # default | tuned (nats-py connect options, both sides)
    loop: str = "asyncio"  # asyncio | uvloop (both sides)


SCENARIOS = (
    Scenario(name="current", requester="busclient", responder="serve"),
    Scenario(name="cb", requester="busclient", responder="cb"),
    Scenario(name="iter", requester="busclient", responder="iter"),
    Scenario(name="tuned", requester="busclient", responder="cb", opts="tuned"),
    Scenario(name="uvloop", requester="busclient", responder="cb", loop="uvloop"),
    Scenario(name="current-uvloop", requester="busclient", responder="serve", loop="uvloop"),
    Scenario(name="service-uvloop", requester="busclient", responder="service", loop="uvloop"),
    Scenario(name="min-responder", requester="busclient", responder="minimal"),
    Scenario(name="minimal", requester="minimal", responder="minimal"),
    Scenario(name="minimal-uvloop", requester="minimal", responder="minimal", loop="uvloop"),
)
MODES = ("rate", "burst", "max")


def cpu_seconds(pid: int) -> float:
    """utime + stime of all threads of ``pid``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def nats_connect(url: str, opts: str) -> NatsClient:
    options = TUNED if opts == "tuned" else {}
    return await nats.connect(url, **options)


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    return host, int(port)


# -- responder ---------------------------------------------------------------


async def respond(args: argparse.Namespace) -> None:
    if args.responder == "minimal":
        mc = MinimalClient()
        await mc.connect(*host_port(args.url), name="responder")

        def on_req(_subject: bytes, reply: bytes, _data: bytes) -> None:
            if reply:
                mc.publish(reply, REPLY)

        mc.subscribe(SUBJECT, on_req, queue=QUEUE)
        await mc.flush()
        print("ready", flush=True)
        assert mc.closed is not None
        await mc.closed
        return
    if args.responder == "service":
        await serve_with_service(args)
        return
    nc = await nats_connect(args.url, args.opts)
    task: asyncio.Task[None] | None = None
    if args.responder == "cb":

        async def on_msg(msg: Msg) -> None:
            await nc.publish(msg.reply, REPLY)

        await nc.subscribe(SUBJECT, queue=QUEUE, cb=on_msg)
    elif args.responder == "serve":
        await subscribe_like_serve(nc)
    elif args.responder == "iter":
        sub = await nc.subscribe(SUBJECT, queue=QUEUE)

        async def iterate() -> None:
            async for msg in sub.messages:
                await nc.publish(msg.reply, REPLY)

        task = asyncio.create_task(iterate())
    else:
        raise SystemExit(f"unknown responder {args.responder}")
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()
    if task is not None:
        task.cancel()


async def subscribe_like_serve(nc: NatsClient) -> None:
    """What Service.serve does per message, with a handler that answers at once."""
    registry = CollectorRegistry()
    requests = Counter("requests", "", ["subject", "outcome"], registry=registry)
    latency = Histogram("latency", "", ["subject"], registry=registry)
    limit = asyncio.Semaphore(1000)
    inflight: set[asyncio.Task[None]] = set()

    async def handler(data: bytes) -> bytes:
        return REPLY

    async def handle(msg: Msg) -> None:
        started = time.perf_counter()
        reply = await handler(msg.data)
        if msg.reply:
            await msg.respond(reply)
        requests.labels(msg.subject, "ok").inc()
        latency.labels(msg.subject).observe(time.perf_counter() - started)

    async def on_msg(msg: Msg) -> None:
        await limit.acquire()
        task = asyncio.create_task(handle(msg))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        task.add_done_callback(lambda _t: limit.release())

    await nc.subscribe(SUBJECT, queue=QUEUE, cb=on_msg)


async def serve_with_service(args: argparse.Namespace) -> None:
    """The real :meth:`Service.serve` (HTTP on a free loopback port, no signals)."""
    config = ServiceConfig(nats=NatsConfig(url=args.url))

    async def handler(_data: bytes) -> bytes:
        return REPLY

    async with Service("bench", config, install_signal_handlers=False) as svc:
        await svc.serve(SUBJECT, handler, queue=QUEUE, decode=bytes, encode=bytes)
        await svc.nc.flush()
        print("ready", flush=True)
        await svc.wait_stopped()


# -- requester ---------------------------------------------------------------


class Requester:
    """Offers the load and counts replies; ``send`` issues one request."""

    def __init__(self) -> None:
        self.replies = 0
        self.failures = 0
        self.send: Callable[[], None] = lambda: None
        self.on_reply: Callable[[], None] = lambda: None


async def make_busclient(args: argparse.Namespace, req: Requester) -> Callable[[], None]:
    # The edge's BusClient on a wire connection (as Edge.start builds it).
    wire = WireClient(NatsConfig(url=args.url), name="bench-requester")
    await wire.connect()
    loop = asyncio.get_running_loop()
    bus = BusClient(wire, timeout=5.0, clock=loop.time)
    await bus.start()

    def got(value: bytes | BusFailure) -> None:
        if isinstance(value, BusFailure):
            req.failures += 1
        else:
            req.replies += 1
        req.on_reply()

    def send() -> None:
        bus.request(SUBJECT, REQUEST, got)

    return send


async def make_minimal(args: argparse.Namespace, req: Requester) -> Callable[[], None]:
    mc = MinimalClient()
    await mc.connect(*host_port(args.url), name="requester")
    prefix = b"_INBOX.bench%d." % os.getpid()
    pending: dict[bytes, None] = {}
    counter = 0

    def on_reply(subject: bytes, _reply: bytes, _data: bytes) -> None:
        if pending.pop(subject[len(prefix) :], 0) is None:
            req.replies += 1
            req.on_reply()

    mc.subscribe(prefix.decode() + "*", on_reply)
    await mc.flush()
    subject = SUBJECT.encode()

    def send() -> None:
        nonlocal counter
        counter += 1
        token = b"%x" % counter
        pending[token] = None
        mc.publish(subject, REQUEST, prefix + token)

    return send


async def request(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    req = Requester()
    maker = make_minimal if args.requester == "minimal" else make_busclient
    send = await maker(args, req)
    pids = {"requester": os.getpid(), "responder": args.responder_pid, "nats": args.nats_pid}
    pids = {k: p for k, p in pids.items() if p}  # 0: not measured (profiling by hand)
    stop = False
    if args.mode == "max":

        def again() -> None:
            if not stop:
                send()

        req.on_reply = again
        for _ in range(args.window):
            send()
    else:
        per_tick = args.burst if args.mode == "burst" else 1
        interval = per_tick / args.rate
        due = loop.time()

        def tick() -> None:
            nonlocal due
            if stop:
                return
            now = loop.time()
            while due <= now:
                for _ in range(per_tick):
                    send()
                due += interval
            # Never closer than 1 ms: uvloop's timers are whole milliseconds,
            # and a shorter delay fires at once and spins.
            loop.call_at(max(due, now + 0.001), tick)

        tick()
    await asyncio.sleep(WARMUP)
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    n0, t0 = req.replies, time.monotonic()
    await asyncio.sleep(args.duration)
    cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
    n1, t1 = req.replies, time.monotonic()
    stop = True
    n = max(n1 - n0, 1)
    result = {
        "rps": n / (t1 - t0),
        "failures": req.failures,
        **{f"us_{k}": (cpu1[k] - cpu0[k]) * 1e6 / n for k in pids},
    }
    print(json.dumps(result), flush=True)


# -- orchestration -----------------------------------------------------------


def nats_pid(server: NatsServer) -> int:
    ports = list((server.store_dir / "ports").glob("nats-server_*.ports"))
    return int(ports[0].stem.split("_")[1])


def run_point(
    args: argparse.Namespace, url: str, npid: int, sc: Scenario, mode: str
) -> dict[str, Any]:
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--url", url, "--opts", sc.opts, "--loop", sc.loop]
    resp = subprocess.Popen(
        [*me, "--role", "responder", "--responder", sc.responder, *common],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert resp.stdout is not None
        if resp.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{sc.name}: responder did not start")
        out = subprocess.run(
            [
                *me,
                "--role",
                "requester",
                "--requester",
                sc.requester,
                "--mode",
                mode,
                "--responder-pid",
                str(resp.pid),
                "--nats-pid",
                str(npid),
                "--duration",
                str(args.duration),
                "--rate",
                str(args.rate),
                "--burst",
                str(args.burst),
                "--window",
                str(args.window),
                *common,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=args.duration + 60,
        )
    finally:
        resp.terminate()
        resp.wait()
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def orchestrate(args: argparse.Namespace) -> None:
    only = set(args.only.split(",")) if args.only else None
    scenarios = [s for s in SCENARIOS if only is None or s.name in only]
    modes = args.modes.split(",")
    print(
        f"duration {args.duration} s, rate {args.rate}/s, burst {args.burst}, window {args.window}"
    )
    print(
        "| scenario | requester | responder | opts | loop | mode | req/s | "
        "CPU µs/RT requester | responder | nats-server | total |"
    )
    print("|---|---|---|---|---|---|--:|--:|--:|--:|--:|")
    with tempfile.TemporaryDirectory() as tmp, NatsServer(store_dir=Path(tmp)) as server:
        npid = nats_pid(server)
        for sc in scenarios:
            for mode in modes:
                r = run_point(args, server.url, npid, sc, mode)
                total = r["us_requester"] + r["us_responder"] + r["us_nats"]
                print(
                    f"| {sc.name} | {sc.requester} | {sc.responder} | {sc.opts} | {sc.loop} | "
                    f"{mode} | {r['rps']:,.0f} | {r['us_requester']:.1f} | "
                    f"{r['us_responder']:.1f} | {r['us_nats']:.1f} | {total:.1f} |",
                    flush=True,
                )
                if r["failures"]:
                    print(f"  ({r['failures']} failures)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--role", choices=("orchestrate", "responder", "requester"), default="orchestrate"
    )
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--burst", type=int, default=16)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--only", default="", help="comma-separated scenario names")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--url", default="")
    p.add_argument("--opts", default="default")
    p.add_argument("--loop", default="asyncio")
    p.add_argument("--requester", default="busclient")
    p.add_argument("--responder", default="cb")
    p.add_argument("--mode", default="rate")
    p.add_argument("--responder-pid", type=int, default=0)
    p.add_argument("--nats-pid", type=int, default=0)
    args = p.parse_args()
    if args.role == "orchestrate":
        orchestrate(args)
        return
    coro = respond(args) if args.role == "responder" else request(args)
    if args.loop == "uvloop":
        uvloop.run(coro)
    else:
        asyncio.run(coro)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
