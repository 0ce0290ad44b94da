"""proxy.forward_edits: the three §16.6 edits of a forwarded request in one copy."""

from __future__ import annotations

import pytest

from sipmesh_router import proxy
from sipmsg import ParseError, Request, Response, SipUri, parse

_BASE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n"
    b"From: <sip:alice@example.com>;tag=a1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: c1@192.0.2.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"%s"
    b"Record-Route: <sip:p1.example.net;lr>\r\n"
    b"Content-Length: 4\r\n\r\nbody"
)


def _request(max_forwards: bytes) -> Request:
    req = parse(_BASE % max_forwards)
    assert isinstance(req, Request)
    return req


@pytest.mark.parametrize("max_forwards", [b"Max-Forwards: 70\r\n", b"Max-Forwards: 1\r\n", b""])
@pytest.mark.parametrize(
    "record_routes",
    [[], [b"sip:10.0.0.1:5060;lr;sm=x"], [b"sip:10.0.0.1:5061;transport=tcp;lr", b"sip:h;lr"]],
)
def test_forward_edits_give_the_bytes_of_the_three_edits(
    max_forwards: bytes, record_routes: list[bytes]
) -> None:
    req = _request(max_forwards)
    via = proxy.via_value("udp", "10.0.0.1", 5060, b"z9hG4bKsm-1")
    one = proxy.forward_edits(req, record_routes=record_routes, via=via)
    three = proxy.add_via(
        proxy.add_record_route(proxy.decrement_max_forwards(req), record_routes),
        transport="udp",
        host="10.0.0.1",
        port=5060,
        branch=b"z9hG4bKsm-1",
    )
    assert bytes(one) == bytes(three)
    assert one.max_forwards == (69 if b"70" in max_forwards else 0 if max_forwards else 70)
    assert one.headers.get_all(b"via")[0] == via
    assert one.body == b"body"


@pytest.mark.parametrize("max_forwards", [b"Max-Forwards: 70\r\n", b""])
@pytest.mark.parametrize(
    "routes",
    [
        b"Route: <sip:10.0.0.1;lr>\r\n",
        b"Route: <sip:10.0.0.1;lr>, <sip:p2.example.net;lr>\r\n",
        b"Route: <sip:10.0.0.1;lr>\r\nRoute: <sip:p2.example.net;lr>\r\n",
    ],
)
def test_forward_edits_with_routes_give_the_bytes_of_pop_routes_then_the_edits(
    max_forwards: bytes, routes: bytes
) -> None:
    req = _request(routes + max_forwards)

    def ours(uri: SipUri) -> bool:
        return uri.host == b"10.0.0.1"

    left, popped = proxy.split_routes(req, ours)
    assert [bytes(u) for u in popped] == [b"sip:10.0.0.1;lr"]
    via = proxy.via_value("udp", "10.0.0.1", 5060, b"z9hG4bKsm-2")
    one = proxy.forward_edits(req, record_routes=[], via=via, routes=left)
    popped_req, _ = proxy.pop_routes(req, ours)
    two = proxy.forward_edits(popped_req, record_routes=[], via=via)
    assert bytes(one) == bytes(two)
    assert one.headers.get_all(b"route") == left


def test_strip_top_via_of_2xx_gives_the_bytes_of_the_two_edits() -> None:
    ok = parse(
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsm-1\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n"
        b"Record-Route: <sip:10.0.0.1;lr;sm=old>, <sip:p1.example.net;lr>\r\n"
        b"From: <sip:alice@example.com>;tag=a1\r\n"
        b"To: <sip:bob@example.com>;tag=b1\r\n"
        b"Call-ID: c1@192.0.2.1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Content-Length: 4\r\n\r\nbody"
    )
    assert isinstance(ok, Response)
    rr = b"<sip:10.0.0.1;lr;sm=new>, <sip:p1.example.net;lr>"
    one = proxy.strip_top_via_of_2xx(ok, record_route=rr)
    two = proxy.strip_top_via(ok.replace_header(b"Record-Route", rr))
    assert bytes(one) == bytes(two)
    assert one.headers.get_all(b"via") == [b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1"]


def test_strip_top_via_of_2xx_refuses_a_response_with_our_via_alone() -> None:
    ok = parse(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsm-1\r\n"
        b"From: <sip:a@h>;tag=a\r\nTo: <sip:b@h>;tag=b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(ok, Response)
    with pytest.raises(ParseError):
        proxy.strip_top_via_of_2xx(ok, record_route=b"<sip:h;lr>")
