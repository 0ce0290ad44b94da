"""The sink forwards the ACK of a 2xx itself when the router gave an AckRoute with the 2xx."""

from __future__ import annotations

import msgspec

from sipmesh_bus import schema, subjects
from sipmesh_bus.branches import branch_for
from sipmesh_edge.ackroute import AckRoutes
from sipmesh_edge.outbound import Flow
from sipmesh_edge.sink import EdgeSink
from sipmsg import Request, Response, make_response, parse

from .test_sink import CALLEE, INVITE, FakeBus, FakeUdp, make_sink, receive

OURS = b"<sip:192.0.2.10:5060;lr;sm=TOKEN>"
CONTACT = b"sip:bob@203.0.113.5:5080"
TARGET = schema.Target(uri=CONTACT.decode(), host=CALLEE[0], port=CALLEE[1])
ACK = (
    b"ACK sip:bob@203.0.113.5:5080 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-ack1;rport\r\n"
    b"Route: " + OURS + b"\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
    b"To: <sip:bob@example.com>;tag=b1\r\nCall-ID: inv1@198.51.100.7\r\nCSeq: 1 ACK\r\n"
    b"Content-Length: 0\r\n\r\n"
)
HINT = schema.AckRoute(
    call_id=b"inv1@198.51.100.7",
    cseq=1,
    from_tag=b"a1",
    to_tag=b"b1",
    uri=CONTACT,
    routes=[OURS],
    inbound="udp",
    via=b"SIP/2.0/UDP 192.0.2.10:5060;branch=",
    target=TARGET,
)


def _answered(hint: schema.AckRoute | None) -> tuple[FakeBus, FakeUdp, EdgeSink]:
    sink, bus, udp, _ = make_sink()
    receive(sink, INVITE)
    invite = parse(INVITE)
    assert isinstance(invite, Request)
    onward = invite.prepend_header(b"Via", b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-e1-x")
    bus.requests[0][2](schema.encode(schema.Forward(data=bytes(onward), targets=[TARGET])))
    [branch_req] = [m for m, _ in udp.take() if isinstance(m, Request)]
    assert isinstance(branch_req, Request)
    ok = make_response(branch_req, 200, to_tag=b"b1")
    receive(sink, bytes(ok), CALLEE)
    subject, _, answer = bus.requests[-1]
    assert subject == subjects.SIP_ROUTE_RESPONSE
    upstream = make_response(invite, 200, to_tag=b"b1")
    answer(schema.encode(schema.SendResponse(data=bytes(upstream), ack_route=hint)))
    assert [m.status for m, _ in udp.take() if isinstance(m, Response)] == [200]
    return bus, udp, sink


def test_ack_matching_the_hint_goes_to_the_callee_without_the_router() -> None:
    bus, udp, sink = _answered(HINT)
    asked = len(bus.requests)
    receive(sink, ACK)
    assert len(bus.requests) == asked
    [(sent, addr)] = udp.take()
    assert addr == CALLEE
    assert isinstance(sent, Request)
    assert sent.method == b"ACK"
    assert sent.headers.get_all(b"route") == []  # §16.4: ours popped
    assert sent.max_forwards == 69  # §16.6 step 3
    branch = branch_for(b"z9hG4bK-ack1", b"inv1@198.51.100.7", 0, b"ACK")
    assert sent.headers.get_all(b"via")[0] == HINT.via + branch  # §16.6 step 8


def test_ack_without_a_hint_or_not_matching_goes_to_the_router() -> None:
    bus, udp, sink = _answered(None)
    receive(sink, ACK)
    assert bus.requests[-1][0] == subjects.SIP_ROUTE
    assert udp.take() == []
    bus, udp, sink = _answered(HINT)
    other = ACK.replace(b";lr;sm=TOKEN>", b";lr;sm=OTHER>")
    receive(sink, other)
    assert bus.requests[-1][0] == subjects.SIP_ROUTE
    assert schema.decode_envelope(bus.requests[-1][1]).data == other
    assert udp.take() == []


def test_ack_to_the_reply_socket_matches_an_invite_on_the_shared_one() -> None:
    # EdgeConfig.reuse_port: the INVITE came in on the shared socket, the ACK is
    # sent to the Record-Route, which names this edge's reply socket; both
    # envelopes named the reply socket, so the router's edit is the same.
    shared, reply, elsewhere = ("192.0.2.10", 5060), ("192.0.2.10", 40001), ("192.0.2.10", 5070)
    acks = AckRoutes()
    acks.replies = {shared: reply}
    ack = parse(ACK)
    assert isinstance(ack, Request)

    def flow(local: tuple[str, int]) -> Flow:
        return Flow(transport="udp", host="198.51.100.7", port=5062, local=local)

    acks.remember(HINT, flow(shared), now=0.0, ttl=32.0)
    for local, routed in ((reply, True), (shared, True), (elsewhere, False)):
        assert (acks.route(ack, flow(local), 1.0) is not None) is routed, local


def test_hints_expire_after_their_ttl_and_a_replaced_one_goes_with_its_own_entry() -> None:
    acks = AckRoutes()
    local = ("192.0.2.10", 5060)
    flow = Flow(transport="udp", host="198.51.100.7", port=5062, local=local)
    ack = parse(ACK)
    assert isinstance(ack, Request)
    other = msgspec.structs.replace(HINT, call_id=b"other")
    acks.remember(HINT, flow, now=0.0, ttl=32.0)
    acks.remember(other, flow, now=1.0, ttl=32.0)
    acks.remember(HINT, flow, now=10.0, ttl=32.0)  # a second 2xx of the call: lives to 42
    assert len(acks) == 2
    acks.remember(other, flow, now=33.5, ttl=32.0)  # 0.0's and 1.0's entries expire first
    assert len(acks) == 2
    assert acks.route(ack, flow, 41.9) is not None  # expiring its replaced entry kept it
    acks.remember(other, flow, now=42.0, ttl=32.0)
    assert len(acks) == 1  # HINT's own entry expired at 42
    assert acks.route(ack, flow, 42.0) is None
    for n in range(1000):
        acks.remember(other, flow, now=100.0 + n, ttl=32.0)
    assert len(acks) == 1  # one per Call-ID, however often replaced
