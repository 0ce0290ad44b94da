"""Fuzzing the edge's datagram and stream handlers (Hypothesis), with a fake bus and sockets.

Invariants, for any input (h11 ``fuzz/afl-server.py``, ISSUE 8 part 4):

* nothing escapes and nothing is counted as an internal error (a bug);
* every datagram or stream write the edge emits is a SIP message sipmsg parses
  (or a CRLF keep-alive pong);
* the edge still answers an OPTIONS addressed to itself with 200 afterwards.

The inputs: arbitrary bytes, RFC 4475 torture messages, and those messages
mutated (bytes flipped, cut, repeated, spliced), fed whole and, over a
stream, in arbitrary chunks.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from sipmesh_edge.bus import BusFailure
from sipmesh_edge.core import EdgeIdentity
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.sink import EdgeSink, SinkConfig
from sipmesh_edge.streams import Connections, StreamConfig, StreamConnection, _Shared
from sipmsg import ParseError, Response, parse

VECTORS: Final = Path(__file__).parents[3] / "libs" / "sipmsg" / "tests" / "vectors" / "rfc4475"
TORTURE: Final = sorted(p.read_bytes() for p in VECTORS.glob("*.dat"))
LOCAL: Final = ("192.0.2.10", 5060)
PHONE: Final = ("198.51.100.7", 5062)
OPTIONS: Final = (
    b"OPTIONS sip:192.0.2.10:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-fuzz-ok;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p\r\nTo: <sip:192.0.2.10>\r\n"
    b"Call-ID: fuzz-ok\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


class SilentBus:
    """Takes every request and never answers (as a slow router would)."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[bytes | BusFailure], None]] = []

    def request(
        self, subject: str, payload: bytes, callback: Callable[[bytes | BusFailure], None]
    ) -> bool:
        self.callbacks.append(callback)
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        return True


class FakeUdp:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append(data)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _sink() -> tuple[EdgeSink, FakeUdp, EdgeMetrics, CollectorRegistry]:
    """An edge whose bus never answers."""
    registry = CollectorRegistry()
    metrics = EdgeMetrics(registry)
    me = EdgeIdentity(edge_id="fz", hosts=frozenset({b"192.0.2.10"}), ports=frozenset({5060}))
    clock = Clock()
    sink = EdgeSink(SinkConfig(identity=me), metrics, clock=clock, wallclock=clock)
    sink.bus = SilentBus()
    udp = FakeUdp()
    sink.udp[LOCAL] = udp
    return sink, udp, metrics, registry


def _assert_sip(emitted: list[bytes]) -> None:
    for data in emitted:
        if data.strip(b"\r\n") == b"":
            continue  # a keep-alive pong
        try:
            parse(data)
        except ParseError as exc:  # pragma: no cover - the failure message
            pytest.fail(f"the edge emitted unparseable bytes ({exc}): {data[:200]!r}")


def _internal_errors(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("sipmesh_edge_internal_errors_total") or 0.0


def _options_answered(sink: EdgeSink, udp: FakeUdp) -> bool:
    udp.sent.clear()
    sink.on_message(OPTIONS, transport="udp", source=PHONE, local=LOCAL, connection=None)
    return any(
        isinstance(m, Response) and m.status == 200 and m.call_id == b"fuzz-ok"
        for m in map(parse, udp.sent)
    )


# Indices, not sampled_from(bytes): Hypothesis's cache compares bytes with
# ints, which ``python -bb`` turns into an error.
_SNIPPETS: Final = (b"\r\n", b"\x00", b":", b";", b",", b" ", b"\r\n\r\n", b"SIP/2.0")
VECTOR: Final = st.integers(0, len(TORTURE) - 1).map(TORTURE.__getitem__)
SNIPPET: Final = st.integers(0, len(_SNIPPETS) - 1).map(_SNIPPETS.__getitem__)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A torture message, mutated a little."""
    data = bytearray(draw(VECTOR))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "dup", "insert"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i : i + draw(st.integers(1, 40))]
        elif op == "dup":
            data[i:i] = data[i : i + draw(st.integers(1, 40))]
        else:
            data[i:i] = draw(
                st.sampled_from([b"\r\n", b"\x00", b":", b";", b",", b" ", b"\r\n\r\n"])
            )
    return bytes(data)


MESSAGES: Final = st.one_of(st.binary(max_size=2048), VECTOR, mutated())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(datagrams=st.lists(MESSAGES, min_size=1, max_size=5))
def test_fuzz_edge_datagrams(datagrams: list[bytes]) -> None:
    sink, udp, _, registry = _sink()
    for data in datagrams:
        sink.on_message(data, transport="udp", source=PHONE, local=LOCAL, connection=None)
    sink.tick()
    _assert_sip(udp.sent)
    assert _internal_errors(registry) == 0
    assert _options_answered(sink, udp)


class FakeTransport:
    """What StreamConnection needs of an asyncio transport."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str) -> tuple[str, int]:
        return PHONE if name == "peername" else LOCAL

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    stream=st.lists(MESSAGES, min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 4096), max_size=6),
)
def test_fuzz_edge_stream(
    loop: asyncio.AbstractEventLoop, stream: list[bytes], cuts: list[int]
) -> None:
    sink, udp, _, _ = _sink()

    async def run() -> FakeTransport:
        shared = _Shared(
            config=StreamConfig(max_message_size=8192), sink=sink, registry=Connections()
        )
        conn = StreamConnection("tcp", shared)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        for chunk in _chunks(b"".join(stream), cuts):
            conn.data_received(chunk)
        conn.connection_lost(None)
        return transport

    transport = loop.run_until_complete(run())
    _assert_sip(transport.written + udp.sent)
    assert _options_answered(sink, udp)


def test_fuzz_edge_bus_failure_after_a_malformed_from_still_answers() -> None:
    sink, udp, _, registry = _sink()
    bus = sink.bus
    assert isinstance(bus, SilentBus)
    data = (VECTORS / "baddn-crlf.dat").read_bytes()
    sink.on_message(data, transport="udp", source=PHONE, local=LOCAL, connection=None)
    for callback in bus.callbacks:
        callback(BusFailure.TIMEOUT)
    assert _internal_errors(registry) == 0
    assert [parse(d).status for d in udp.sent] in ([503], [400])  # type: ignore[union-attr]


def test_fuzz_edge_malformed_from_without_branch_is_no_internal_error() -> None:
    sink, _, _, registry = _sink()
    data = b"I%VITC sip:a SIP/2.0\nT:\nFrom:\nCall-ID:!\nCSeq:0 I%VITC\nV:*/*/A a\n\n"
    sink.on_message(data, transport="udp", source=PHONE, local=LOCAL, connection=None)
    assert _internal_errors(registry) == 0
