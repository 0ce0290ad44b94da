"""Edge micro-benchmarks: the sink's per-message cost, and the NATS round trip the edge makes.

Run with ``.venv/bin/python bench/edge/run.py`` (``--only sink`` or ``--only bus``).

``sink``: REGISTERs (distinct Call-ID and branch each, like 10,000 phones)
through :meth:`EdgeSink.on_message` with a fake UDP socket and a fake bus
whose ``request`` answers at once with a prepared ``SendResponse`` (200): the
parse and checks of :func:`core.classify`, the server transaction, the
envelope encode, the reply decode and parse, the response sent. What is left
out is NATS and the socket. Timed on process CPU time, best of ``--repeat``.
Before timing it checks that every REGISTER got its 200 and reached the bus.
Then the same REGISTERs are sent again: each is a retransmission the edge
absorbs (matched by transaction key, the last response re-sent, nothing on the
bus). Three variants run interleaved, so the figures come from the same
machine state: :func:`core.triage` (parse and the top Via, the checks only
for what is not absorbed), the same with the edge's protection in front
(``Guard`` with the default ``ProtectionConfig``, as the edge process runs
it; one source address per phone) and :func:`core.peek_triage`
(``SinkConfig.peek``: ``sipmsg.peek``, the full parse only for what is not
absorbed). ``--gc default``
times with Python's default GC thresholds instead of the edge process's
(``sipmesh_edge.__main__``).

``bus``: the edge's :class:`BusClient` against a real nats-server (started on
a free loopback port) and a trivial responder in the same process that answers
every request with a fixed payload; ``--window`` requests in flight, wall
clock; reports requests/s and the p50/p99 round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from sipmesh_bus import schema, subjects
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.wire import WireClient
from sipmesh_edge.bus import BusClient, BusFailure
from sipmesh_edge.core import EdgeIdentity
from sipmesh_edge.guard import Guard
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.protection import ProtectionConfig
from sipmesh_edge.sink import EdgeSink, SinkConfig
from sipmsg import Request, make_response, parse

LOCAL = ("192.0.2.10", 5060)


def register(n: int) -> bytes:
    """A linphone-like REGISTER (digest Authorization, +sip.instance), unique per ``n``."""
    return (
        f"REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 198.51.100.{n % 250 + 1}:5060;branch=z9hG4bK.{n:08x}x;rport\r\n"
        f"From: <sip:u{n}@example.com>;tag=f{n:x}\r\n"
        f"To: sip:u{n}@example.com\r\n"
        f"CSeq: 21 REGISTER\r\n"
        f"Call-ID: c{n:x}-reg@198.51.100.1\r\n"
        f"Max-Forwards: 70\r\n"
        f"Supported: replaces, outbound, gruu, path\r\n"
        f"Accept: application/sdp\r\nAccept: text/plain\r\n"
        f"Accept: application/vnd.gsma.rcs-ft-http+xml\r\n"
        f"Contact: <sip:u{n}@198.51.100.1:5060;transport=udp>;expires=3600"
        f';+sip.instance="<urn:uuid:0e4b1a2c-2bd0-4b49-9a35-{n:012x}>"\r\n'
        f'Authorization: Digest realm="example.com", nonce="abc{n:x}", algorithm=MD5, '
        f'username="u{n}", uri="sip:example.com", response="0123456789abcdef0123456789abcdef", '
        f'cnonce="x{n:x}", nc=00000001, qop=auth\r\n'
        f"Expires: 3600\r\n"
        f"User-Agent: Linphone-Desktop/5.2.0 (bench) LinphoneSDK/5.2.0\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


class InstantBus:
    """Answers every request at once with a 200 built for that REGISTER."""

    def __init__(self) -> None:
        self.requests = 0

    def request(
        self, subject: str, payload: bytes, callback: Callable[[bytes | BusFailure], None]
    ) -> bool:
        self.requests += 1
        env = schema.decode_envelope(payload)
        req = parse(env.data)
        assert isinstance(req, Request)
        callback(schema.encode(schema.SendResponse(data=bytes(make_response(req, 200)))))
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        return True


class PreparedBus:
    """Answers every request at once with a prepared reply (no service work timed)."""

    def __init__(self, replies: dict[bytes, bytes]) -> None:
        self.replies = replies
        self.requests = 0

    def request(
        self, subject: str, payload: bytes, callback: Callable[[bytes | BusFailure], None]
    ) -> bool:
        self.requests += 1
        # The Call-ID is the key; the reply was built before timing.
        start = payload.find(b"Call-ID: ") + 9
        callback(self.replies[payload[start : payload.find(b"\r\n", start)]])
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        return True


class CountingUdp:
    def __init__(self) -> None:
        self.sent = 0
        self.last = b""

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent += 1
        self.last = data


def _sink(bus: object, udp: CountingUdp, *, guard: bool = False, peek: bool = False) -> EdgeSink:
    me = EdgeIdentity(edge_id="bench", hosts=frozenset({b"192.0.2.10"}), ports=frozenset({5060}))
    clock = [1000.0]
    sink = EdgeSink(
        SinkConfig(identity=me, peek=peek),
        EdgeMetrics(CollectorRegistry()),
        clock=lambda: clock[0],
        wallclock=time.time,
    )
    sink.bus = bus  # type: ignore[assignment]
    sink.udp[LOCAL] = udp
    if guard:
        # The edge process's protection with its default settings (rate limit,
        # scanner User-Agents, the allow list): what every message meets first.
        sink.guard = Guard(ProtectionConfig(), CollectorRegistry(), edge_id="bench")
    return sink


def bench_sink(count: int, repeat: int) -> None:
    variants = {
        "parse first (now)": (False, False),
        "parse first + guard": (False, True),
        "peek_triage": (True, False),
    }
    best = {(name, what): float("inf") for name in variants for what in ("new", "retransmitted")}
    for _ in range(repeat):
        for name, (peek, guard) in variants.items():
            new, again = _time_sink(count, guard=guard, peek=peek)
            best[name, "new"] = min(best[name, "new"], new)
            best[name, "retransmitted"] = min(best[name, "retransmitted"], again)
    for (name, what), seconds in best.items():
        print(
            f"sink, {name}, {what}: {count} REGISTER in {seconds:.3f} s CPU: "
            f"{count / seconds:,.0f}/s, {seconds / count * 1e6:.1f} us each"
        )


def _time_sink(count: int, *, guard: bool = False, peek: bool = False) -> tuple[float, float]:
    messages = [register(n) for n in range(count)]
    replies = {}
    for data in messages:
        req = parse(data)
        assert isinstance(req, Request)
        replies[req.call_id] = schema.encode(
            schema.SendResponse(data=bytes(make_response(req, 200)))
        )
    # Check once: every REGISTER reached the bus and got its 200.
    udp = CountingUdp()
    sink = _sink(InstantBus(), udp)
    for n, data in enumerate(messages[:100]):
        sink.on_message(
            data,
            transport="udp",
            source=(f"198.51.100.{n % 250 + 1}", 5060),
            local=LOCAL,
            connection=None,
        )
    assert udp.sent == 100, udp.sent
    assert udp.last.startswith(b"SIP/2.0 200 "), udp.last[:40]

    udp = CountingUdp()
    bus = PreparedBus(replies)
    sink = _sink(bus, udp, guard=guard, peek=peek)
    # One source per phone (the guard's rate limit counts per source).
    sources = [(f"198.51.{n // 250 % 250}.{n % 250 + 1}", 5060) for n in range(count)]
    gc.collect()
    gc.freeze()
    on_message = sink.on_message
    started = time.process_time()
    for data, source in zip(messages, sources, strict=True):
        on_message(data, transport="udp", source=source, local=LOCAL, connection=None)
    elapsed = time.process_time() - started
    assert bus.requests == count, bus.requests
    assert udp.sent == count, udp.sent
    started = time.process_time()
    for data, source in zip(messages, sources, strict=True):
        on_message(data, transport="udp", source=source, local=LOCAL, connection=None)
    again = time.process_time() - started
    gc.unfreeze()
    # Absorbed: the 200 sent again, nothing more on the bus.
    assert bus.requests == count, bus.requests
    assert udp.sent == 2 * count, udp.sent
    assert udp.last.startswith(b"SIP/2.0 200 "), udp.last[:40]
    return elapsed, again


async def bench_bus(count: int, window: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(store_dir=Path(tmp) / "nats", port=0)
        server.start()
        try:
            await _bus_round_trips(server.url, count, window)
        finally:
            server.stop()


async def _bus_round_trips(url: str, count: int, window: int) -> None:
    import nats  # noqa: PLC0415 - only this benchmark needs it

    responder = await nats.connect(url)
    # The edge's BusClient on a wire connection, as Edge.start builds it.
    wire = WireClient(NatsConfig(url=url), name="bench-edge")
    await wire.connect()
    reply = schema.encode(schema.SendResponse(data=b"SIP/2.0 200 OK\r\n\r\n"))

    async def answer(msg: Msg) -> None:
        await msg.respond(reply)

    await responder.subscribe(subjects.SIP_REGISTER, queue=subjects.QUEUE_REGISTRAR, cb=answer)
    await responder.flush()
    await responder.flush()
    loop = asyncio.get_running_loop()
    client = BusClient(wire, timeout=5.0, clock=loop.time)
    await client.start()
    payload = schema.encode(
        schema.Envelope(
            edge_id="bench", transport="udp", source_host="198.51.100.1", source_port=5060,
            local_host=LOCAL[0], local_port=LOCAL[1], received_at=time.time(), data=register(1),
        )
    )  # fmt: skip
    latencies: list[float] = []
    failures = 0
    slots = asyncio.Semaphore(window)
    done = asyncio.Event()
    left = count

    def send_one() -> None:
        sent_at = time.perf_counter()

        def on_reply(value: bytes | BusFailure) -> None:
            nonlocal failures, left
            if isinstance(value, BusFailure):
                failures += 1
            else:
                latencies.append(time.perf_counter() - sent_at)
            slots.release()
            left -= 1
            if left == 0:
                done.set()

        client.request(subjects.SIP_REGISTER, payload, on_reply)

    started = time.perf_counter()
    for _ in range(count):
        await slots.acquire()
        send_one()
    await done.wait()
    elapsed = time.perf_counter() - started
    await client.close()
    await wire.close()
    await responder.close()
    latencies.sort()
    p50 = statistics.median(latencies) * 1e3
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1e3
    print(
        f"bus: {count} requests, window {window}: {count / elapsed:,.0f}/s wall, "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, {failures} failed"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("sink", "bus"))
    parser.add_argument("--gc", choices=("edge", "default"), default="edge")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--window", type=int, default=200)
    args = parser.parse_args()
    if args.gc == "edge":
        # As the edge process does (sipmesh_edge.__main__): the cyclic GC rarely.
        gc.set_threshold(50_000, 20, 100)
    if args.only in (None, "sink"):
        bench_sink(args.count, args.repeat)
    if args.only in (None, "bus"):
        asyncio.run(bench_bus(args.count, args.window))


if __name__ == "__main__":
    main()
