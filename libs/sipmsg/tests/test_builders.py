"""builders.py: make_response, make_ack_for_non2xx, make_cancel, unsupported_options."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmsg import (
    REASON_PHRASES,
    LocalProtocolError,
    ParseError,
    Request,
    Response,
    make_ack_for_non2xx,
    make_cancel,
    make_response,
    parse,
    unsupported_options,
    validate_request,
    validate_response,
)

VECTORS = Path(__file__).parent / "vectors"


def _load(name: str) -> Request | Response:
    return parse((VECTORS / "rfc3261-ex" / name).read_bytes())


def _request(data: bytes) -> Request:
    msg = parse(data)
    assert isinstance(msg, Request)
    return msg


def _invite(name: str = "invite-proxied.sip") -> Request:
    msg = _load(name)
    assert isinstance(msg, Request)
    return msg


def test_make_response_copies_per_8_2_6() -> None:
    req = _invite()
    resp = make_response(req, 180, to_tag=b"a6c85cf")
    assert (resp.status, resp.reason) == (180, b"Ringing")
    assert resp.headers.get_lines(b"via") == req.headers.get_lines(b"via")
    assert resp.header(b"from") == req.header(b"from")
    assert resp.call_id == req.call_id
    assert resp.cseq == req.cseq
    assert resp.to.tag == b"a6c85cf"
    assert resp.to.uri == req.to.uri
    assert resp.content_length == 0
    reparsed = parse(bytes(resp))
    assert isinstance(reparsed, Response)
    validate_response(reparsed)
    assert parse(bytes(resp)) == resp


def test_make_response_100_has_no_added_tag() -> None:
    resp = make_response(_invite(), 100)
    assert resp.to.tag is None
    assert resp.reason == b"Trying"


def test_make_response_derived_tag_is_stable() -> None:
    req = _invite()
    first = make_response(req, 486)
    assert first.to.tag is not None
    assert make_response(req, 486).to.tag == first.to.tag


def test_make_response_keeps_existing_to_tag() -> None:
    bye = _load("bye.sip")
    assert isinstance(bye, Request)
    resp = make_response(bye, 200, to_tag=b"ignored")
    assert resp.header(b"to") == bye.header(b"to")


def test_make_response_reason_and_extra_headers() -> None:
    resp = make_response(_invite(), 499, headers=[(b"Retry-After", b"5")])
    assert resp.reason == b"Unknown"
    assert resp.header("retry-after") == b"5"
    assert resp.headers.lines[-1] == b"Content-Length: 0"
    assert make_response(_invite(), 404, b"Nobody").reason == b"Nobody"


def test_make_response_record_route_for_dialog_creating() -> None:
    req = _invite().prepend_header(b"Record-Route", b"<sip:p1.example.com;lr>")
    assert len(make_response(req, 200, to_tag=b"1").record_route) == 1
    assert make_response(req, 486, to_tag=b"1").record_route == ()


def test_make_response_refuses_ack_and_broken_request() -> None:
    ack = _load("ack.sip")
    assert isinstance(ack, Request)
    with pytest.raises(LocalProtocolError):
        make_response(ack, 200)
    with pytest.raises(ParseError):
        make_response(_invite().remove_header(b"From"), 400)


def test_reason_phrases_table() -> None:
    assert REASON_PHRASES[200] == b"OK"
    assert REASON_PHRASES[481] == b"Call/Transaction Does Not Exist"
    assert all(100 <= code <= 699 for code in REASON_PHRASES)


def test_make_ack_for_non2xx_per_17_1_1_3() -> None:
    invite = _invite("invite.sip").prepend_header(b"Route", b"<sip:p1.example.com;lr>")
    invite = invite.prepend_header(b"Via", b"SIP/2.0/UDP top.example.com;branch=z9hG4bKtop")
    resp = make_response(invite, 486, to_tag=b"x1")
    ack = make_ack_for_non2xx(invite, resp)
    assert (ack.method, ack.uri) == (b"ACK", invite.uri)
    assert len(ack.via) == 1
    assert ack.via_branch == b"z9hG4bKtop"
    assert ack.header(b"to") == resp.header(b"to")
    assert ack.header(b"from") == invite.header(b"from")
    assert ack.cseq.seq == invite.cseq.seq
    assert ack.cseq.method == b"ACK"
    assert len(ack.route) == 1
    validate_request(_request(bytes(ack)))


def test_make_ack_refuses_2xx_and_non_invite() -> None:
    invite = _invite("invite.sip")
    with pytest.raises(LocalProtocolError):
        make_ack_for_non2xx(invite, make_response(invite, 200, to_tag=b"1"))
    bye = _load("bye.sip")
    assert isinstance(bye, Request)
    with pytest.raises(LocalProtocolError):
        make_ack_for_non2xx(bye, make_response(bye, 481))


def test_make_cancel_per_9_1() -> None:
    invite = _invite()
    cancel = make_cancel(invite)
    assert (cancel.method, cancel.uri) == (b"CANCEL", invite.uri)
    assert [v.branch for v in cancel.via] == [invite.via[0].branch]
    for name in (b"to", b"from", b"call-id"):
        assert cancel.header(name) == invite.header(name)
    assert cancel.cseq.seq == invite.cseq.seq
    assert cancel.cseq.method == b"CANCEL"
    validate_request(_request(bytes(cancel)))
    with pytest.raises(LocalProtocolError):
        make_cancel(cancel)


def test_unsupported_options() -> None:
    req = _invite().with_header(b"Require", b"100rel, foo")
    assert unsupported_options(req, [b"100rel"]) == (b"foo",)
    assert unsupported_options(req, [b"100rel", b"foo"]) == ()


def test_make_response_not_strict_answers_a_malformed_from() -> None:
    # RFC 4475 "baddn": the unquoted display name with a comma makes
    # From invalid, and the element "should respond with a 400".
    data = (
        b"OPTIONS sip:t.watson@example.org SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43\r\n"
        b"To: Watson, Thomas <sip:t.watson@example.org>\r\n"
        b"Call-ID: 31415@c.example.com\r\n"
        b"CSeq: 3 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    req = parse(data)
    assert isinstance(req, Request)
    with pytest.raises(ParseError):
        make_response(req, 400)
    resp = make_response(req, 400, b"bad From header", strict=False)
    assert resp.status == 400
    assert resp.header(b"from") == b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43"
    assert resp.header(b"to") is not None
    assert resp.header(b"to").startswith(b"Watson, Thomas <sip:t.watson@example.org>;tag=")  # type: ignore[union-attr]
