"""The edge proxy's cheaper paths (sipmesh_edge.proxy): what they must still do.

- the final response of a non-INVITE request goes upstream from the edge
  itself (no ``sip.route.response`` round trip) unless the Forward set
  ``all_responses`` or it carries SDP;
- a branch's request is built from the Forward's parsed headers (no second
  parse): its Request-URI, its top Via's branch, everything else as the
  router wrote it.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from sipmesh_bus import schema, subjects
from sipmesh_edge.branch import _b32, loop_hash, parse_branch
from sipmesh_edge.bus import BusFailure
from sipmesh_edge.core import EdgeIdentity
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.proxy import _for_branch, _with_branch, _without_top_via
from sipmesh_edge.sink import EdgeSink, SinkConfig
from sipmsg import ParseError, Request, Response, make_response, parse

LOCAL = ("192.0.2.10", 5060)
CALLER = ("198.51.100.7", 5062)
PHONES = [("203.0.113.5", 5080), ("203.0.113.6", 5080)]
OUR_VIA = b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKsm-router-7"
SDP = b"v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n"


def request(method: bytes, cseq: int = 2, *, in_dialog: bool = True) -> bytes:
    data = (
        b"%s sip:bob@203.0.113.5:5080 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-nit1;rport\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
        b"To: <sip:bob@example.com>;tag=b1\r\nCall-ID: nit1@198.51.100.7\r\n"
        b"CSeq: %d %s\r\nContent-Length: 0\r\n\r\n"
    ) % (method, cseq, method)
    return data if in_dialog else data.replace(b";tag=b1", b"")


class Bus:
    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes, Callable[[bytes | BusFailure], None]]] = []

    def request(
        self, subject: str, payload: bytes, callback: Callable[[bytes | BusFailure], None]
    ) -> bool:
        self.requests.append((subject, payload, callback))
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        return True

    def asked(self) -> list[int]:
        out = []
        for subject, payload, _ in self.requests:
            if subject == subjects.SIP_ROUTE_RESPONSE:
                resp = parse(schema.decode_envelope(payload).data)
                assert isinstance(resp, Response)
                out.append(resp.status)
        return out


class Udp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def take(self) -> list[tuple[Request | Response, tuple[str, int]]]:
        out = [(parse(d), a) for d, a in self.sent]
        self.sent.clear()
        return out


class Proxied:
    """One caller's request through the sink, forwarded by a fake router to ``n`` phones."""

    def __init__(
        self, method: bytes, n: int = 1, *, all_responses: bool = False, in_dialog: bool = True
    ) -> None:
        me = EdgeIdentity(edge_id="e1", hosts=frozenset({b"192.0.2.10"}), ports=frozenset({5060}))
        self.now = 1000.0
        self.sink = EdgeSink(
            SinkConfig(identity=me),
            EdgeMetrics(CollectorRegistry()),
            clock=lambda: self.now,
            wallclock=lambda: self.now,
        )
        self.bus, self.udp = Bus(), Udp()
        self.sink.bus = self.bus
        self.sink.udp[LOCAL] = self.udp
        self.request = parse(request(method, in_dialog=in_dialog))
        assert isinstance(self.request, Request)
        self.receive(bytes(self.request), CALLER)
        onward = self.request.prepend_header(b"Via", OUR_VIA)
        targets = [schema.Target(uri=f"sip:bob@{h}:{p}", host=h, port=p) for h, p in PHONES[:n]]
        fwd = schema.Forward(
            data=bytes(onward), targets=targets, context=b"ctx", all_responses=all_responses
        )
        self.bus.requests[-1][2](schema.encode(fwd))
        self.branches = {a: m for m, a in self.udp.take() if isinstance(m, Request)}
        assert sorted(self.branches) == sorted(PHONES[:n])

    def receive(self, data: bytes, source: tuple[str, int]) -> None:
        self.sink.on_message(data, transport="udp", source=source, local=LOCAL, connection=None)

    def phone_says(self, phone: int, status: int, sdp: bool = False, **kw: object) -> Response:
        resp = make_response(self.branches[PHONES[phone]], status, **kw)  # type: ignore[arg-type]
        if sdp:
            resp = resp.with_body(SDP, b"application/sdp")
        self.receive(bytes(resp), PHONES[phone])
        return resp

    def upstream(self) -> list[Response]:
        return [m for m, a in self.udp.take() if isinstance(m, Response) and a == CALLER]


def test_proxy_bye_200_goes_upstream_from_the_edge_without_the_router() -> None:
    call = Proxied(b"BYE")
    sent = call.phone_says(0, 200)
    (up,) = call.upstream()
    assert call.bus.asked() == []
    # §16.7 step 3: "The proxy removes the topmost Via header field value".
    assert [bytes(v) for v in up.via] == [bytes(v) for v in call.request.via]
    assert up.status == 200
    assert up.to_tag == sent.to_tag
    assert up.cseq.method == b"BYE"
    # A retransmitted 200 is absorbed by the client transaction; the caller's
    # retransmitted BYE gets the 200 again from the server transaction.
    call.phone_says(0, 200)
    assert call.upstream() == []
    call.receive(bytes(call.request), CALLER)
    assert [r.status for r in call.upstream()] == [200]
    assert call.bus.asked() == []


def test_proxy_non_invite_final_goes_to_the_router_with_all_responses() -> None:
    call = Proxied(b"BYE", all_responses=True)  # topology hiding: the router restores Vias
    call.phone_says(0, 200)
    assert call.bus.asked() == [200]
    assert call.upstream() == []


def test_proxy_non_invite_final_with_sdp_goes_to_the_router() -> None:
    call = Proxied(b"UPDATE")  # its 200 is an SDP answer for the media anchor
    call.phone_says(0, 200, sdp=True)
    assert call.bus.asked() == [200]
    assert call.upstream() == []


def test_proxy_non_invite_best_final_of_a_fork_goes_upstream_from_the_edge() -> None:
    call = Proxied(b"MESSAGE", 2)
    call.phone_says(0, 404)
    assert call.upstream() == []  # §16.7 step 6: wait until every branch has a final
    call.phone_says(1, 486)
    (up,) = call.upstream()
    assert up.status == 404  # the lowest class, the first received within it
    assert len(up.via) == 1
    assert call.bus.asked() == []


def test_proxy_non_invite_lone_503_becomes_a_500_from_the_edge() -> None:
    call = Proxied(b"MESSAGE")
    call.phone_says(0, 503)
    # §16.7 step 6: "If the only response that was received is a 503, the
    # proxy SHOULD generate a 500 response and forward that upstream".
    assert [r.status for r in call.upstream()] == [500]
    assert call.bus.asked() == []


def test_proxy_non_invite_2xx_of_a_fork_goes_upstream_once() -> None:
    call = Proxied(b"MESSAGE", 2, in_dialog=False)
    call.phone_says(0, 200, to_tag=b"t1")
    call.phone_says(1, 200, to_tag=b"t2")
    assert [r.to_tag for r in call.upstream()] == [b"t1"]
    assert call.bus.asked() == []


def test_proxy_invite_2xx_still_goes_to_the_router() -> None:
    call = Proxied(b"INVITE")
    call.phone_says(0, 200)
    assert call.bus.asked() == [200]


def test__for_branch_sets_the_uri_and_our_branch_and_keeps_the_rest() -> None:
    req = parse(request(b"INVITE"))
    assert isinstance(req, Request)
    onward = req.prepend_header(b"Via", OUR_VIA + b";rport").with_body(SDP, b"application/sdp")
    target = schema.Target(uri="sip:bob@203.0.113.9:5090;transport=udp", host="x", port=1)
    out = _for_branch(onward, target, b"z9hG4bK.e1.hash.1")
    again = parse(bytes(out))
    assert isinstance(again, Request)
    assert again.uri == b"sip:bob@203.0.113.9:5090;transport=udp"
    assert [v.branch for v in again.via] == [b"z9hG4bK.e1.hash.1", b"z9hG4bK-nit1"]
    assert again.via[0].has_rport
    assert again.body == SDP
    assert again.call_id == req.call_id
    assert again.max_forwards == 70
    assert out.via_branch == b"z9hG4bK.e1.hash.1"
    # One Via per line, as the router wrote them (SIPp and some UAs read Via lines).
    assert again.headers.get_lines(b"via") == [
        OUR_VIA.replace(b"z9hG4bKsm-router-7", b"z9hG4bK.e1.hash.1") + b";rport",
        bytes(req.via[0]),
    ]
    info = parse_branch(out.via_branch or b"")
    assert info is not None
    assert info.edge_id == "e1"


def test__for_branch_without_a_target_uri_keeps_the_request_uri() -> None:
    req = parse(request(b"OPTIONS"))
    assert isinstance(req, Request)
    out = _for_branch(req, schema.Target(uri="", host="x", port=1), b"z9hG4bK.e1.h.2")
    assert out.uri == req.uri
    assert out.via_branch == b"z9hG4bK.e1.h.2"


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        (b"SIP/2.0/UDP h;branch=z9hG4bKa", b"SIP/2.0/UDP h;branch=NEW"),
        (b"SIP/2.0/UDP h;branch=z9hG4bKa;rport", b"SIP/2.0/UDP h;branch=NEW;rport"),
        (b"SIP/2.0/UDP h;branch=z9hG4bKab", None),  # not the branch asked about
        (b"SIP/2.0/UDP h;BRANCH=z9hG4bKa", None),  # left to the Via parser
        (b'SIP/2.0/UDP h;x=";branch=z9hG4bKa";branch=z9hG4bKa', None),  # quoted
    ],
)
def test__with_branch_splices_only_a_plain_branch(top: bytes, expected: bytes | None) -> None:
    assert _with_branch(top, b"z9hG4bKa", b"NEW") == expected


def test__for_branch_odd_top_via_is_rewritten_by_the_via_parser() -> None:
    req = parse(request(b"OPTIONS"))
    assert isinstance(req, Request)
    odd = req.prepend_header(b"Via", b'SIP/2.0/UDP 192.0.2.10;BRANCH=z9hG4bKx;n="a;b"')
    out = parse(bytes(_for_branch(odd, schema.Target(uri="", host="x", port=1), b"z9hG4bK.e.h.3")))
    assert isinstance(out, Request)
    assert [v.branch for v in out.via] == [b"z9hG4bK.e.h.3", b"z9hG4bK-nit1"]
    assert out.via[0].host == b"192.0.2.10"


def test__b32_is_rfc4648_base32_lower_case_without_padding() -> None:
    rng = random.Random(3261)
    digests = [bytes(10), b"\xff" * 10, *(rng.randbytes(10) for _ in range(2000))]
    for digest in digests:
        assert _b32(digest) == base64.b32encode(digest).rstrip(b"=").lower()


def test_loop_hash_reads_proxy_require_and_proxy_authorization() -> None:
    req = parse(request(b"INVITE", in_dialog=False))
    assert isinstance(req, Request)
    plain = loop_hash(req)
    assert loop_hash(req.with_header(b"Proxy-Require", b"foo")) != plain
    assert loop_hash(req.with_header(b"Proxy-Authorization", b"Digest x=1")) != plain
    assert loop_hash(req.with_header(b"Subject", b"hello")) == plain
    assert len(plain) == 16


def test__without_top_via_removes_our_via_value_only() -> None:
    req = parse(request(b"BYE"))
    assert isinstance(req, Request)
    two_lines = req.prepend_header(b"Via", OUR_VIA)
    one_line = req.replace_header(b"Via", OUR_VIA + b", " + bytes(req.via[0]))
    for onward in (two_lines, one_line):
        up = parse(bytes(_without_top_via(make_response(onward, 200))))
        assert isinstance(up, Response)
        assert up.headers.get_lines(b"via") == [bytes(v) for v in req.via]
        assert up.call_id == req.call_id
    three = req.prepend_header(b"Via", b"SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKx, " + OUR_VIA)
    up = parse(bytes(_without_top_via(make_response(three, 200))))
    assert isinstance(up, Response)
    assert up.headers.get_lines(b"via") == [OUR_VIA, bytes(req.via[0])]
    with pytest.raises(ParseError) as exc_info:
        _without_top_via(make_response(req, 200))
    assert exc_info.value.header == "via"


def test_proxy_target_whose_request_cannot_be_built_is_skipped_and_counted() -> None:
    me = EdgeIdentity(edge_id="e1", hosts=frozenset({b"192.0.2.10"}), ports=frozenset({5060}))
    registry = CollectorRegistry()
    sink = EdgeSink(
        SinkConfig(identity=me), EdgeMetrics(registry), clock=lambda: 1.0, wallclock=lambda: 1.0
    )
    bus, udp = Bus(), Udp()
    sink.bus = bus
    sink.udp[LOCAL] = udp
    data = request(b"MESSAGE", in_dialog=False)
    sink.on_message(data, transport="udp", source=CALLER, local=LOCAL, connection=None)
    bad = schema.Target(uri="sip:bob@203.0.113.5 x", host=PHONES[0][0], port=PHONES[0][1])
    good = schema.Target(uri="sip:bob@203.0.113.6", host=PHONES[1][0], port=PHONES[1][1])
    fwd = schema.Forward(data=data, targets=[bad, good])
    bus.requests[-1][2](schema.encode(fwd))
    assert [a for m, a in udp.take() if isinstance(m, Request)] == [PHONES[1]]
    dropped = registry.get_sample_value("sipmesh_edge_dropped_total", {"reason": "bad_forward"})
    assert dropped == 1
    # With no target left, §16.7 step 6: "the proxy MUST send a 408".
    data2 = data.replace(b"z9hG4bK-nit1", b"z9hG4bK-nit2")
    sink.on_message(data2, transport="udp", source=CALLER, local=LOCAL, connection=None)
    bus.requests[-1][2](schema.encode(schema.Forward(data=data2, targets=[bad])))
    assert [(m.status, a) for m, a in udp.take() if isinstance(m, Response)] == [(408, CALLER)]


def test_proxy_superseded_timer_sends_nothing_and_later_timers_still_fire() -> None:
    call = Proxied(b"INVITE", in_dialog=False)
    call.phone_says(0, 180)
    call.udp.take()
    call.now += 0.5  # Timer A was armed for now; the 180 stopped it (§17.1.1.2)
    call.sink.tick()
    assert call.udp.take() == []
    # §16.8 Timer C (181 s by default) still fires: the ringing branch is cancelled.
    call.now += 181.0
    call.sink.tick()
    sent = call.udp.take()
    assert [(m.method, a) for m, a in sent if isinstance(m, Request)] == [(b"CANCEL", PHONES[0])]


def test_proxy_non_invite_client_transaction_ends_after_timer_k() -> None:
    call = Proxied(b"BYE")
    alive = call.sink.transactions
    call.phone_says(0, 200)
    call.now += 0.5  # Timer E, superseded by the 200
    call.sink.tick()
    assert [a for _, a in call.udp.take()] == [CALLER]  # the 200, relayed; nothing re-sent
    assert call.sink.transactions == alive
    call.now += 5.0  # §17.1.2.2 Timer K = T4 for UDP
    call.sink.tick()
    assert call.sink.transactions == alive - 1


def test_proxy_completed_non_invite_branch_absorbs_retransmissions_until_timer_k() -> None:
    # §17.1.2.2: Completed buffers response retransmissions for T4, kept as a
    # key and a time only (the branch, fork and transaction are gone).
    call = Proxied(b"BYE")
    call.phone_says(0, 200)
    assert len(call.upstream()) == 1
    stray = call.sink._metrics.dropped.labels("stray_response")
    assert call.sink.proxy.clients == {}
    call.now += 4.9
    call.sink.tick()
    call.phone_says(0, 200)  # a retransmission: absorbed, not a stray
    assert call.upstream() == []
    assert stray._value.get() == 0
    call.now += 0.1  # Timer K (T4) fired
    call.phone_says(0, 200)
    assert call.upstream() == []
    assert stray._value.get() == 1
