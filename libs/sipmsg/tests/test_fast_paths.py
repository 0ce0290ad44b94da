"""Fast paths against the general grammar they short-cut (differential tests).

Each fast path either declines (returns None) or gives exactly what the
general path gives on the same input; the examples are built from the
pieces that make the two paths disagree when one of them is wrong.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import example, given
from hypothesis import strategies as st

from sipmsg import Address, ParseError
from sipmsg.address import _parse_address, parse_address
from sipmsg.digest import _auth_params, _fast_auth_params

# Pieces of auth-param lists: names in both cases, tokens, quoted strings
# with escapes and separators inside, and the separators and stray octets
# that must send the fast path to the general one.
_AUTH_PIECES = st.sampled_from(
    [
        b"realm",
        b"Nonce",
        b"nc",
        b"qop",
        b"a.b",
        b"MD5",
        b"00000001",
        b"=",
        b",",
        b", ",
        b" ,",
        b"\t",
        b" ",
        b'"x"',
        b'""',
        b'"a,b=c"',
        b'"a\\"b"',
        b'"\\\\"',
        b'"',
        b"\\",
        b"<",
        b">",
        b";",
        b"\x01",
        b"\xc3\xa9",
        b'"\xc3\xa9"',
    ]
)


def _general(rest: bytes) -> object:
    try:
        return _auth_params(rest, "authorization")
    except ParseError:
        return ParseError


@given(st.lists(_AUTH_PIECES, max_size=14).map(b"".join))
@example(b'realm="a", nonce="b", nc=00000001, qop=auth')
@example(b'realm="a",realm="b"')
@example(b'realm="a" nonce="b"')
@example(b"a=b=c")
def test__fast_auth_params_agrees_with_the_general_path(rest: bytes) -> None:
    fast = _fast_auth_params(rest)
    if fast is not None:
        assert fast == _general(rest)


def test__fast_auth_params_takes_the_usual_shape() -> None:
    rest = b'Realm="a.b", nonce="x\\"y", algorithm=MD5,nc=00000001,\tqop=auth'
    assert _fast_auth_params(rest) == (
        (b"realm", b'"a.b"'),
        (b"nonce", b'"x\\"y"'),
        (b"algorithm", b"MD5"),
        (b"nc", b"00000001"),
        (b"qop", b"auth"),
    )


def test__fast_auth_params_declines_duplicates_and_odd_spacing() -> None:
    assert _fast_auth_params(b'realm="a", REALM="b"') is None
    assert _fast_auth_params(b'realm = "a"') is None
    assert _fast_auth_params(b'realm="a",, nonce="b"') is None


# Pieces of name-addr values: display names, URIs, header parameters, and
# the blanks, quotes, escapes and stray octets the fast path must decline.
_ADDRESS_PIECES = st.sampled_from(
    [
        b'"Bob"',
        b'"B\\"o"',
        b'""',
        b'"a;b<c>"',
        b"Bob Smith",
        b" ",
        b"\t",
        b"<sip:bob@example.com>",
        b"<sip:bob@example.com;lr>",
        b"<SIP:bob@192.0.2.1:65536>",
        b"<sips:192.0.2.1:5061;transport=tcp;TTL=300>",
        b"<sip:a@b;maddr=-x>",
        b"<sip:a@1.2.3.4.example.com>",
        b"<sip:a@256.1.1.1>",
        b"<sip:a@b.;lr>",
        b"<sips:[2001:db8::1]:5061>",
        b"<tel:+1-201-555-0123>",
        b"<sip:a@b",
        b"<",
        b">",
        b";tag=5e1b",
        b";TAG=x",
        b";lr",
        b";q=0.5",
        b";expires=60",
        b";a=[::1]",
        b';+sip.instance="<urn:x>"',
        b';p="a;b=c"',
        b';p="x\\"y"',
        b';p=""',
        b';p="\x01"',
        b'"',
        b";",
        b"=",
        b";a=b=c",
        b"sip:bob@example.com",
        b"\x01",
        b"\xc3\xa9",
    ]
)


def _address_or_error(parser: Callable[[bytes], Address], value: bytes) -> object:
    try:
        a = parser(value)
    except ParseError:
        return ParseError
    return (a.display_name, bytes(a.uri), type(a.uri), a.params, bytes(a))


@given(st.lists(_ADDRESS_PIECES, max_size=8).map(b"".join))
@example(b'"Bob" <sip:bob@example.com>;tag=1;lr')
@example(b"Bob Smith\t<sip:bob@example.com> ;tag=1")
@example(b"<sip:bob@example.com>;a=b=c")
@example(b'<sip:a@b>;+sip.instance="<urn:x;y>";expires=60')
@example(b'<sip:a@b>;p="x"y')
def test_parse_address_fast_path_agrees_with_the_general_path(value: bytes) -> None:
    # parse_address strips the value before either path sees it.
    general = _address_or_error(_parse_address, value.strip(b" \t"))
    assert _address_or_error(parse_address, value) == general


def test_parse_address_fast_path_reads_the_usual_shape() -> None:
    a = parse_address(b'"Bob" <sip:bob@example.com;transport=tcp>;tag=5e;LR')
    assert (a.display_name, a.params, a.tag) == (b"Bob", ((b"tag", b"5e"), (b"lr", None)), b"5e")
    assert bytes(a.uri) == b"sip:bob@example.com;transport=tcp"
