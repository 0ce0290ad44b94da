"""CDR throughput and consumer lag: python -m sipmesh_cdr against SQLite and PostgreSQL.

1. drain: publish M full calls (attempt, ringing, answered/failed, ended) to the
   CALLS stream, start the CDR service, time until all M rows are complete;
2. paced: with the service running, publish R calls/s for S seconds and sample
   the consumer's lag (num_pending) and how long after the last publish the last
   row is committed.

Everything on free loopback ports: a private nats-server, a temporary
PostgreSQL 15 cluster (initdb as ``postgres`` when root). Usage:

    .venv/bin/python bench/cdr/run.py [--calls 5000] [--rate 500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
from nats.js import JetStreamContext

from sipmesh_bus import kv, schema, subjects
from sipmesh_bus.natsserver import NatsServer
from sipmesh_cdr.store import open_store
from sipmesh_cdr.synthetic import publish_subject, synthetic_call

PG_BIN = Path(os.environ.get("SIPMESH_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres() -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="sipmesh-bench-pg-"))
    root.chmod(0o755)
    owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if owner:
        shutil.chown(root, "postgres")
    port = free_port()
    data = root / "data"
    subprocess.run(
        [*owner, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "bench"],
        check=True,
        capture_output=True,
    )
    # Durable settings (fsync on), as a production server: the number means something.
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
    ctl = [*owner, str(PG_BIN / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*ctl, "-w", "-l", str(root / "log"), "-o", opts, "start"], check=True, capture_output=True
    )
    try:
        subprocess.run(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "cdr"],
            check=True,
        )
        yield f"postgresql://bench@127.0.0.1:{port}/cdr"
    finally:
        subprocess.run([*ctl, "-m", "fast", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


async def publish_calls(js: JetStreamContext, first: int, count: int, prefix: str) -> int:
    futures = []
    events = 0
    for n in range(first, first + count):
        for event in synthetic_call(n, 1_700_000_000.0, prefix=prefix).events:
            futures.append(
                await js.publish_async(
                    publish_subject(event),
                    schema.encode(event),
                    headers={"Nats-Msg-Id": event.event_id},
                )
            )
            events += 1
    await asyncio.gather(*futures)
    return events


async def complete(url: str) -> int:
    store = open_store(url)
    await store.open()
    try:
        return await store.count(complete=True)
    finally:
        await store.close()


async def wait_complete(url: str, target: int, timeout: float = 600.0) -> float:
    deadline = time.monotonic() + timeout
    while (done := await complete(url)) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done}/{target} rows after {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic()


async def pending(js: JetStreamContext) -> int:
    try:
        info = await js.consumer_info(kv.STREAM_CALLS, subjects.QUEUE_CDR)
    except Exception:
        return -1
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


async def bench_one(
    name: str, store_url: str, args: argparse.Namespace, tmp: Path
) -> dict[str, float]:
    with NatsServer(store_dir=tmp / f"nats-{name}") as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await kv.ensure_jetstream(js)
        events = await publish_calls(js, 0, args.calls, "drain")
        env = os.environ | {"SIPMESH_HTTP_PORT": "0", "SIPMESH_CDR_BATCH": str(args.batch)}
        log = (tmp / f"cdr-{name}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sipmesh_cdr",
                "--nats-url",
                server.url,
                "--store-url",
                store_url,
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            # From the first committed row: process start-up is not throughput.
            await wait_complete(store_url, 1)
            started = time.monotonic()
            ended = await wait_complete(store_url, args.calls)
            drain = ended - started
            # Paced: R calls/s for S seconds, lag sampled every 100 ms.
            lags: list[int] = []
            sampling = True

            async def sample() -> None:
                while sampling:
                    lags.append(await pending(js))
                    await asyncio.sleep(0.1)

            sampler = asyncio.create_task(sample())
            total = args.rate * args.seconds
            t0 = time.monotonic()
            sent = 0
            while sent < total:
                due = int((time.monotonic() - t0) * args.rate) + 1 - sent
                if due > 0:
                    await publish_calls(js, args.calls + sent, min(due, total - sent), "paced")
                    sent += min(due, total - sent)
                await asyncio.sleep(0.005)
            published = time.monotonic()
            done = await wait_complete(store_url, args.calls + total)
            sampling = False
            await sampler
        finally:
            proc.terminate()
            proc.wait(20)
            log.close()
            await nc.close()
    good = [x for x in lags if x >= 0]
    return {
        "calls": args.calls,
        "events": events,
        "drain_s": drain,
        "cdr_per_s": args.calls / drain,
        "events_per_s": events / drain,
        "paced_rate": args.rate,
        "paced_publish_s": published - t0,
        "lag_max": max(good, default=0),
        "lag_mean": sum(good) / len(good) if good else 0.0,
        "catch_up_s": done - published,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=500, help="paced calls per second")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sipmesh-bench-cdr-"))
    results = {}
    try:
        if args.only in (None, "sqlite"):
            results["SQLite (WAL, synchronous=FULL)"] = await bench_one(
                "sqlite", f"sqlite:///{tmp / 'cdr.sqlite3'}", args, tmp
            )
        if args.only in (None, "postgres"):
            with postgres() as url:
                results["PostgreSQL 15 (fsync on)"] = await bench_one("postgres", url, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head = "| store | calls | events | drain s | CDR/s | events/s | paced calls/s | lag max |"
    print(head + " lag mean | catch-up s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['calls']:.0f} | {r['events']:.0f} | {r['drain_s']:.2f} | "
            f"{r['cdr_per_s']:.0f} | {r['events_per_s']:.0f} | {r['paced_rate']:.0f} | "
            f"{r['lag_max']:.0f} | {r['lag_mean']:.0f} | {r['catch_up_s']:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
