"""sipmesh_edge_transaction_seconds: one observation per server transaction, by method and kind."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from sipmesh_bus import schema
from sipmesh_edge.core import EdgeIdentity
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.sink import EdgeSink, SinkConfig
from sipmsg import Request, Response, make_response, parse

LOCAL = ("192.0.2.10", 5060)
PHONE = ("198.51.100.7", 5062)
CALLEE = ("203.0.113.5", 5080)

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-inv1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"
    b"Call-ID: inv1@198.51.100.7\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.51.100.7:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-reg1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r1\r\nTo: <sip:alice@example.com>\r\n"
    b"Call-ID: reg1@198.51.100.7\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@198.51.100.7:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
# Max-Forwards 0 to a foreign domain: the edge answers 483 itself (RFC 3261 §16.3 step 2).
TOO_MANY_HOPS = INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 0").replace(
    b"branch=z9hG4bK-inv1", b"branch=z9hG4bK-hop1"
)


class FakeBus:
    def __init__(self) -> None:
        self.callbacks: list[object] = []

    def request(self, subject: str, payload: bytes, callback: object) -> bool:
        self.callbacks.append(callback)
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        return True


class FakeUdp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_sink() -> tuple[EdgeSink, FakeBus, FakeUdp, Clock, CollectorRegistry]:
    clock, registry = Clock(), CollectorRegistry()
    me = EdgeIdentity(edge_id="e1", hosts=frozenset({b"192.0.2.10"}), ports=frozenset({5060}))
    sink = EdgeSink(SinkConfig(identity=me), EdgeMetrics(registry), clock=clock, wallclock=clock)
    bus, udp = FakeBus(), FakeUdp()
    sink.bus = bus
    sink.udp[LOCAL] = udp
    return sink, bus, udp, clock, registry


def receive(sink: EdgeSink, data: bytes, source: tuple[str, int] = PHONE) -> None:
    sink.on_message(data, transport="udp", source=source, local=LOCAL, connection=None)


def stats(registry: CollectorRegistry, method: str, kind: str) -> tuple[float, float]:
    labels = {"method": method, "kind": kind}
    count = registry.get_sample_value("sipmesh_edge_transaction_seconds_count", labels)
    total = registry.get_sample_value("sipmesh_edge_transaction_seconds_sum", labels)
    assert count is not None
    assert total is not None
    return count, total


def reply(bus: FakeBus, index: int, resp: Response) -> None:
    callback = bus.callbacks[index]
    assert callable(callback)
    callback(schema.encode(schema.SendResponse(data=bytes(resp))))


def test_transaction_series_exist_at_zero_from_start_up() -> None:
    _, _, _, _, registry = make_sink()
    for method in ("INVITE", "REGISTER", "OPTIONS", "BYE", "OTHER"):
        for kind in ("local", "service", "proxied"):
            assert stats(registry, method, kind) == (0.0, 0.0)


def test_service_answer_observed_once_with_receipt_to_final_time() -> None:
    sink, bus, _, clock, registry = make_sink()
    receive(sink, REGISTER)
    clock.now += 0.25
    request = parse(REGISTER)
    assert isinstance(request, Request)
    reply(bus, 0, make_response(request, 200))
    assert stats(registry, "REGISTER", "service") == (1.0, 0.25)
    clock.now += 1.0
    receive(sink, REGISTER)  # a retransmission: the 200 is re-sent, nothing observed
    assert stats(registry, "REGISTER", "service") == (1.0, 0.25)


def test_local_answer_is_kind_local() -> None:
    sink, bus, udp, _, registry = make_sink()
    receive(sink, TOO_MANY_HOPS)
    assert bus.callbacks == []
    assert any(parse(d).status == 483 for d, _ in udp.sent)  # type: ignore[union-attr]
    assert stats(registry, "INVITE", "local") == (1.0, 0.0)


def test_provisional_is_not_final_and_proxied_invite_counts_callee_time() -> None:
    sink, bus, udp, clock, registry = make_sink()
    receive(sink, INVITE)  # 100 Trying at once: not a final response
    invite = parse(INVITE)
    assert isinstance(invite, Request)
    onward = invite.prepend_header(b"Via", b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-e1-x")
    target = schema.Target(uri="sip:bob@203.0.113.5:5080", host=CALLEE[0], port=CALLEE[1])
    callback = bus.callbacks[0]
    assert callable(callback)
    callback(schema.encode(schema.Forward(data=bytes(onward), targets=[target], context=b"c")))
    branch_req = parse(udp.sent[-1][0])
    assert isinstance(branch_req, Request)
    clock.now += 2.0
    receive(sink, bytes(make_response(branch_req, 180)), CALLEE)
    assert stats(registry, "INVITE", "proxied") == (0.0, 0.0)
    clock.now += 3.0
    ok = make_response(branch_req, 200).with_header(b"Contact", b"<sip:bob@203.0.113.5:5080>")
    receive(sink, bytes(ok), CALLEE)
    assert stats(registry, "INVITE", "proxied") == (0.0, 0.0)  # the router has it first
    clock.now += 0.5
    upstream = make_response(invite, 200).with_header(b"Contact", b"<sip:bob@203.0.113.5:5080>")
    reply(bus, -1, upstream)
    assert stats(registry, "INVITE", "proxied") == (1.0, 5.5)
    assert stats(registry, "INVITE", "service") == (0.0, 0.0)
