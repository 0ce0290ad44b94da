"""Fuzz invariants (h11 fuzz/afl-server.py): parse() and every accessor either
succeed or raise ParseError, for any bytes; valid messages round-trip."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipmsg import (
    ParseError,
    Request,
    Response,
    parse,
    validate_request,
    validate_response,
)

VECTORS = Path(__file__).parent / "vectors"
SEEDS = sorted(p.read_bytes() for p in VECTORS.glob("*/*") if p.suffix in (".dat", ".sip"))

ACCESSORS = (
    "via",
    "via_branch",
    "call_id",
    "cseq",
    "from_",
    "from_tag",
    "to",
    "to_tag",
    "contact",
    "route",
    "record_route",
    "path",
    "max_forwards",
    "expires",
    "content_length",
    "content_type",
    "allow",
    "supported",
    "require",
    "proxy_require",
    "unsupported",
    "www_authenticate",
    "proxy_authenticate",
    "authorization",
    "proxy_authorization",
    "user_agent",
)


def _exercise(data: bytes) -> None:
    """Parse and touch everything; only ParseError may escape."""
    try:
        msg = parse(data)
    except ParseError:
        return
    assert bytes(msg) == data[: len(bytes(msg))] or bytes(msg) in data
    for name in ACCESSORS:
        with contextlib.suppress(ParseError):
            getattr(msg, name)
    try:
        if isinstance(msg, Request):
            _ = msg.request_uri
            validate_request(msg)
        else:
            validate_response(msg)
    except ParseError:
        pass
    for f in msg.headers:
        with contextlib.suppress(ParseError):
            msg.headers.get_all(f[0])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_any_bytes_only_parse_error(data: bytes) -> None:
    _exercise(data)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    seed = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(seed) - 1, 0)))
        if op == "flip" and seed:
            seed[pos] = draw(
                st.sampled_from(b' \t\r\n:;,<>"@=%\\/0\xff' + bytes([seed[pos] ^ 0x20]))
            )
        elif op == "insert":
            seed[pos:pos] = draw(
                st.sampled_from([b" ", b"\r\n", b",", b";", b'"', b"<", b">", b":"])
            )
        elif seed:
            del seed[pos : pos + draw(st.integers(1, 8))]
    return bytes(seed)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_fuzz_mutated_vectors_only_parse_error(data: bytes) -> None:
    _exercise(data)


_TOKEN = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
).map(str.encode)
_VALUE = st.text(" abcdefxyz0123456789-.;=@/<>:", max_size=30).map(lambda s: s.strip().encode())


@st.composite
def _message(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        start = b"%s sip:%s@example.com SIP/2.0" % (draw(_TOKEN), draw(_TOKEN))
    else:
        start = b"SIP/2.0 %d %s" % (draw(st.integers(100, 699)), draw(_TOKEN))
    names = draw(st.lists(_TOKEN, max_size=8))
    lines = [
        n + draw(st.sampled_from([b": ", b":", b" : ", b":\t"])) + draw(_VALUE)
        for n in names
        if n.lower() not in (b"content-length", b"l")
    ]
    body = draw(st.binary(max_size=40))
    lines.append(b"Content-Length: %d" % len(body))
    return start + b"\r\n" + b"".join(ln + b"\r\n" for ln in lines) + b"\r\n" + body


@settings(max_examples=300)
@given(_message())
def test_fuzz_generated_messages_round_trip(data: bytes) -> None:
    msg = parse(data)
    assert bytes(msg) == data
    again = parse(bytes(msg))
    assert again == msg
    assert isinstance(again, Request | Response)
    assert again.headers == msg.headers
    assert again.body == msg.body
    edited = msg.with_header(b"X-Fuzz", b"1")
    assert bytes(edited).startswith(data[: data.index(b"\r\n\r\n")])
    assert parse(bytes(edited)) == edited
