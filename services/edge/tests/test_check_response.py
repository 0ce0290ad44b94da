"""core.check_response: what the edge validates of a response, and what it leaves to the router."""

from __future__ import annotations

import pytest

from sipmesh_edge import core
from sipmesh_edge.core import Garbage
from sipmsg import ParseError, Response, parse, validate_response
from sipmsg.transaction import client_key

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-edge1\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-ua1;rport=5062;received=198.51.100.7\r\n"
    b"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"
    b"Call-ID: c1@198.51.100.7\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@203.0.113.5>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _edit(old: bytes, new: bytes) -> bytes:
    assert old in OK
    return OK.replace(old, new)


@pytest.mark.parametrize("triage", [core.triage, core.peek_triage, core.classify])
@pytest.mark.parametrize(
    "data",
    [
        _edit(b"From: <sip:alice@example.com>;tag=a1", b"From: <sip:alice@exa mple.com;tag=a1"),
        _edit(b"Call-ID: c1@198.51.100.7", b"Call-ID: c1@@198 51"),
        _edit(b"Via: SIP/2.0/UDP 198.51.100.7:5062", b"Via: SIP/2.0/UDP 198.51.100.7:99999"),
        _edit(b"Via: SIP/2.0/UDP 198.51.100.7", b"Via: SIP/2.0/UDP 198.51.100.7, ,;x"),
        _edit(b"Call-ID: c1@198.51.100.7\r\n", b""),
        _edit(b"To: <sip:bob@example.com>;tag=b1", b'To: "b <sip:bob@example.com>;tag=b1'),
    ],
    ids=["bad-from", "bad-call-id", "bad-second-via", "broken-via-list", "no-call-id", "to-quote"],
)
def test_what_the_edge_does_not_read_is_passed_on(triage: object, data: bytes) -> None:
    incoming = triage(data)  # type: ignore[operator]
    assert isinstance(incoming, Response)
    with pytest.raises(ParseError):
        validate_response(incoming)  # the router's full check still finds it
    # What the edge reads of it is there: the client transaction's key and To's tag.
    assert client_key(incoming) == (b"z9hG4bK-edge1", b"INVITE")
    assert incoming.to_tag == b"b1"
    assert bytes(incoming) == data  # passed on untouched


@pytest.mark.parametrize("triage", [core.triage, core.peek_triage, core.classify])
@pytest.mark.parametrize(
    ("data", "header"),
    [
        (
            _edit(b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-edge1\r\nVia", b"X-Via"),
            "via",
        ),
        (_edit(b"SIP/2.0/UDP 192.0.2.10:5060", b"SIP/2.0/UDP 192.0.2.10:none"), "via"),
        (_edit(b"SIP/2.0/UDP 192.0.2.10:5060", b"SIP/2.0 192.0.2.10:5060"), "via"),
        (_edit(b"CSeq: 1 INVITE", b"CSeq: one INVITE"), "cseq"),
        (_edit(b"CSeq: 1 INVITE\r\n", b""), "cseq"),
        (_edit(b"CSeq: 1 INVITE", b"CSeq: 1 INVITE\r\nCSeq: 2 INVITE"), "cseq"),
        (_edit(b"To: <sip:bob@example.com>;tag=b1\r\n", b""), "to"),
        (
            _edit(b"To: <sip:bob@example.com>;tag=b1", b"To: <sip:bob@example.com>;tag=b1\r\nt: x"),
            "to",
        ),
    ],
    ids=[
        "no-via",
        "bad-top-via",
        "top-via-protocol",
        "bad-cseq",
        "no-cseq",
        "two-cseq",
        "no-to",
        "two-to",
    ],
)
def test_a_response_the_edge_cannot_match_is_dropped_silently(
    triage: object, data: bytes, header: str
) -> None:
    # §18.1.2: "If there are any mismatches, the response MUST be silently discarded".
    incoming = triage(data)  # type: ignore[operator]
    assert isinstance(incoming, Garbage)
    assert incoming.response is None
    assert incoming.error.header == header


def test_check_response_reads_only_the_top_via() -> None:
    resp = parse(_edit(b"Via: SIP/2.0/UDP 198.51.100.7:5062", b"Via: SIP/2.0/UDP 198.51.100.7:x"))
    assert isinstance(resp, Response)
    core.check_response(resp)
    assert resp._via is None  # the Via list was never parsed
    assert resp._from is None
    with pytest.raises(ParseError):
        _ = resp.via
