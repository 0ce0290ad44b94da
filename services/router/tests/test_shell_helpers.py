"""Small pieces of the router shell and its tokens that need no NATS."""

from __future__ import annotations

import base64
import hashlib
import hmac
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from sipmesh_router.app import Router
from sipmesh_router.config import RouterConfig, RouterSettings
from sipmesh_router.context import DialogToken, Flow, open_token, seal_token
from sipmesh_router.proxy import contact_token, open_contact_token

SECRET = b"0123456789abcdef0123456789abcdef"


def test_router_entropy_is_fresh_for_every_message_across_pool_refills() -> None:
    js: Any = SimpleNamespace(_nc=object())
    config = RouterConfig(router=RouterSettings(domain="example.com", probe=False))
    router = Router(config, js, secret=SECRET, registry=CollectorRegistry())
    drawn = [router._inputs(now=float(i)).entropy for i in range(3000)]  # > 2 pools
    assert {len(e) for e in drawn} == {12}
    assert len(set(drawn)) == len(drawn)


def test_seal_token_mac_is_hmac_sha256_over_call_id_and_payload() -> None:
    token = DialogToken(caller_tag="abc", caller=Flow(host="192.0.2.1", port=5060))
    sealed = seal_token(token, secret=SECRET, call_id=b"call-1@h")
    raw = base64.urlsafe_b64decode(sealed + b"=" * (-len(sealed) % 4))
    payload, mac = raw[:-12], raw[-12:]
    expected = hmac.new(SECRET, b"call-1@h\x00" + payload, hashlib.sha256).digest()[:12]
    assert mac == expected
    assert open_token(sealed, secret=SECRET, call_id=b"call-1@h") == token
    assert open_token(sealed, secret=SECRET, call_id=b"call-2@h") is None
    assert (
        open_token(sealed, secret=b"another-secret-another-secret!!!", call_id=b"call-1@h") is None
    )


def test_contact_token_mac_is_hmac_sha256_of_the_contact() -> None:
    user = contact_token(b"sip:alice@10.0.0.1:5060", secret=SECRET)
    raw = base64.urlsafe_b64decode(user[3:] + b"=" * (-len(user[3:]) % 4))
    expected = hmac.new(SECRET, b"sip:alice@10.0.0.1:5060", hashlib.sha256).digest()[:8]
    assert raw[:8] == expected
    assert open_contact_token(user, secret=SECRET) == b"sip:alice@10.0.0.1:5060"
    assert open_contact_token(user, secret=b"x" * 32) is None
