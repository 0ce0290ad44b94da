"""Message.top_via: the top Via value alone, and the transaction keys that read it."""

from __future__ import annotations

import pytest

from sipmsg import ParseError, Response, parse
from sipmsg.transaction import client_key

RESP = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-top, "
    b"SIP/2.0/TCP 198.51.100.7:5062;branch=z9hG4bK-2\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.9;branch=z9hG4bK-3\r\n"
    b"From: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>;tag=b\r\n"
    b"Call-ID: c@x\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n"
)


def _resp(data: bytes = RESP) -> Response:
    msg = parse(data)
    assert isinstance(msg, Response)
    return msg


def test_top_via_equals_via_0_and_leaves_the_rest_unparsed() -> None:
    resp = _resp()
    top = resp.top_via
    assert top is not None
    assert (top.host, top.branch, top.transport) == (b"192.0.2.10", b"z9hG4bK-top", b"UDP")
    assert resp._via is None
    assert resp.top_via is top  # cached
    assert resp.via[0] == top
    assert len(resp.via) == 3


def test_top_via_after_via_is_via_0() -> None:
    resp = _resp()
    vias = resp.via
    assert resp.top_via is vias[0]


@pytest.mark.parametrize(
    "later",
    [b"SIP/2.0/TCP 198.51.100.7:99999;branch=z9hG4bK-2", b"SIP/2.0 nothing"],
)
def test_a_malformed_later_via_is_not_read(later: bytes) -> None:
    resp = _resp(RESP.replace(b"SIP/2.0/TCP 198.51.100.7:5062;branch=z9hG4bK-2", later))
    assert resp.top_via is not None
    assert resp.via_branch == b"z9hG4bK-top"
    assert client_key(resp) == (b"z9hG4bK-top", b"INVITE")
    with pytest.raises(ParseError) as info:
        _ = resp.via
    assert info.value.header == "via"


@pytest.mark.parametrize(
    "top", [b"SIP/2.0 192.0.2.10;branch=z9hG4bK-top", b'SIP/2.0/UDP 192.0.2.10;x="open']
)
def test_a_malformed_top_via_raises_naming_the_header(top: bytes) -> None:
    resp = _resp(RESP.replace(b"SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-top", top))
    with pytest.raises(ParseError) as info:
        _ = resp.top_via
    assert info.value.header == "via"
    with pytest.raises(ParseError):
        client_key(resp)


def test_no_via() -> None:
    data = b"".join(ln + b"\r\n" for ln in RESP.split(b"\r\n") if not ln.startswith(b"Via"))
    resp = _resp(data.removesuffix(b"\r\n"))
    assert resp.top_via is None
    assert resp.via_branch is None
    with pytest.raises(ParseError):
        client_key(resp)


@pytest.mark.parametrize(
    "line",
    [
        b"SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/UDP b.example;branch=z9hG4bK2",
        b'SIP/2.0/UDP a.example;x="q,r";branch=z9hG4bK1, SIP/2.0/UDP b.example',
        b'SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/UDP b.example;x="q,r"',
        b" , SIP/2.0/UDP b.example;branch=z9hG4bK2",
        b"SIP/2.0/UDP a.example;branch=z9hG4bK1 ,SIP/2.0/UDP b.example",
        b"SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1,SIP/2.0/TCP b.example",
    ],
)
def test_top_via_cut_at_the_first_comma_equals_the_full_list_split(line: bytes) -> None:
    # top_via cuts the line at its first comma when no quote precedes it; a
    # quoted comma or an empty first element takes the general split.
    resp = _resp(
        RESP.replace(
            b"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-top, ", b"Via: " + line + b", ", 1
        )
    )
    assert resp.top_via == resp.via[0]
