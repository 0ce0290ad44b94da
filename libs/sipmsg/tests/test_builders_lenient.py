"""make_response(strict=False): the error response to a request that failed its checks."""

from __future__ import annotations

import pytest

from sipmsg import ParseError, Request, make_response, parse, validate_response

HEAD = b"INVITE sip:bob@example.com SIP/2.0\r\n"
VIA = b"Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw\r\n"
DIALOG = (
    b"From: <sip:alice@example.com>;tag=a1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: c1@192.0.2.25\r\n"
    b"CSeq: 5 INVITE\r\n"
)
TAIL = b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"


def _request(data: bytes) -> Request:
    req = parse(data)
    assert isinstance(req, Request)
    return req


def test_make_response_not_strict_copies_an_overlarge_cseq_raw() -> None:
    # RFC 4475 §3.1.2.4 scalar02: a CSeq number past 2**31 is a 400, and
    # RFC 3261 §8.2.6.2 "The CSeq header field of the response MUST equal the
    # CSeq field of the request".
    req = _request(HEAD + VIA + DIALOG.replace(b"CSeq: 5", b"CSeq: 36893488147419103232") + TAIL)
    with pytest.raises(ParseError):
        make_response(req, 400)
    resp = make_response(req, 400, strict=False)
    assert resp.header(b"cseq") == b"36893488147419103232 INVITE"
    assert resp.to_tag is not None


def test_make_response_not_strict_copies_the_first_of_repeated_headers() -> None:
    # RFC 4475 §3.3 multi01: repeated single-value headers; one of each keeps
    # the 400 well-formed.
    repeated = (
        b"CSeq: 59 INVITE\r\nCall-ID: other@192.0.2.2\r\n"
        b"To: <sip:other@example.net>\r\nFrom: <sip:eve@example.net>;tag=e9\r\n"
    )
    req = _request(HEAD + VIA + DIALOG + repeated + TAIL)
    with pytest.raises(ParseError):
        make_response(req, 400)
    resp = make_response(req, 400, strict=False)
    assert resp.headers.get_lines(b"cseq") == [b"5 INVITE"]
    assert resp.headers.get_lines(b"call-id") == [b"c1@192.0.2.25"]
    assert resp.headers.get_lines(b"from") == [b"<sip:alice@example.com>;tag=a1"]
    (to,) = resp.headers.get_lines(b"to")
    assert to.startswith(b"<sip:bob@example.com>;tag=")
    validate_response(resp)


def test_make_response_not_strict_keeps_a_to_tag_of_the_first_to() -> None:
    repeated = b"To: <sip:other@example.net>\r\n"
    tagged = DIALOG.replace(b"To: <sip:bob@example.com>", b"To: <sip:bob@example.com>;tag=b2")
    resp = make_response(_request(HEAD + VIA + tagged + repeated + TAIL), 400, strict=False)
    assert resp.header(b"to") == b"<sip:bob@example.com>;tag=b2"


def test_make_response_not_strict_copies_broken_later_via_values() -> None:
    # RFC 4475 §3.1.2.1 badinv01: the top value reads as a Via, the rest does
    # not; RFC 3261 §18.2.2 sends the response by the top one alone.
    via = b"Via: SIP/2.0/UDP 192.0.2.15;;,;,,\r\n"
    req = _request(HEAD + via + DIALOG + TAIL)
    with pytest.raises(ParseError):
        _ = req.via
    resp = make_response(req, 400, strict=False)
    assert resp.headers.get_lines(b"via") == [b"SIP/2.0/UDP 192.0.2.15;;,;,,"]


@pytest.mark.parametrize(
    "via",
    [
        b"",  # no Via at all
        b"Via: SIP/2.0/UDP\r\n",  # no sent-by
        b"Via: ;, SIP/2.0/UDP 192.0.2.15\r\n",  # the top value is empty
    ],
    ids=["missing", "no-sent-by", "empty-top"],
)
def test_make_response_not_strict_needs_a_usable_top_via(via: bytes) -> None:
    req = _request(HEAD + via + DIALOG + TAIL)
    with pytest.raises(ParseError) as exc_info:
        make_response(req, 400, strict=False)
    assert exc_info.value.header == "via"


@pytest.mark.parametrize("missing", [b"From", b"To", b"Call-ID", b"CSeq"])
def test_make_response_not_strict_needs_each_copied_header(missing: bytes) -> None:
    lines = [ln for ln in DIALOG.split(b"\r\n") if ln and not ln.startswith(missing + b":")]
    req = _request(HEAD + VIA + b"\r\n".join(lines) + b"\r\n" + TAIL)
    with pytest.raises(ParseError) as exc_info:
        make_response(req, 400, strict=False)
    assert exc_info.value.header == missing.decode().lower()


def test_make_response_not_strict_derives_the_same_tag_for_a_retransmission() -> None:
    data = HEAD + VIA + DIALOG.replace(b"CSeq: 5", b"CSeq: 99999999999") + TAIL
    first = make_response(_request(data), 400, strict=False)
    again = make_response(_request(data), 400, strict=False)
    other = make_response(_request(data.replace(b"kdjuw", b"other")), 400, strict=False)
    assert first.to_tag == again.to_tag
    assert first.to_tag != other.to_tag


def test_make_response_not_strict_equals_strict_for_a_valid_request() -> None:
    req = _request(HEAD + VIA + DIALOG + TAIL)
    strict = make_response(req, 400)
    lenient = make_response(req, 400, strict=False)
    for name in (b"via", b"from", b"call-id", b"cseq"):
        assert lenient.headers.get_lines(name) == strict.headers.get_lines(name)
    assert lenient.header(b"to") is not None
    assert lenient.header(b"to").startswith(b"<sip:bob@example.com>;tag=")  # type: ignore[union-attr]
