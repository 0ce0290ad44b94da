"""A KV watch's CPU per entry: nats-py's ``watchall()`` vs ``sipmesh_bus.wirewatch.KvWatch``.

    python bench/bus/kvwatch_bench.py [--rate 3000] [--seconds 4] [--rounds 3]

Starts a private nats-server with JetStream (free loopback port) and a
bucket, then per round and variant a fresh watcher process (``--role``), on
uvloop as the services run, that watches the bucket and does nothing with an
entry but store it in a dict (what the registrar's location cache does).
This process puts ``--rate`` entries per second (400-byte values, 2,000
keys); the watcher's ``utime + stime`` (``/proc/<pid>/stat``) over the
window divided by the entries it received is its CPU per entry.
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

import nats
from nats.js.api import KeyValueConfig

from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.wire import WireClient
from sipmesh_bus.wirewatch import KvWatch

BUCKET = "kvwatchbench"


async def watcher(url: str, variant: str) -> None:
    """The watcher process: prints READY, then the entry count on each line read."""
    cache: dict[str, tuple[bytes, int]] = {}
    seen = [0]
    if variant == "wire":
        wire = WireClient(NatsConfig(url=url), name="kvwatch-bench")
        await wire.connect()

        def note(key: str, value: bytes | None, revision: int) -> None:
            seen[0] += 1
            cache[key] = (value or b"", revision)

        await KvWatch(wire, BUCKET, note).start()
    else:
        nc = await nats.connect(url)
        watch = await (await nc.jetstream().key_value(BUCKET)).watchall()

        async def follow() -> None:
            async for entry in watch:
                if entry is not None:
                    seen[0] += 1
                    cache[entry.key] = (entry.value or b"", entry.revision or 0)

        following = asyncio.ensure_future(follow())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("READY", flush=True)
    while await reader.readline():
        print(seen[0], flush=True)
    if variant != "wire":
        following.cancel()


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def one_round(
    url: str, server_pid: int, variant: str, rate: float, seconds: float
) -> tuple[float, float]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", variant, "--url", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "READY"
        nc = await nats.connect(url)
        bucket = await nc.jetstream().key_value(BUCKET)
        value = os.urandom(200).hex().encode()

        async def put_for(duration: float) -> None:
            loop = asyncio.get_running_loop()
            start, sent = loop.time(), 0
            while (now := loop.time()) - start < duration:
                due = int((now - start) * rate) - sent
                await asyncio.gather(
                    *(bucket.put(f"k{(sent + i) % 2000}", value) for i in range(due))
                )
                sent += max(due, 0)
                await asyncio.sleep(0.005)

        def entries() -> int:
            proc.stdin.write("\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            return int(proc.stdout.readline())  # type: ignore[union-attr]

        await put_for(0.5)
        time.sleep(0.2)
        before, got = cpu_ticks(proc.pid), entries()
        server_before = cpu_ticks(server_pid)
        await put_for(seconds)
        time.sleep(0.3)
        ticks, got = cpu_ticks(proc.pid) - before, entries() - got
        server = cpu_ticks(server_pid) - server_before
        await nc.close()
        tick_us = 1e6 / os.sysconf("SC_CLK_TCK") / got
        return ticks * tick_us, server * tick_us
    finally:
        proc.terminate()
        proc.wait(10)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=3000.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(store_dir=Path(store))
        server.start()
        try:
            nc = await nats.connect(server.url)
            await nc.jetstream().create_key_value(KeyValueConfig(bucket=BUCKET))
            await nc.close()
            assert server._proc is not None  # private: the pid of our own server
            results: dict[str, list[float]] = {"nats-py": [], "wire": []}
            for r in range(args.rounds):
                for variant, values in results.items():
                    us, at_server = await one_round(
                        server.url, server._proc.pid, variant, args.rate, args.seconds
                    )
                    values.append(us)
                    print(
                        f"round {r} {variant:8s} {us:5.1f} us CPU per entry"
                        f" (nats-server {at_server:5.1f} us, the puts included)",
                        flush=True,
                    )
            for variant, values in results.items():
                print(f"{variant:8s} best {min(values):5.1f} us per entry")
        finally:
            server.stop()


if __name__ == "__main__":
    if "--role" in sys.argv:
        role = sys.argv[sys.argv.index("--role") + 1]
        url = sys.argv[sys.argv.index("--url") + 1]
        try:
            import uvloop

            uvloop.run(watcher(url, role))
        except ImportError:
            asyncio.run(watcher(url, role))
    else:
        asyncio.run(main())
