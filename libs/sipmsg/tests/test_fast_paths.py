"""Fast paths against the general grammar they short-cut (differential tests).

Each fast path either declines (returns None) or gives exactly what the
general path gives on the same input; the examples are built from the
pieces that make the two paths disagree when one of them is wrong.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from sipmsg import ParseError
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
