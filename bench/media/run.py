"""Media anchoring benchmark: offer + answer + delete round trips per second.

Run with ``.venv/bin/python bench/media/run.py`` (``--seconds``, ``--concurrency``).
It starts, on free loopback ports: a nats-server, one rtpengine-daemon in
userspace mode (log level 3, so logging does not dominate), and the media
service as its own process (``python -m sipmesh_media``). Then it runs two
closed loops with the same SDP, each for ``--seconds``:

- ``direct``: the ng client straight to RTPEngine (what the service's own cost
  is measured against);
- ``service``: MediaOffer, MediaAnswer and MediaDelete as NATS requests to the
  media service, which sends the ng commands.

One *call* is offer, answer and delete of a fresh Call-ID, in sequence; with
``--concurrency`` calls in flight. Every reply is checked (ok, and the offer's
SDP points at 127.0.0.1 in RTPEngine's port range), so a failing setup fails
the run instead of reporting a rate.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.aio.client import Client as NatsClient

from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.schema import MediaAnswer, MediaDelete, MediaOffer, decode_media_reply, encode
from sipmesh_bus.subjects import SIP_MEDIA_ANSWER, SIP_MEDIA_DELETE, SIP_MEDIA_OFFER
from sipmesh_media import ng
from sipmesh_media.client import NgClient
from sipmesh_media.local import LocalRtpEngine, find_binary

Call = Callable[[str], Awaitable[list[float]]]
#: Runs one call (offer, answer, delete) and returns the three latencies.


def sdp(port: int) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    ).encode()


def check_sdp(body: bytes | None, engine: LocalRtpEngine) -> None:
    if body is None or b"c=IN IP4 127.0.0.1" not in body:
        raise SystemExit(f"offer SDP does not point at rtpengine: {body!r}")
    port = int(body.split(b"m=audio ", 1)[1].split(b" ", 1)[0])
    if not engine.port_min <= port <= engine.port_max:
        raise SystemExit(f"offer SDP port {port} outside rtpengine's range")


async def direct_call(client: NgClient, engine: LocalRtpEngine) -> Call:
    async def call(call_id: str) -> list[float]:
        t0 = time.perf_counter()
        offered = await client.request(ng.offer(call_id=call_id, from_tag="a", sdp=sdp(4000)))
        t1 = time.perf_counter()
        await client.request(ng.answer(call_id=call_id, from_tag="a", to_tag="b", sdp=sdp(5000)))
        t2 = time.perf_counter()
        await client.request(ng.delete(call_id=call_id))
        t3 = time.perf_counter()
        check_sdp(offered.sdp, engine)
        return [t1 - t0, t2 - t1, t3 - t2]

    return call


async def service_call(nc: NatsClient, engine: LocalRtpEngine) -> Call:
    async def ask(subject: str, payload: bytes) -> tuple[float, bytes | None, str | None]:
        t0 = time.perf_counter()
        msg = await nc.request(subject, payload, timeout=5.0)
        took = time.perf_counter() - t0
        reply = decode_media_reply(msg.data)
        if not reply.ok:
            raise SystemExit(f"{subject} failed: {reply.code}: {reply.error}")
        return took, reply.sdp, reply.instance

    async def call(call_id: str) -> list[float]:
        offer = MediaOffer(call_id=call_id, from_tag="a", sdp=sdp(4000))
        t_offer, body, instance = await ask(SIP_MEDIA_OFFER, encode(offer))
        check_sdp(body, engine)
        answer = MediaAnswer(
            call_id=call_id, from_tag="a", to_tag="b", sdp=sdp(5000), instance=instance
        )
        t_answer, _, _ = await ask(SIP_MEDIA_ANSWER, encode(answer))
        delete = MediaDelete(call_id=call_id, instance=instance)
        t_delete, _, _ = await ask(SIP_MEDIA_DELETE, encode(delete))
        return [t_offer, t_answer, t_delete]

    return call


async def closed_loop(
    call: Call, *, label: str, seconds: float, concurrency: int
) -> dict[str, float]:
    ids = itertools.count()
    latencies: list[list[float]] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            latencies.append(await call(f"bench-{label}-{os.getpid()}-{next(ids)}"))

    for i in range(20):  # warm-up
        await call(f"warm-{label}-{i}")
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    result = {"calls/s": len(latencies) / elapsed, "calls": float(len(latencies))}
    for i, name in enumerate(("offer", "answer", "delete")):
        values = sorted(lat[i] for lat in latencies)
        result[f"{name} p50 ms"] = statistics.median(values) * 1000
        result[f"{name} p99 ms"] = values[int(len(values) * 0.99) - 1] * 1000
    return result


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_ready(proc: subprocess.Popen[bytes], http_port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("media service exited during start-up")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
            writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("media service not ready after 20 s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    binary = find_binary()
    if binary is None:
        raise SystemExit("rtpengine-daemon is not installed")
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        work = Path(tmp)
        nats = NatsServer(store_dir=work / "nats")
        nats.start()
        engine = LocalRtpEngine(binary=binary, data_dir=work, log_level=3)
        await engine.start()
        http_port = free_tcp_port()
        env = {
            **os.environ,
            "SIPMESH_MEDIA_INSTANCES": f"rtp1={engine.ng_host}:{engine.ng_port}",
            "SIPMESH_HTTP_PORT": str(http_port),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "sipmesh_media", "--nats-url", nats.url],
            env=env,
            stderr=(work / "media.log").open("wb"),
        )
        client = await NgClient.open(engine.ng_host, engine.ng_port)
        nc = NatsClient()
        try:
            await wait_ready(proc, http_port)
            await nc.connect(nats.url)
            results = {
                "direct ng": await closed_loop(
                    await direct_call(client, engine),
                    label="direct",
                    seconds=args.seconds,
                    concurrency=args.concurrency,
                ),
                "via service": await closed_loop(
                    await service_call(nc, engine),
                    label="service",
                    seconds=args.seconds,
                    concurrency=args.concurrency,
                ),
            }
        finally:
            await nc.close()
            client.close()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
            await engine.stop()
            nats.stop()
    print(
        f"rtpengine {binary}, {args.concurrency} calls in flight, {args.seconds:g} s each, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    columns = list(next(iter(results.values())))
    print("| path | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for path, row in results.items():
        cells = [f"{row[c]:.0f}" if c in ("calls/s", "calls") else f"{row[c]:.2f}" for c in columns]
        print(f"| {path} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    asyncio.run(main())
