"""The registrar's compare-and-set write alone: client CPU per write, wire vs nats-py.

    python bench/register/cas_bench.py [--writes 4000] [--concurrency 16] [--rounds 3]

Starts a private nats-server with JetStream (free loopback port), then times
``Registrar._write`` (one KV CAS write per authenticated REGISTER: the record
with ``Nats-Expected-Last-Subject-Sequence`` and ``Nats-TTL``, the ack
decoded) from ``--concurrency`` tasks, each to fresh keys, first on nats-py's
connection (the registrar without a wire), then as an HPUB request on a
:class:`~sipmesh_bus.wire.WireClient`. Prints this process's CPU time per write
(``time.process_time``; the server's is not counted) and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

import nats
from prometheus_client import CollectorRegistry

from sipmesh_bus import kv, records
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.wire import WireClient
from sipmesh_registrar.app import Registrar
from sipmesh_registrar.config import RegistrarConfig, RegistrarSettings


async def measure(
    url: str, *, use_wire: bool, writes: int, concurrency: int
) -> tuple[float, float]:
    """(CPU µs, wall µs) per write."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await kv.ensure_jetstream(js)
    wire = None
    if use_wire:
        wire = WireClient(NatsConfig(url=url), name="cas-bench")
        await wire.connect()
    config = RegistrarConfig(
        nats=NatsConfig(url=url), registrar=RegistrarSettings(domain="example.com")
    )
    registrar = Registrar(
        config, js, secret=b"cas-bench-secret-0123456789", registry=CollectorRegistry(), wire=wire
    )
    record = records.BindingSet(aor="sip:a@example.com")
    tag = secrets.token_hex(4)

    async def worker(w: int) -> None:
        for i in range(writes // concurrency):
            if not await registrar._write(f"k{tag}{w}x{i}", record, 60, 0):
                raise AssertionError("a fresh key conflicted")

    await worker(-1)  # warm up
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if wire is not None:
        await wire.close()
    await nc.close()
    n = writes // concurrency * concurrency
    return cpu / n * 1e6, wall / n * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writes", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(store_dir=Path(store))
        server.start()
        try:
            for _ in range(args.rounds):
                for use_wire in (False, True):
                    cpu, wall = await measure(
                        server.url,
                        use_wire=use_wire,
                        writes=args.writes,
                        concurrency=args.concurrency,
                    )
                    name = "wire   " if use_wire else "nats-py"
                    print(f"{name} CPU/write {cpu:6.1f} µs   wall/write {wall:6.1f} µs", flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
