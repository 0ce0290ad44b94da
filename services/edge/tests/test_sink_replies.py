"""EdgeSink: a service's SendResponse to a non-INVITE request is passed on as bytes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from sipmesh_bus import schema
from sipmesh_edge import transaction
from sipmesh_edge.bus import BusFailure
from sipmesh_edge.core import EdgeIdentity
from sipmesh_edge.guard import Guard
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.protection import ProtectionConfig
from sipmesh_edge.sink import EdgeSink, SinkConfig
from sipmsg import Request, make_response, parse

LOCAL = ("192.0.2.10", 5060)
PHONE = ("198.51.100.7", 5062)


class FakeBus:
    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes, Callable[[bytes | BusFailure], None]]] = []

    def request(
        self, subject: str, payload: bytes, callback: Callable[[bytes | BusFailure], None]
    ) -> bool:
        self.requests.append((subject, payload, callback))
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        return True


class FakeUdp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def receive(sink: EdgeSink, data: bytes) -> None:
    sink.on_message(data, transport="udp", source=PHONE, local=LOCAL, connection=None)


REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-reg1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r1\r\nTo: <sip:alice@example.com>\r\n"
    b"Call-ID: reg1@198.51.100.7\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@198.51.100.7:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
WITH_CREDENTIALS = REGISTER.replace(
    b"Content-Length: 0",
    b'Authorization: Digest username="alice", realm="example.com", nonce="n1", '
    b'uri="sip:example.com", response="00000000000000000000000000000000"\r\nContent-Length: 0',
)


def make_sink(
    guard: Guard | None = None,
) -> tuple[EdgeSink, FakeBus, FakeUdp, CollectorRegistry]:
    clock, registry = (lambda: 1000.0), CollectorRegistry()
    me = EdgeIdentity(edge_id="e1", hosts=frozenset({b"192.0.2.10"}), ports=frozenset({5060}))
    sink = EdgeSink(SinkConfig(identity=me), EdgeMetrics(registry), clock=clock, wallclock=clock)
    sink.guard = guard
    bus, udp = FakeBus(), FakeUdp()
    sink.bus = bus
    sink.udp[LOCAL] = udp
    return sink, bus, udp, registry


def _request(data: bytes) -> Request:
    req = parse(data)
    assert isinstance(req, Request)
    return req


def test_sink_passes_a_service_response_on_unchanged() -> None:
    sink, bus, udp, registry = make_sink()
    receive(sink, REGISTER)
    # Not what sipmsg would write (the header name in lower case, extra
    # spaces): the edge sends the service's bytes as they came.
    ok = bytes(make_response(_request(REGISTER), 200)).replace(b"Call-ID:", b"call-id:  ")
    bus.requests[0][2](schema.encode(schema.SendResponse(data=ok)))
    assert udp.sent == [(ok, PHONE)]
    # §17.2.2: a retransmission gets the same bytes again, and the bus hears nothing.
    receive(sink, REGISTER)
    assert udp.sent == [(ok, PHONE), (ok, PHONE)]
    assert len(bus.requests) == 1
    assert registry.get_sample_value("sipmesh_edge_responses_sent_total", {"status_class": "2xx"})
    labels = {"method": "REGISTER", "kind": "service"}
    assert registry.get_sample_value("sipmesh_edge_transaction_seconds_count", labels) == 1


@pytest.mark.parametrize(
    "data",
    [
        b"not sip at all",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x\r\n",  # no end of the header block
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"REGISTER sip:example.com SIP/2.0\r\n\r\n",
    ],
)
def test_sink_bad_service_response_is_503(data: bytes) -> None:
    # ARCHITECTURE step 5: "the caller gets 503 with Retry-After, never silence".
    sink, bus, udp, registry = make_sink()
    receive(sink, REGISTER)
    bus.requests[0][2](schema.encode(schema.SendResponse(data=data)))
    [(sent, _)] = udp.sent
    assert sent.startswith(b"SIP/2.0 503 ")
    assert registry.get_sample_value("sipmesh_edge_dropped_total", {"reason": "bad_reply"}) == 1


def _guarded(limit: int) -> tuple[EdgeSink, FakeBus, FakeUdp, Guard]:
    config = ProtectionConfig(auth_fail_limit=limit, rate_limit=0)
    guard = Guard(config, CollectorRegistry(), edge_id="e1", wallclock=lambda: 1000.0)
    sink, bus, udp, _ = make_sink(guard)
    return sink, bus, udp, guard


def _challenge(data: bytes) -> bytes:
    resp = make_response(
        _request(data),
        401,
        headers=[(b"WWW-Authenticate", b'Digest realm="example.com", nonce="n2"')],
    )
    return schema.encode(schema.SendResponse(data=bytes(resp)))


def test_sink_401_to_credentials_counts_an_auth_failure() -> None:
    sink, bus, udp, guard = _guarded(limit=1)
    receive(sink, WITH_CREDENTIALS)
    bus.requests[0][2](_challenge(WITH_CREDENTIALS))
    assert udp.sent[0][0].startswith(b"SIP/2.0 401 ")
    assert guard.protection.is_banned(PHONE[0], 1000.0)


def test_sink_401_without_credentials_is_no_auth_failure() -> None:
    # RFC 3261 §22.2: the first challenge of a request without credentials is normal.
    sink, bus, udp, guard = _guarded(limit=1)
    receive(sink, REGISTER)
    bus.requests[0][2](_challenge(REGISTER))
    assert udp.sent[0][0].startswith(b"SIP/2.0 401 ")
    assert not guard.protection.is_banned(PHONE[0], 1000.0)


def test_sink_answers_and_absorbs_without_parsing_the_request_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The transaction drops its parsed request with the final response: the
    # response's destination, the metrics and the retransmissions need no
    # parse of it again.
    sink, bus, udp, _ = make_sink()
    receive(sink, REGISTER)
    parsed: list[bytes] = []

    def counting_parse(data: bytes, config: object = None) -> object:
        parsed.append(data)
        return parse(data)

    monkeypatch.setattr(transaction, "parse", counting_parse)
    ok = bytes(make_response(_request(REGISTER), 200))
    bus.requests[0][2](schema.encode(schema.SendResponse(data=ok)))
    receive(sink, REGISTER)
    receive(sink, REGISTER)
    assert udp.sent == [(ok, PHONE)] * 3
    assert parsed == []
