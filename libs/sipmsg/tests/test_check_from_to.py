"""``msg.check_from_to()`` and ``address.plain_address_ok``: the accessors' verdict, nothing built.

``check_from_to`` must raise exactly what reading ``from_`` then ``to``
raises (the same reason, header and status hint), and ``plain_address_ok``
may only say True for a value ``parse_address`` accepts. Inputs: every vector
under ``vectors/`` and Hypothesis name-addrs built from the pieces where the
fast path and the general parser part ways (ports near 65535, ttl/maddr in
any case, quoted display names, header parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sipmsg import ParseError, Request, make_response, parse, parse_address
from sipmsg.address import plain_address_ok

VECTORS = Path(__file__).resolve().parent / "vectors"
ALL_MESSAGES = sorted(p for p in VECTORS.rglob("*") if p.suffix in (".sip", ".dat"))


def _parses(path: Path) -> bool:
    try:
        parse(path.read_bytes())
    except ParseError:
        return False
    return True


#: The vectors ``parse`` accepts: the others have no message to check.
PARSED_MESSAGES = [p for p in ALL_MESSAGES if _parses(p)]


def _error(fn: Callable[[], object]) -> tuple[str, str | None, int] | None:
    try:
        fn()
    except ParseError as exc:
        return (exc.reason, exc.header, exc.status_hint)
    return None


def _via_accessors(data: bytes) -> tuple[str, str | None, int] | None:
    msg = parse(data)
    return _error(lambda: (msg.from_, msg.to))


def _via_check(data: bytes) -> tuple[str, str | None, int] | None:
    msg = parse(data)
    return _error(msg.check_from_to)


@pytest.mark.parametrize("path", PARSED_MESSAGES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_check_from_to_raises_what_the_accessors_raise(path: Path) -> None:
    data = path.read_bytes()
    assert _via_check(data) == _via_accessors(data)


def test_most_vectors_reach_the_check() -> None:
    # The filter above must not empty the list (a vector folder moved, parse broken).
    assert len(PARSED_MESSAGES) >= len(ALL_MESSAGES) // 2


def _message(from_value: bytes, to_value: bytes) -> bytes:
    return (
        b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n"
        b"From: " + from_value + b"\r\n"
        b"To: " + to_value + b"\r\n"
        b"Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )


_USERS = st.sampled_from([b"", b"alice@", b"a.b-c@", b"+15551234@", b"%41@"])
_HOSTS = st.sampled_from(
    [b"127.0.0.1", b"192.168.1.256", b"example.com", b"ex_ample.com", b"a..b", b"[::1]"]
)
_PORTS = st.sampled_from([b"", b":5060", b":65535", b":65536", b":99999", b":0"])
_URI_PARAMS = st.lists(
    st.sampled_from(
        [b";lr", b";transport=udp", b";ttl=1", b";TTL=300", b";maddr=10.0.0.1", b";MAddr=", b";x"]
    ),
    max_size=3,
).map(b"".join)
_DISPLAY = st.sampled_from([b"", b'"Bob" ', b"Bob ", b'"A \\"q\\"" ', b'"ctl\x01" '])
_HEADER_PARAMS = st.lists(
    st.sampled_from([b";tag=abc", b";tag=", b';x="q;v"', b";expires=60", b"; tag=1"]),
    max_size=2,
).map(b"".join)


@st.composite
def _name_addrs(draw: st.DrawFn) -> bytes:
    scheme = draw(st.sampled_from([b"sip:", b"SIPS:", b"tel:"]))
    uri = scheme + draw(_USERS) + draw(_HOSTS) + draw(_PORTS) + draw(_URI_PARAMS)
    return draw(_DISPLAY) + b"<" + uri + b">" + draw(_HEADER_PARAMS)


@given(_name_addrs())
@example(b"<sip:a@example.com:65536>")
@example(b"<sip:a@example.com;ttl=256>")
@example(b"<sip:a@example.com;MADDR=>")
def test_plain_address_ok_only_for_values_parse_address_accepts(value: bytes) -> None:
    if plain_address_ok(value):
        parse_address(value)  # must not raise


@given(_name_addrs(), _name_addrs())
def test_check_from_to_equals_the_accessors(from_value: bytes, to_value: bytes) -> None:
    data = _message(from_value, to_value)
    assert _via_check(data) == _via_accessors(data)


def test_check_from_to_builds_nothing_for_plain_values() -> None:
    msg = parse(_message(b"<sip:alice@example.com>;tag=1", b'"Bob" <sip:bob@192.0.2.9:5060>'))
    msg.check_from_to()
    # The point of the method: no Address (and no URI) was built or cached.
    assert msg._from is None
    assert msg._to is None


@pytest.mark.parametrize(
    ("from_value", "header"),
    [
        pytest.param(b"<sip:alice@example.com:70000>;tag=1", "from", id="port-range"),
        pytest.param(b"<sip:alice@example.com;ttl=999>;tag=1", "from", id="ttl"),
        pytest.param(b"Bob <sip:alice@example.com", "from", id="no-raquot"),
    ],
)
def test_check_from_to_names_the_bad_header(from_value: bytes, header: str) -> None:
    msg = parse(_message(from_value, b"<sip:bob@example.com>"))
    with pytest.raises(ParseError) as exc_info:
        msg.check_from_to()
    assert exc_info.value.header == header
    assert exc_info.value.status_hint == 400


def test_make_response_to_a_fresh_request_leaves_from_and_to_unbuilt() -> None:
    req = parse(_message(b"<sip:alice@example.com>;tag=1", b"<sip:bob@example.com>"))
    assert isinstance(req, Request)
    resp = make_response(req, 200, to_tag=b"t9")
    assert resp.header(b"to") == b"<sip:bob@example.com>;tag=t9"
    assert resp.header(b"from") == b"<sip:alice@example.com>;tag=1"
    assert req._from is None
    assert req._to is None


# -- from_tag / to_tag / via_branch: the quick paths equal the typed values ------

_TAG_PARAMS = st.lists(
    st.sampled_from(
        [b";tag=a", b";TAG=B", b";Tag=c", b";tag", b";tagx=1", b";xtag=2", b";x=tag", b";lr"]
    ),
    max_size=4,
).map(b"".join)
_BRANCH_PARAMS = st.lists(
    st.sampled_from(
        [b";branch=z9hG4bKa", b";BRANCH=z9hG4bKb", b";branch", b";branchx=1", b";rport", b";x=y"]
    ),
    max_size=4,
).map(b"".join)


@given(_TAG_PARAMS, _TAG_PARAMS)
@example(b";tag;tag=second", b"")
@example(b";TAG=a;tag=b", b";Tag=c;tag=d")
def test_quick_tags_equal_the_typed_tags(from_params: bytes, to_params: bytes) -> None:
    data = _message(b"<sip:alice@example.com>" + from_params, b"sip:bob@example.com" + to_params)
    msg, typed = parse(data), parse(data)
    try:
        want = (typed.from_.tag, typed.to.tag)
    except ParseError:
        return  # malformed: the quick paths promise nothing then
    assert (msg.from_tag, msg.to_tag) == want


@given(_BRANCH_PARAMS)
@example(b";BRANCH=z9hG4bKa;branch=z9hG4bKb")
@example(b";branch;branch=z9hG4bKb")
def test_via_branch_equals_the_typed_branch(params: bytes) -> None:
    data = _message(b"<sip:a@example.com>;tag=1", b"<sip:b@example.com>").replace(
        b";branch=z9hG4bK-1", params
    )
    msg, typed = parse(data), parse(data)
    try:
        want = typed.via[0].branch
    except ParseError:
        return
    assert msg.via_branch == want
