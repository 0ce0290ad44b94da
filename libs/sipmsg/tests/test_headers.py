"""headers.py: Headers storage, compact forms, CSeq, MediaType, token lists, integers."""

from __future__ import annotations

import pytest

from sipmsg import (
    COMPACT_FORMS,
    CSeq,
    Headers,
    LocalProtocolError,
    MediaType,
    ParseError,
    canonical_name,
    parse_cseq,
    parse_media_type,
    parse_token_list,
)
from sipmsg.headers import display_name, parse_uint, quick_param, split_header_lines


@pytest.mark.parametrize(
    ("short", "full"),
    [
        (b"i", b"call-id"),
        (b"m", b"contact"),
        (b"v", b"via"),
        (b"l", b"content-length"),
        (b"x", b"session-expires"),
        (b"o", b"event"),
        (b"r", b"refer-to"),
    ],
)
def test_canonical_name_expands_compact_forms(short: bytes, full: bytes) -> None:
    assert canonical_name(short) == full
    assert canonical_name(short.upper()) == full
    assert COMPACT_FORMS[short] == full


def test_canonical_name_lowers_and_accepts_str() -> None:
    assert canonical_name("Call-ID") == b"call-id"
    assert canonical_name(b"X-Custom") == b"x-custom"


def test_display_name() -> None:
    assert display_name(b"cseq") == "CSeq"
    assert display_name(b"www-authenticate") == "WWW-Authenticate"
    assert display_name(b"x-foo-bar") == "X-Foo-Bar"


def test_cseq_parse_and_bytes() -> None:
    cseq = parse_cseq(b"4711 INVITE")
    assert cseq == CSeq(seq=4711, method=b"INVITE")
    assert bytes(cseq) == b"4711 INVITE"
    assert parse_cseq(b"  0009\t FOO ") == CSeq(seq=9, method=b"FOO")


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"1",
        b"INVITE",
        b"-1 INVITE",
        b"1 INVITE x",
        b"2147483648 INVITE",
        b"36893488147419103232 REGISTER",
        b"1 IN(VITE",
    ],
)
def test_cseq_rejects(value: bytes) -> None:
    # §20.16: "MUST be less than 2**31".
    with pytest.raises(ParseError) as exc_info:
        parse_cseq(value)
    assert exc_info.value.header == "cseq"
    assert exc_info.value.reason.startswith("bad CSeq header")


def test_cseq_largest_sequence_number() -> None:
    assert parse_cseq(b"2147483647 ACK").seq == 2**31 - 1


def test_media_type() -> None:
    mt = parse_media_type(b"Application/SDP ; charset=UTF-8")
    assert mt == MediaType(type=b"application", subtype=b"sdp", params=((b"charset", b"UTF-8"),))
    assert mt.mime == b"application/sdp"
    assert bytes(mt) == b"application/sdp;charset=UTF-8"
    assert parse_media_type(bytes(mt)) == mt


@pytest.mark.parametrize("value", [b"", b"text", b"text/", b"/plain", b"te xt/plain", b"a/b;=x"])
def test_media_type_rejects(value: bytes) -> None:
    with pytest.raises(ParseError) as exc_info:
        parse_media_type(value)
    assert exc_info.value.header == "content-type"


def test_token_list() -> None:
    assert parse_token_list(b"INVITE, ACK ,BYE") == (b"INVITE", b"ACK", b"BYE")
    assert parse_token_list(b"") == ()
    with pytest.raises(ParseError) as exc_info:
        parse_token_list(b"100rel, bad tag", header="require")
    assert exc_info.value.header == "require"


def test_parse_uint() -> None:
    assert parse_uint(b" 0068 ", header="max-forwards") == 68
    for bad in (b"", b"-1", b"1.5", b"99999999999999999999999", b"\xd9\xa1"):
        with pytest.raises(ParseError):
            parse_uint(bad, header="expires")
    with pytest.raises(ParseError):
        parse_uint(b"256", header="max-forwards", maximum=255)


def test_headers_editing_is_immutable() -> None:
    h = Headers.from_pairs([(b"Via", b"a"), (b"X", b"1"), (b"via", b"b")])
    assert h.get_all("VIA") == [b"a", b"b"]
    assert h.append(b"Y", b"2").lines[-1] == b"Y: 2"
    assert h.prepend(b"Y", b"2").lines[0] == b"Y: 2"
    assert h.replace(b"Via", b"c").get_all("via") == [b"c"]
    assert h.replace(b"Z", b"9").lines[-1] == b"Z: 9"
    assert h.remove("v").lines == (b"X: 1",)
    assert h.lines == (b"Via: a", b"X: 1", b"via: b")
    assert "x" in h
    assert b"y" not in h
    assert h == Headers.from_pairs([(b"Via", b"a"), (b"X", b"1"), (b"via", b"b")])


def test_headers_reject_injection() -> None:
    with pytest.raises(LocalProtocolError):
        Headers.from_pairs([(b"X", b"1\r\nY: 2")])
    with pytest.raises(LocalProtocolError):
        Headers.from_pairs([(b"X Y", b"1")])


def test_get_all_bad_quotes_in_list_header() -> None:
    h = Headers.from_pairs([(b"Contact", b'"unterminated, <sip:a@b>')])
    with pytest.raises(ParseError) as exc_info:
        h.get_all(b"contact")
    assert exc_info.value.header == "contact"


def test_split_header_lines_folding_and_content_length() -> None:
    headers, cl = split_header_lines([b"Subject: a", b"  b", b"l: 12", b"X-Y : z"])
    assert cl == 12
    assert list(headers) == [
        (b"Subject", b"subject", b"a b"),
        (b"l", b"content-length", b"12"),
        (b"X-Y", b"x-y", b"z"),
    ]
    assert headers.lines[0] == b"Subject: a\r\n  b"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"<sip:a@b>;tag=xyz", (True, b"xyz")),
        (b"<sip:a@b;tag=uri>;x=1", (True, None)),
        (b"sip:a@b;TAG=up", (True, b"up")),
        (b"sip:a@b", (True, None)),
        (b'"a;tag=q" <sip:a@b>;tag=1', (False, None)),
        (b"<sip:a@b> ; tag = 1", (False, None)),
        (b"<sip:a@b>;tag=", (False, None)),
    ],
)
def test_quick_param(value: bytes, expected: tuple[bool, bytes | None]) -> None:
    assert quick_param(value, b";tag=") == expected
