"""The Python cost per message of the edge's I/O shells, without sockets or NATS.

    python bench/edge/shells.py [--base DIR ...] [--rounds 7] [--count 50000]

Each scenario runs in a child process (``--base`` is another checkout's root:
its ``services/edge/src`` and ``libs/bus/src`` go first on the child's
PYTHONPATH; variants and scenarios interleaved, best of ``--rounds``), timed
on ``process_time``:

- ``udp-in``: ``UdpListener.datagram_received`` into a sink that does nothing
  (what the shell adds before the compiled sink runs);
- ``udp-out``: ``UdpListener.sendto`` to a transport that does nothing;
- ``guard``: ``Guard.check`` of a loopback source (allow-listed, the SIPp
  benches) and of ``guard-open``, a source on no list (rate counted);
- ``bus``: ``BusClient.request`` through a real ``WireClient`` (its write
  buffer and the loop's write call) and the reply read back through
  ``data_received`` to the callback, ``--batch`` replies per read.

Session 6 (shared 2-core box, best of 5, against 70f06c9 with the same
compiled sipmsg): udp-in 0.12, udp-out 0.10, guard 0.22 (guard-open 1.22-1.25:
the protection's rate count), bus 2.64 -> 2.30 µs (the compiled frame parser,
the reply's callback without a wrapper, the header-less PUB inlined). Part of
``bus`` is this harness (building the frames, a loop pass per batch). Per
call (6 datagrams in, 7 out, 3 bus requests) the shells' own Python is then
about 6-8 µs of the edge's ~540 (session 5); the rest is the compiled core,
the collector and the kernel (``reg_live.py --strace``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("udp-in", "udp-out", "guard", "guard-open", "bus")
DATA = b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 40 + b"\r\n"
PAYLOAD = b"\x85" + b"p" * 700  # about an encoded Forward


class Transport:
    """Counts what is written or sent."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def sendto(self, data: bytes, _addr: object = None) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, _name: str) -> Any:
        return ("127.0.0.1", 5060)

    def close(self) -> None:
        pass


class Sink:
    """A MessageSink that only counts."""

    def __init__(self) -> None:
        self.got = 0

    def on_message(
        self,
        data: bytes,
        *,
        transport: str,
        source: tuple[str, int],
        local: tuple[str, int],
        connection: object,
    ) -> None:
        self.got += 1


def measure_udp(kind: str, count: int) -> float:
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from sipmesh_edge.metrics import EdgeMetrics  # noqa: PLC0415 - the variant's
    from sipmesh_edge.udp import UdpListener  # noqa: PLC0415

    sink = Sink()
    listener = UdpListener(sink, EdgeMetrics(CollectorRegistry()), max_size=65535)  # type: ignore[arg-type]
    transport = Transport()
    listener.connection_made(transport)  # type: ignore[arg-type]
    addr = ("198.51.100.7", 5061)
    if kind == "udp-in":
        receive = listener.datagram_received
        started = time.process_time()
        for _ in range(count):
            receive(DATA, addr)
        used = time.process_time() - started
        assert sink.got == count
    else:
        send = listener.sendto
        started = time.process_time()
        for _ in range(count):
            send(DATA, addr)
        used = time.process_time() - started
        assert transport.written == count * len(DATA)
    return used * 1e6 / count


def measure_guard(kind: str, count: int) -> float:
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from sipmesh_edge.guard import Guard  # noqa: PLC0415
    from sipmesh_edge.protection import ProtectionConfig  # noqa: PLC0415

    guard = Guard(ProtectionConfig(), CollectorRegistry(), edge_id="bench")
    sources = (
        ["127.0.0.1"] if kind == "guard" else [f"198.51.{i // 250}.{i % 250}" for i in range(1000)]
    )
    check = guard.check
    rounds = count // len(sources)
    ok = 0
    started = time.process_time()
    for _ in range(rounds):
        for source in sources:
            ok += check(source, DATA)
    used = time.process_time() - started
    assert ok == rounds * len(sources)
    return used * 1e6 / (rounds * len(sources))


async def measure_bus(count: int, batch: int) -> float:
    from sipmesh_bus.config import NatsConfig  # noqa: PLC0415
    from sipmesh_bus.wire import WireClient, _Protocol  # noqa: PLC0415
    from sipmesh_edge.bus import BusClient  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    wire = WireClient(NatsConfig(url="nats://127.0.0.1:1"), name="bench")
    wire._loop = loop
    transport = Transport()
    wire._transport = transport  # type: ignore[assignment]
    proto = _Protocol(wire)
    proto.handshaking = False
    bus = BusClient(wire, timeout=5.0, clock=loop.time)
    # bus.start() would wait for a server's PONG: subscribe as it does, by hand.
    bus._sid = wire.subscribe(bus._prefix.decode() + "*", bus._on_reply)
    sid = b"%d" % bus._sid
    got = 0

    def on_reply(_value: object) -> None:
        nonlocal got
        got += 1

    rounds = count // batch
    started = time.process_time()
    for _ in range(rounds):
        frames = []
        for _ in range(batch):
            bus.request("sip.route", PAYLOAD, on_reply)
            subject = bus._prefix + b"%x" % bus._next
            frames.append(b"MSG %b %b %d\r\n%b\r\n" % (subject, sid, len(PAYLOAD), PAYLOAD))
        await asyncio.sleep(0)  # the loop runs the scheduled write
        proto.data_received(b"".join(frames))
    used = time.process_time() - started
    assert got == rounds * batch, (got, rounds * batch)
    return used * 1e6 / (rounds * batch)


def child(kind: str, count: int, batch: int) -> float:
    import gc  # noqa: PLC0415

    gc.collect()
    gc.freeze()
    if kind.startswith("udp"):
        return measure_udp(kind, count)
    if kind.startswith("guard"):
        return measure_guard(kind, count)
    import uvloop  # noqa: PLC0415

    return uvloop.run(measure_bus(count, batch))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", action="append", default=[], help="another checkout's root")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--count", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--only", choices=KINDS, action="append")
    ap.add_argument("--kind", choices=KINDS, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.kind:
        print(child(a.kind, a.count, a.batch))
        return
    variants: list[str | None] = [*a.base, None]
    kinds = a.only or KINDS
    best: dict[tuple[str | None, str], float] = {}
    for _ in range(a.rounds):
        for kind in kinds:
            for v in variants:
                env = dict(os.environ)
                if v:
                    paths = [f"{v}/services/edge/src", f"{v}/libs/bus/src"]
                    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
                args = ["--kind", kind, "--count", str(a.count), "--batch", str(a.batch)]
                out = subprocess.run(
                    [sys.executable, __file__, *args],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                us = float(out.split()[-1])
                best[v, kind] = min(best.get((v, kind), us), us)
    print(f"best of {a.rounds}, us per message (bus: batch {a.batch}):")
    for v in variants:
        cells = ", ".join(f"{kind} {best[v, kind]:.3f}" for kind in kinds)
        print(f"  {v or 'this checkout'}: {cells}")


if __name__ == "__main__":
    main()
