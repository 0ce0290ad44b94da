"""The services' hot paths against the general code they short-cut (differential tests).

Each fast path must give exactly what the general path (or the code it
replaced, kept here as the reference) gives: the same value, or the same
error. Inputs: every vector under ``vectors/`` and Hypothesis inputs built
from the pieces that make the paths disagree.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipmsg import (
    Credentials,
    Headers,
    LocalProtocolError,
    ParseError,
    Request,
    Response,
    canonical_name,
    make_response,
    parse,
    parse_credentials,
    parse_token_list,
)
from sipmsg._abnf import (
    _IPV4_RE,
    WS,
    _ipv6_literal,
    _is_ipv4,
    _split_plain_quotes,
    _split_quoted,
    ip_key,
    is_token,
    set_param,
    split_comma,
    unquote,
)
from sipmsg.builders import (
    _DIALOG_METHODS,
    REASON_PHRASES,
    _lenient_tag,
    _lenient_top_via,
    _raw,
)
from sipmsg.headers import _KNOWN_RAW, COMPACT_FORMS
from sipmsg.uri import SipUri, _parse_sip_general, parse_uri
from sipmsg.via import _FAST_RE as _FAST_VIA_RE
from sipmsg.via import Via, _parse_via, _parse_via_general, parse_via

VECTORS = Path(__file__).resolve().parent / "vectors"
BENCH = Path(__file__).resolve().parents[3] / "bench" / "parse" / "messages"
ALL_MESSAGES = sorted(
    [p for p in VECTORS.rglob("*") if p.suffix in (".sip", ".dat")] + list(BENCH.glob("*.sip"))
)


def _outcome(fn: Callable[[], object]) -> object:
    try:
        out = fn()
        return bytes(out) if isinstance(out, Response) else out
    except (ParseError, LocalProtocolError) as exc:
        return (type(exc), str(exc))


# -- make_response: the code it replaced, kept as the reference ---------------


def _reference_derived_tag(req: Request, strict: bool) -> bytes:
    if strict:
        top = req.via[0].branch if req.via else None
        from_tag = req.from_.tag
        seq = b"%d" % req.cseq.seq
    else:
        top = _lenient_top_via(req).branch
        from_tag = _lenient_tag(b"from", _raw(req, b"from"))
        seq = _raw(req, b"cseq")
    seed = b"|".join((_raw(req, b"call-id"), from_tag or b"", seq, top or b"", req.method))
    return hashlib.blake2s(seed, digest_size=8).hexdigest().encode()


def _reference_make_response(
    req: Request,
    status: int,
    *,
    to_tag: bytes | None,
    headers: Iterable[tuple[bytes, bytes]],
    strict: bool,
) -> Response:
    if req.method == b"ACK":
        raise LocalProtocolError("an ACK is never answered")
    reason = REASON_PHRASES.get(status, b"Unknown")
    if strict:
        _ = req.from_, req.cseq, req.call_id
        to = _raw(req, b"to")
        has_tag = req.to.tag is not None
    else:
        _lenient_top_via(req)
        to = _raw(req, b"to")
        has_tag = _lenient_tag(b"to", to) is not None
    if status != 100 and not has_tag:
        to = to + b";tag=" + (to_tag if to_tag is not None else _reference_derived_tag(req, strict))
    pairs = [(b"Via", v) for v in req.headers.get_lines(b"via")]
    if 100 < status < 300 and req.method in _DIALOG_METHODS:
        pairs.extend((b"Record-Route", v) for v in req.headers.get_lines(b"record-route"))
    pairs += [
        (b"From", _raw(req, b"from")),
        (b"To", to),
        (b"Call-ID", _raw(req, b"call-id")),
        (b"CSeq", _raw(req, b"cseq")),
        *headers,
        (b"Content-Length", b"0"),
    ]
    return Response(status=status, reason=reason, headers=Headers.from_pairs(pairs))


_EXTRA: list[tuple[tuple[bytes, bytes], ...]] = [
    (),
    ((b"Contact", b"<sip:a@192.0.2.1>;expires=60"), (b"Date", b"Sat, 13 Nov 2010 23:29:00 GMT")),
    ((b"X-Odd", b"  padded  "),),
    ((b"Bad Name", b"x"),),
    ((b"Warning", b"a\r\nb"),),
]


def _compare_make_response(req: Request, status: int, to_tag: bytes | None, extra: int) -> None:
    for strict in (True, False):
        ours = _outcome(
            partial(make_response, req, status, to_tag=to_tag, headers=_EXTRA[extra], strict=strict)
        )
        ref = _outcome(
            partial(
                _reference_make_response,
                req,
                status,
                to_tag=to_tag,
                headers=_EXTRA[extra],
                strict=strict,
            )
        )
        assert ours == ref


@pytest.mark.parametrize("path", ALL_MESSAGES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_make_response_vectors_equal_the_reference(path: Path) -> None:
    try:
        msg = parse(path.read_bytes())
    except ParseError:
        return
    if not isinstance(msg, Request):
        return
    for status, to_tag, extra in [(100, None, 0), (180, b"t1", 1), (200, None, 1), (400, None, 2)]:
        _compare_make_response(msg, status, to_tag, extra)
    _compare_make_response(msg, 486, b"tag ", 3)
    _compare_make_response(msg, 503, b"a\rb", 4)


def test_make_response_vectors_are_many() -> None:
    assert len(ALL_MESSAGES) > 60


_REQ_HEADERS = st.sampled_from(
    [
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport",
        b"v: SIP/2.0/TCP h.example.com;branch=z9hG4bKb, SIP/2.0/UDP 192.0.2.2",
        b"Via: SIP/2.0/UDP 192.0.2.1;;,;,,",
        b"Record-Route: <sip:p1.example.com;lr>",
        b"Record-Route: <sip:p2;lr>, <sip:p3;lr>",
        b"From: <sip:a@b>;tag=1",
        b'f: "A, B" <sip:a@b>;tag=2',
        b"From: Bell, Alexander <sip:a@b>;tag=3",
        b"To: <sip:c@d>",
        b"t: <sip:c@d>;tag=9",
        b"To: Watson, T <sip:c@d>",
        b"Call-ID: abc@h",
        b"i: def",
        b"Call-ID: a b",
        b"CSeq: 1 INVITE",
        b"CSeq: 36893488147419103232 INVITE",
        b"CSeq: 2 REGISTER",
        b"Max-Forwards: 70",
        b"Subject:  x\r\n  folded",
    ]
)


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    start = draw(
        st.sampled_from(
            [
                b"INVITE sip:a@b SIP/2.0",
                b"REGISTER sip:b SIP/2.0",
                b"ACK sip:a@b SIP/2.0",
                b"SUBSCRIBE sip:a@b SIP/2.0",
            ]
        )
    )
    lines = draw(st.lists(_REQ_HEADERS, max_size=10))
    return b"\r\n".join([start, *lines]) + b"\r\n\r\n"


@settings(max_examples=1500)
@given(
    _requests(),
    st.sampled_from([100, 180, 200, 202, 302, 401, 486, 603]),
    st.sampled_from([None, b"x1", b" t "]),
    st.integers(0, len(_EXTRA) - 1),
)
@example(b"INVITE sip:a@b SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\n\r\n", 200, None, 0)
def test_make_response_equals_the_reference(
    data: bytes, status: int, to_tag: bytes | None, extra: int
) -> None:
    try:
        req = parse(data)
    except ParseError:
        return
    assert isinstance(req, Request)
    _compare_make_response(req, status, to_tag, extra)


def test_make_response_copies_the_request_lines_once() -> None:
    req = parse((BENCH / "register.sip").read_bytes())
    assert isinstance(req, Request)
    resp = make_response(req, 200, headers=_EXTRA[1])
    assert resp.headers.keys() == (
        b"via",
        b"from",
        b"to",
        b"call-id",
        b"cseq",
        b"contact",
        b"date",
        b"content-length",
    )
    assert resp.header(b"from") == req.header(b"from")
    assert parse(bytes(resp)) == resp


# -- quote-aware parameter split -------------------------------------------

_PARAM_PIECES = st.sampled_from(
    [b";", b"=", b'"', b"a", b"Tag", b" ", b"\t", b"<", b">", b"\xc3\xa9", b"\x01", b"x;y"]
)


@given(st.lists(_PARAM_PIECES, max_size=16).map(b"".join))
@example(b';+sip.instance="<urn:a;b>";x="";y;z="q"')
@example(b'a="b')
def test__split_plain_quotes_equals_the_scanner(value: bytes) -> None:
    assert _outcome(lambda: _split_plain_quotes(value, "contact")) == _outcome(
        lambda: _split_quoted(value, "contact")
    )


# -- IPv4 literals, ip_key ------------------------------------------------


def _reference_ip_key(host: bytes) -> bytes | None:
    if not host:
        return None
    if host[0] == 0x5B and host[-1] == 0x5D:
        host = host[1:-1]
    if b":" in host:
        v6 = _ipv6_literal(host)
        return None if v6 is None else v6.packed
    labels = host.split(b".")
    return bytes(int(p) for p in labels) if _is_ipv4(labels) else None


_HOST_PIECES = st.sampled_from(
    [
        *(b"0", b"1", b"9", b"25", b"255", b"256", b"010", b"099", b"299", b"1000", b".", b":"),
        *(b"[", b"]", b"a", b"::", b"\n", b" ", b"\xd9\xa3"),
    ]
)


@given(st.lists(_HOST_PIECES, max_size=9).map(b"".join))
@example(b"192.0.2.1")
@example(b"255.255.255.255\n")
@example(b"[2001:db8::1]")
def test_ip_key_equals_the_label_check(host: bytes) -> None:
    assert ip_key(host) == _reference_ip_key(host)
    assert (_IPV4_RE.fullmatch(host) is not None) == _is_ipv4(host.split(b"."))


# -- Via.with_received -----------------------------------------------------


def _reference_with_received(via: Via, source_host: bytes, source_port: int) -> Via:
    if source_host[:1] == b"[":
        source_host = source_host[1:-1]
    rport_asked = via.has_rport and via.rport is None
    differs = ip_key(via.host) is None or ip_key(via.host) != ip_key(source_host)
    if not differs and not rport_asked:
        return via
    params = set_param(via.params, b"received", source_host)
    if rport_asked:
        params = set_param(params, b"rport", b"%d" % source_port)
    return dataclasses.replace(via, params=params)


_VIAS = st.sampled_from(
    [
        b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport",
        b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa",
        b"SIP/2.0/UDP 192.0.2.01;branch=z9hG4bKa",
        b"SIP/2.0/TCP host.example.com;rport=5;branch=z9hG4bKb",
        b"SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKc;rport",
        b"SIP/2.0/UDP [2001:DB8:0::1];received=192.0.2.9;branch=z9hG4bKd",
    ]
)
_SOURCES = st.sampled_from(
    [b"192.0.2.1", b"192.0.2.01", b"192.0.2.2", b"2001:db8::1", b"[2001:db8::1]", b"::1"]
)


@given(_VIAS, _SOURCES, st.integers(0, 65535))
def test_with_received_equals_the_reference(value: bytes, source: bytes, port: int) -> None:
    via = parse_via(value)
    ours = via.with_received(source, port)
    ref = _reference_with_received(via, source, port)
    assert ours == ref
    assert bytes(ours) == bytes(ref)
    assert (ours is via) == (ref is via)


# -- token lists, canonical names --------------------------------------------


def _reference_token_list(value: bytes) -> tuple[bytes, ...]:
    items = split_comma(value)
    for item in items:
        if not is_token(item):
            raise ParseError("bad Allow header", header="allow")
    return tuple(items)


@given(
    st.lists(
        st.sampled_from([b"INVITE", b"a.b", b",", b", ", b" ", b"\t", b'"', b"<x>", b"\x01"])
    ).map(b"".join)
)
@example(b"INVITE,ACK , BYE")
@example(b" ,INVITE")
def test_parse_token_list_equals_the_reference(value: bytes) -> None:
    assert _outcome(lambda: parse_token_list(value, header="allow")) == _outcome(
        lambda: _reference_token_list(value)
    )


def _reference_canonical_name(name: bytes) -> bytes:
    low = name.strip(WS).lower()
    return COMPACT_FORMS.get(low, low)


@pytest.mark.parametrize("name", sorted(_KNOWN_RAW), ids=lambda n: n.decode())
def test_canonical_name_table_equals_the_rule(name: bytes) -> None:
    assert canonical_name(name) == _reference_canonical_name(name)
    assert canonical_name(name.decode()) == canonical_name(name)


# -- Via: the one-regex path against the general one ----------------------------

_VIA_PIECES = st.sampled_from(
    [
        *(b"SIP/2.0/UDP ", b"SIP/2.0/tcp ", b"sip/2.0/UDP ", b"SIP/2.0/UDP  ", b"SIP / 2.0 / UDP "),
        *(b"192.0.2.1", b"256.1.1.1", b"010.0.0.1", b"host.example.com", b"-bad.com", b"h_1"),
        *(b"[2001:db8::1]", b":5060", b":65536", b":0", b": 5060", b":"),
        *(b";branch=z9hG4bKa", b";BRANCH=x", b";branch=a[b]", b";branch", b";branch="),
        *(b";received=192.0.2.9", b";received=999.0.0.1", b";received=[::1]", b";received"),
        *(b";rport", b";rport=5060", b";rport=70000", b";ttl=1", b";ttl=256", b";ttl"),
        *(b";maddr=h.example.com", b";maddr=-x", b";maddr", b";x=[::1]:5", b';x="q"'),
        *(b";;", b";", b" ", b"=", b"\x01", b"\xc3\xa9"),
    ]
)


def _via_outcome(parser: Callable[[bytes], Via], value: bytes) -> object:
    try:
        v = parser(value)
    except ParseError as exc:
        return (ParseError, exc.reason)
    return (v.protocol, v.transport, v.host, v.port, v.params, bytes(v))


@settings(max_examples=1500)
@given(st.lists(_VIA_PIECES, min_size=1, max_size=8).map(b"".join))
@example(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport;received=192.0.2.9")
@example(b"SIP/2.0/UDP host.example.com;ttl=256")
def test__parse_via_equals_the_general_path(value: bytes) -> None:
    assert _via_outcome(_parse_via, value) == _via_outcome(_parse_via_general, value)


def test__parse_via_fast_path_takes_the_usual_shape() -> None:
    value = b"SIP/2.0/TCP 198.51.100.7:36483;received=198.51.100.7;rport=36483;branch=z9hG4bKc"
    assert _FAST_VIA_RE.fullmatch(value) is not None
    via = _parse_via(value)
    assert (via.transport, via.host, via.port, via.rport) == (b"TCP", b"198.51.100.7", 36483, 36483)


# -- SIP URIs: the one-regex path against the general one ------------------------

_URI_PIECES = st.sampled_from(
    [
        *(b"bob", b"@", b"a.b", b"%41", b":pw", b"192.0.2.1", b"256.1.1.1", b"010.0.0.1"),
        *(b"h.example.com", b"h.", b"-h", b"h_1", b"[::1]", b":5060", b":65536", b":"),
        *(b";lr", b";LR", b";ttl=5", b";TTL=300", b";ttl", b";maddr=h", b";maddr=-x"),
        *(b";maddr", b";x=a/b", b";x=", b";;", b"?h=1", b"=", b" ", b"\xc3\xa9"),
    ]
)


def _uri_outcome(fn: Callable[[], object]) -> object:
    try:
        u = fn()
    except ParseError as exc:
        return (ParseError, exc.reason)
    assert isinstance(u, SipUri)
    return (u.scheme, u.user, u.password, u.host, u.port, u.params, u.headers, bytes(u))


@settings(max_examples=1500)
@given(st.lists(_URI_PIECES, min_size=1, max_size=7).map(b"".join))
@example(b"bob@192.0.2.1:5060;transport=udp;ttl=256")
@example(b"a@1.2.3.4.example.com;maddr=-x")
def test_parse_uri_fast_path_equals_the_general_path(rest: bytes) -> None:
    data = b"sip:" + rest
    assert _uri_outcome(partial(parse_uri, data)) == _uri_outcome(
        partial(_parse_sip_general, data, b"sip", rest)
    )


# -- Digest credentials: each field is its parameter unquoted --------------------

_CRED_VALUES = st.sampled_from(
    [b"alice", b'"alice"', b'"a\\"b"', b'"\\\\"', b'""', b'"x y"', b"00000001", b'"0000000A"']
)


@given(st.lists(_CRED_VALUES, min_size=11, max_size=11))
def test_parse_credentials_fields_are_the_unquoted_params(values: list[bytes]) -> None:
    names = (
        *(b"username", b"realm", b"nonce", b"uri", b"response", b"algorithm", b"cnonce"),
        *(b"opaque", b"qop", b"nc", b"userhash"),
    )
    value = b"Digest " + b", ".join(n + b"=" + v for n, v in zip(names, values, strict=True))
    got = _outcome(partial(parse_credentials, value))
    if isinstance(got, tuple):
        assert unquote(values[9]) not in (b"00000001", b"0000000A")
        return
    assert isinstance(got, Credentials)
    fields = (got.username, got.realm, got.nonce, got.uri, got.response, got.algorithm)
    assert fields == tuple(unquote(v) for v in values[:6])
    assert (got.cnonce, got.opaque, got.qop) == tuple(unquote(v) for v in values[6:9])
    assert got.nc == int(unquote(values[9]), 16)
    assert got.userhash is (unquote(values[10]).lower() == b"true")


# -- Headers editing: the keys carried over equal the keys recomputed ------------


def _reference_replace(h: Headers, name: bytes, value: bytes) -> tuple[object, ...]:
    key = canonical_name(name)
    new = Headers.from_pairs([(name, value)])
    fields, lines, done = [], [], False
    for f, raw in zip(h, h.lines, strict=True):
        if f[1] != key:
            fields.append(f)
            lines.append(raw)
        elif not done:
            fields.append(new[0])
            lines.append(new.lines[0])
            done = True
    if not done:
        fields.append(new[0])
        lines.append(new.lines[0])
    return tuple(fields), tuple(lines), tuple(f[1] for f in fields)


def _state(h: Headers) -> tuple[object, ...]:
    # keys() as carried over, against the keys of the fields themselves.
    assert h.keys() == tuple(f[1] for f in h)
    return tuple(h), h.lines, h.keys()


_EDIT_NAMES = st.sampled_from([b"Via", b"v", b"Route", b"X-A", b"x-a", b"Contact", b"m"])


@given(
    st.lists(st.tuples(_EDIT_NAMES, st.sampled_from([b"1", b"2", b"a, b"])), max_size=6),
    _EDIT_NAMES,
)
def test_headers_edits_keep_keys_and_lines(pairs: list[tuple[bytes, bytes]], name: bytes) -> None:
    h = Headers.from_pairs(pairs)
    _ = h.keys()
    assert _state(h.replace(name, b"new")) == _reference_replace(h, name, b"new")
    key = canonical_name(name)
    removed = [(n, v) for n, v in pairs if canonical_name(n) != key]
    assert _state(h.remove(name)) == _state(Headers.from_pairs(removed))
    assert _state(h.append(name, b"z")) == _state(Headers.from_pairs([*pairs, (name, b"z")]))
    assert _state(h.prepend(name, b"z")) == _state(Headers.from_pairs([(name, b"z"), *pairs]))
