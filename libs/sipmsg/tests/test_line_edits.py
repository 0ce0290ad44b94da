"""Headers.replace_line / remove_line and the message methods built on them."""

from __future__ import annotations

import pytest

from sipmsg import LocalProtocolError, Request, Response, parse

RESP = (
    b"SIP/2.0 200 OK\r\n"
    b"v: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-edge, SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-b\r\n"
    b"Via:   SIP/2.0/UDP 203.0.113.9;branch=z9hG4bK-c\r\n"
    b"From: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>;tag=b\r\n"
    b"Call-ID: c@x\r\nCSeq: 7 INVITE\r\nContent-Length: 4\r\n\r\nbody"
)


def _resp() -> Response:
    msg = parse(RESP)
    assert isinstance(msg, Response)
    return msg


def test_replace_line_keeps_the_name_as_written_and_every_other_line() -> None:
    resp = _resp()
    _ = resp.via  # cached on the original, must not leak into the copy
    out = resp.replace_line(0, b"SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-b ")
    assert bytes(out) == RESP.replace(b"SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-edge, ", b"")
    assert [v.branch for v in out.via] == [b"z9hG4bK-b", b"z9hG4bK-c"]
    assert out.headers[0] == (b"v", b"via", b"SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-b")
    assert out.headers.keys() == resp.headers.keys()
    assert out.body == b"body"
    assert parse(bytes(out)) == out
    assert len(resp.via) == 3  # the original is unchanged


def test_replace_line_negative_index() -> None:
    resp = _resp()
    out = resp.replace_line(-1, b"5")
    assert out.headers.lines[-1] == b"Content-Length: 5"
    assert out.headers.lines[:-1] == resp.headers.lines[:-1]
    assert out.content_length == 5


def test_remove_line_drops_exactly_one_line() -> None:
    resp = _resp()
    out = resp.remove_line(0)
    assert bytes(out) == RESP.replace(RESP.split(b"\r\n")[1] + b"\r\n", b"")
    assert [v.branch for v in out.via] == [b"z9hG4bK-c"]
    assert out.headers.keys() == resp.headers.keys()[1:]
    assert resp.remove_line(-2).headers.lines == resp.headers.lines[:-2] + resp.headers.lines[-1:]


def test_request_edits_keep_the_start_line() -> None:
    req = parse(b"OPTIONS sip:x@example.com SIP/2.0\r\n" + RESP.split(b"\r\n", 1)[1])
    assert isinstance(req, Request)
    out = req.remove_line(1).replace_line(0, b"SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-new")
    assert isinstance(out, Request)
    assert (out.method, out.uri) == (b"OPTIONS", b"sip:x@example.com")
    assert [v.branch for v in out.via] == [b"z9hG4bK-new"]


@pytest.mark.parametrize("index", [7, -8])
def test_out_of_range(index: int) -> None:
    resp = _resp()
    assert len(resp.headers) == 7
    with pytest.raises(IndexError):
        resp.replace_line(index, b"x")
    with pytest.raises(IndexError):
        resp.remove_line(index)


@pytest.mark.parametrize("value", [b"a\r\nX-Injected: 1", b"a\nb", b"a\r"])
def test_replace_line_refuses_cr_lf(value: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        _resp().replace_line(0, value)
