"""parse_credentials unquotes every field as _abnf.unquote does, with or without quoted-pairs."""

from __future__ import annotations

import pytest

from sipmsg import ParseError
from sipmsg._abnf import unquote
from sipmsg.digest import parse_credentials

BASE = (
    b'Digest username="alice", realm="example.com", nonce="abc", uri="sip:example.com", '
    b'response="0123456789abcdef0123456789abcdef", algorithm=MD5, cnonce="", '
    b'opaque="o,p=q", qop=auth, nc=0000000a'
)


@pytest.mark.parametrize(
    "value",
    [
        BASE,
        BASE.replace(b'username="alice"', b'username="al\\"ice\\\\"'),
        BASE.replace(b'realm="example.com"', b'REALM = "ex\\ample.com"'),
        BASE.replace(b", ", b" ,\t"),
    ],
    ids=["plain", "escaped-username", "escape-and-spacing", "odd-separators"],
)
def test_fields_are_the_unquoted_params(value: bytes) -> None:
    creds = parse_credentials(value)
    raw = dict(creds.params)
    assert creds.username == unquote(raw[b"username"])
    assert creds.realm == unquote(raw[b"realm"])
    assert (creds.nonce, creds.uri) == (b"abc", b"sip:example.com")
    assert creds.cnonce == b""
    assert creds.opaque == b"o,p=q"
    assert (creds.algorithm, creds.qop, creds.nc) == (b"MD5", b"auth", 10)


def test_escaped_values() -> None:
    creds = parse_credentials(BASE.replace(b'username="alice"', b'username="al\\"ice\\\\"'))
    assert creds.username == b'al"ice\\'
    assert creds.realm == b"example.com"


def test_missing_fields_are_named_in_order() -> None:
    value = BASE.replace(b'nonce="abc", ', b"").replace(b'username="alice", ', b"")
    with pytest.raises(ParseError, match="without username, nonce"):
        parse_credentials(value)


def test_other_scheme_keeps_raw_params() -> None:
    creds = parse_credentials(b'Bearer token="a\\"b", x=1')
    assert creds.scheme == b"Bearer"
    assert creds.params == ((b"token", b'"a\\"b"'), (b"x", b"1"))
