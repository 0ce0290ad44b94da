"""The dialog token's base64url and MAC helpers (context.py) against the standard library."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random

import pytest

from sipmesh_router.context import (
    DialogToken,
    Flow,
    b64url_decode,
    b64url_encode,
    keyed_sha256,
    open_token,
    seal_token,
)

SECRET = b"0123456789abcdef0123456789abcdef"


def test_b64url_matches_the_base64_module() -> None:
    rng = random.Random(7)
    for size in range(0, 70):
        raw = rng.randbytes(size)
        text = b64url_encode(raw)
        assert text == base64.urlsafe_b64encode(raw).rstrip(b"=")
        assert b64url_decode(text) == raw


@pytest.mark.parametrize(
    "text",
    [b"", b"A", b"AB", b"ABC", b"AB=C", b"AB+/", b"AB-_", b"A!B@C#D", b"\xff\xfe", b"===="],
)
def test_b64url_decode_takes_and_refuses_what_urlsafe_b64decode_does(text: bytes) -> None:
    try:
        expected: bytes | None = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(binascii.Error):  # a ValueError: what open_token catches
            b64url_decode(text)
    else:
        assert b64url_decode(text) == expected
    assert issubclass(binascii.Error, ValueError)


def test_keyed_sha256_copies_give_the_hmac() -> None:
    for msg in (b"", b"call-1@host\x00payload", bytes(range(256))):
        mac = keyed_sha256(SECRET).copy()
        mac.update(msg)
        assert mac.digest() == hmac.new(SECRET, msg, hashlib.sha256).digest()
    # A copy leaves the keyed original untouched.
    assert keyed_sha256(SECRET).copy().digest() == hmac.new(SECRET, b"", hashlib.sha256).digest()


def test_open_token_memo_answers_only_the_exact_value_call_and_secret() -> None:
    secret = SECRET
    token = DialogToken(caller_tag="t1", caller=Flow(host="192.0.2.1", port=5060))
    sealed = seal_token(token, secret=secret, call_id=b"memo-1@h")
    assert open_token(sealed, secret=secret, call_id=b"memo-1@h") == token  # remembered
    assert open_token(sealed, secret=secret, call_id=b"memo-2@h") is None
    assert open_token(sealed, secret=secret[::-1], call_id=b"memo-1@h") is None
    mid = len(sealed) // 2
    other = b"A" if sealed[mid : mid + 1] != b"A" else b"B"
    flipped = sealed[:mid] + other + sealed[mid + 1 :]  # a payload octet changes
    assert open_token(flipped, secret=secret, call_id=b"memo-1@h") is None
    assert open_token(flipped, secret=secret, call_id=b"memo-1@h") is None  # not remembered
