"""The ACK hint of a 2xx (ackroute.py): the edge's ACK must be byte for byte the router's."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sipmesh_bus.schema import (
    AckRoute,
    Envelope,
    Forward,
    MediaAnswer,
    MediaReply,
    SendResponse,
    Transport,
)
from sipmesh_edge.ackroute import AckRoutes
from sipmesh_edge.outbound import Flow
from sipmesh_router import core, media
from sipmesh_router.config import Policy, RouterSettings, make_policy
from sipmesh_router.model import Decision, Inputs
from sipmesh_router.routes import EMPTY_VIEW, Hop, Peer, RoutingView
from sipmsg import Request, Response, parse
from sipmsg.digest import NonceManager

NOW = 1_700_000_000.0
SECRET = b"0123456789abcdef0123456789abcdef"
POLICY = Policy(domains=frozenset({"example.com"}), secret=SECRET, auth=False)
PBX = Hop(host="10.0.0.50", port=5080, uri="sip:2001@10.0.0.50:5080", dispatcher_set="pbx")
LOCAL = ("192.0.2.1", 5060)
CALLER = ("198.51.100.7", 5060)
PHONE = ("203.0.113.9", 40000)
OFFER = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
ANCHORED = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def inputs(routing: RoutingView = EMPTY_VIEW, locations: Any = None) -> Inputs:
    return Inputs(
        routing=routing,
        policy=POLICY,
        nonces=NonceManager(secret=SECRET, ttl=300.0),
        now=NOW,
        entropy=b"e" * 12,
        locations=locations or {},
    )


def run(env: Envelope, inp: Inputs) -> Decision:
    return core.decide(env, parse(env.data), inp)


def _req(data: bytes) -> Request:
    msg = parse(data)
    assert isinstance(msg, Request)
    return msg


def _routing(kit: Any, *, hide: bool = False) -> Any:
    return kit.FakeRouting(
        peers={CALLER[0]: Peer(name="pbx", hide_topology=hide)},
        selectors={"2001": "pbx"},
        sets={"pbx": [PBX]},
    )


class Call:
    """INVITE, 2xx and ACK through the router core, as an edge would carry them."""

    def __init__(
        self,
        kit: Any,
        inp: Inputs,
        *,
        ruri: str,
        callee: tuple[str, int],
        contact: str,
        transport: Transport = "udp",
        downstream_rr: bytes | None = None,
        anchor: MediaReply | None = None,
    ) -> None:
        self.kit = kit
        self.inp = inp
        self.transport = transport
        sdp = "" if anchor is None else OFFER
        invite = kit.request("INVITE", ruri=ruri, body=sdp)
        decided = run(self.envelope(invite), inp)
        if anchor is not None:  # the media service's answer to the offer
            assert decided.media is not None
            decided = media.apply_media(decided, anchor, secret=SECRET)
        fwd = decided.reply
        assert isinstance(fwd, Forward), fwd
        sent = parse(fwd.data)
        assert isinstance(sent, Request)
        resp = kit.response(sent, 200, extra=[("Contact", f"<{contact}>")], body=sdp)
        if downstream_rr is not None:  # a proxy nearer the callee record-routed too
            resp = resp.prepend_header(b"Record-Route", downstream_rr)
        env = kit.envelope(resp, source=callee, context=fwd.context)
        self.decision = run(env, inp)
        self.asked = self.decision.media
        if anchor is not None:  # and to the answer
            self.decision = media.apply_media(self.decision, anchor, secret=SECRET)
        reply = self.decision.reply
        assert isinstance(reply, SendResponse), reply
        self.hint = reply.ack_route
        ok = parse(reply.data)
        assert isinstance(ok, Response)
        self.ok = ok

    def envelope(self, msg: Request | Response) -> Envelope:
        env: Envelope = self.kit.envelope(msg, source=CALLER, transport=self.transport)
        return env

    def ack(
        self, *, max_forwards: int | None = 70, body: str = "", uri: bytes | None = None
    ) -> Request:
        """The caller's ACK (§13.2.2.4), with the route set of the 2xx (§12.1.2: reversed)."""
        ok = self.ok
        contact = ok.contact
        assert isinstance(contact, tuple)
        routes = ok.headers.get_all(b"record-route")[::-1]
        ack = self.kit.request(
            "ACK",
            ruri=(uri or bytes(contact[0].uri)).decode(),
            to="sip:2001@example.com",
            to_tag=(ok.to_tag or b"").decode(),
            branch="z9hG4bKack77",
            extra=[("Route", r.decode()) for r in routes],
            max_forwards=max_forwards,
            body=body,
        )
        assert isinstance(ack, Request)
        return ack

    def flow(self, local: tuple[str, int] = LOCAL) -> Flow:
        return Flow(transport=self.transport, host=CALLER[0], port=CALLER[1], local=local)

    def both(self, ack: Request) -> tuple[Forward | None, tuple[bytes, Any] | None]:
        """What the router does with ``ack``, and what the edge would do with the hint."""
        routed = run(self.envelope(ack), self.inp).reply
        assert self.hint is not None
        acks = AckRoutes()
        acks.remember(self.hint, self.flow(), now=0.0, ttl=32.0)
        edge = acks.route(_req(bytes(ack)), self.flow(), 1.0)
        return (routed if isinstance(routed, Forward) else None), edge


def _dispatcher_call(kit: Any, **kw: Any) -> Call:
    return Call(
        kit,
        inputs(_routing(kit)),
        ruri="sip:2001@example.com",
        callee=(PBX.host, PBX.port),
        contact="sip:2001@10.0.0.50:5080;transport=udp",
        **kw,
    )


def _phone_call(kit: Any) -> Call:
    inp = inputs(locations=kit.bindings("bob", kit.binding(host=PHONE[0], port=PHONE[1])))
    return Call(kit, inp, ruri="sip:bob@example.com", callee=PHONE, contact="sip:bob@10.0.0.9:5060")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_dispatcher_call, id="pbx-by-request-uri"),
        pytest.param(_phone_call, id="phone-by-flow"),
        pytest.param(
            lambda kit: _dispatcher_call(kit, downstream_rr=b"<sip:p2.example.net:5070;lr>"),
            id="next-route",
        ),
        pytest.param(lambda kit: _dispatcher_call(kit, transport="tcp"), id="double-rr"),
    ],
)
@pytest.mark.parametrize("max_forwards", [70, None, 1])
def test_edge_forwards_the_ack_as_the_router_would(
    kit: Any, make: Any, max_forwards: int | None
) -> None:
    call = make(kit)
    assert call.hint is not None
    router, edge = call.both(call.ack(max_forwards=max_forwards))
    assert router is not None
    assert edge is not None
    data, target = edge
    assert data == router.data  # the bytes the callee receives
    assert [target] == router.targets


def test_hint_names_what_the_ack_must_carry(kit: Any) -> None:
    call = _dispatcher_call(kit, transport="tcp", downstream_rr=b"<sip:p2.example.net;lr>")
    hint = call.hint
    assert isinstance(hint, AckRoute)
    rrs = call.ok.headers.get_all(b"record-route")
    assert len(rrs) == 3  # the downstream proxy's, then ours twice (RFC 5658)
    assert hint.routes == [rrs[2], rrs[1]]
    assert hint.rest == [rrs[0]]
    assert (hint.target.host, hint.target.port) == ("p2.example.net", 5060)
    assert hint.via.startswith(b"SIP/2.0/UDP ")
    assert hint.via.endswith(b";branch=")
    assert (hint.call_id, hint.cseq, hint.from_tag, hint.to_tag) == (
        b"call-1@host",
        1,
        b"ftag",
        b"ttag",
    )


def test_hidden_calls_get_no_hint(kit: Any) -> None:
    hidden = Call(
        kit,
        inputs(_routing(kit, hide=True)),
        ruri="sip:2001@example.com",
        callee=(PBX.host, PBX.port),
        contact="sip:2001@10.0.0.50:5080",
    )
    assert hidden.hint is None


def _anchored_call(kit: Any, reply: MediaReply) -> Call:
    settings = RouterSettings(domain="example.com", auth=False, media="always")
    inp = msgspec.structs.replace(inputs(_routing(kit)), policy=make_policy(settings, SECRET))
    return Call(
        kit,
        inp,
        ruri="sip:2001@example.com",
        callee=(PBX.host, PBX.port),
        contact="sip:2001@10.0.0.50:5080;transport=udp",
        anchor=reply,
    )


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(MediaReply(ok=True, sdp=ANCHORED, instance="rtp1"), id="anchored"),
        pytest.param(MediaReply(ok=False, code="timeout", error="x"), id="media-failed"),
    ],
)
def test_anchored_calls_get_a_hint_for_an_ack_without_a_body(kit: Any, reply: MediaReply) -> None:
    # RFC 3261 §13.2.1: the offer was in the INVITE, so the answer is in the
    # 2xx (anchored there); an ACK without a body has nothing for the media
    # service, and the router forwards it as for any call.
    call = _anchored_call(kit, reply)
    # The 2xx's answer still goes to the media service (not after a failed offer).
    assert isinstance(call.asked, MediaAnswer) is reply.ok
    assert call.hint is not None
    assert call.decision.media is None
    if reply.ok:
        assert call.ok.body == ANCHORED  # the hint rides on the anchored 2xx
    router, edge = call.both(call.ack())
    assert router is not None
    assert edge is not None
    data, target = edge
    assert data == router.data
    assert [target] == router.targets
    assert run(call.envelope(call.ack()), call.inp).media is None
    # An ACK with a body (an answer to an offer in the 2xx) is left to the router.
    acks = AckRoutes()
    acks.remember(call.hint, call.flow(), now=0.0, ttl=32.0)
    assert acks.route(call.ack(body=OFFER), call.flow(), 1.0) is None


def test_request_uri_that_could_be_ours_gets_no_hint(kit: Any) -> None:
    for contact in ("sip:2001@10.0.0.50:5080;sm=x", "sip:th-abc@10.0.0.50", "sip:%32001@10.0.0.50"):
        call = Call(
            kit,
            inputs(_routing(kit)),
            ruri="sip:2001@example.com",
            callee=(PBX.host, PBX.port),
            contact=contact,
        )
        assert call.hint is None, contact


def test_anything_else_goes_to_the_router(kit: Any) -> None:
    call = _dispatcher_call(kit)
    hint = call.hint
    assert hint is not None
    acks = AckRoutes()
    flow = call.flow()
    acks.remember(hint, flow, now=0.0, ttl=32.0)

    def edge(ack: Request, at: float = 1.0, via: Flow = flow) -> object:
        return acks.route(ack, via, at)

    assert edge(call.ack()) is not None
    assert edge(call.ack(body="v=0\r\n")) is None  # an answer in the ACK
    assert edge(call.ack(max_forwards=0)) is None  # the router drops it
    assert run(call.envelope(call.ack(max_forwards=0)), call.inp).outcome == "too_many_hops"
    assert edge(call.ack(uri=b"sip:2001@10.0.0.50:5080")) is None  # not the Contact's bytes
    assert edge(call.ack(), at=40.0) is None  # after 64*T1
    assert edge(call.ack(), via=call.flow(local=("192.0.2.1", 5070))) is None
    tcp = Flow(transport="tcp", host=CALLER[0], port=CALLER[1], local=LOCAL)
    assert edge(call.ack(), via=tcp) is None
    ack = call.ack()
    routes = ack.headers.get_all(b"route")
    respaced = ack.replace_header(b"Route", routes[0].replace(b";lr", b"; lr"))
    assert edge(_req(bytes(respaced))) is None
    extra = ack.with_header(b"Route", b"<sip:elsewhere.example.net;lr>")
    assert edge(_req(bytes(extra))) is None
    other_tag = _req(bytes(ack).replace(b"tag=ttag", b"tag=other"))
    assert edge(other_tag) is None
    other_from = _req(bytes(ack).replace(b"tag=ftag", b"tag=other"))
    assert edge(other_from) is None
    other_cseq = _req(bytes(ack).replace(b"CSeq: 1 ACK", b"CSeq: 2 ACK"))
    assert edge(other_cseq) is None
    other_call = _req(bytes(ack).replace(b"Call-ID: call-1@host", b"Call-ID: call-2@host"))
    assert edge(other_call) is None
    required = ack.with_header(b"Proxy-Require", b"foo")
    assert edge(_req(bytes(required))) is None


def test_hints_expire_in_insertion_order(kit: Any) -> None:
    call = _dispatcher_call(kit)
    assert call.hint is not None
    acks = AckRoutes(limit=2)
    flow = call.flow()
    for n in range(3):
        hint = msgspec.structs.replace(call.hint, call_id=b"c%d" % n)
        acks.remember(hint, flow, now=float(n), ttl=32.0)
    assert len(acks) == 2  # the limit: the third is not kept
    acks.remember(msgspec.structs.replace(call.hint, call_id=b"c9"), flow, now=32.5, ttl=32.0)
    assert len(acks) == 2  # c0 expired, c9 kept
    acks.remember(msgspec.structs.replace(call.hint, call_id=b"c9"), flow, now=40.0, ttl=32.0)
    assert len(acks) == 1  # c1 expired, c9 replaced
