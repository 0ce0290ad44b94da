"""Proxy authentication of calls from local users (RFC 3261 §22.3), pure.

The digest is the registrar's (SHA-256 and MD5, RFC 8760; stateless HMAC
nonces from the shared secret, :class:`sipmsg.digest.NonceManager`), asked for
with 407 and Proxy-Authenticate instead of 401 and WWW-Authenticate: §22.3 "a
proxy ... MUST challenge the request with a 407 (Proxy Authentication Required)
response ... containing a Proxy-Authenticate header field value".

Limit: nonce-count replay is not claimed in KV as the registrar does; a
replayed INVITE within the nonce lifetime is accepted (the caller's own call).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sipmesh_bus.records import Subscriber, aor_key
from sipmsg import ParseError, Request, Response, make_response
from sipmsg.digest import NonceManager, NonceStatus, challenges_for, hash_family, verify
from sipmsg.uri import parse_uri

__all__ = ["Authenticated", "authenticate", "challenge"]

_DUMMY_HA1: Final = {b"MD5": b"0" * 32, b"SHA-256": b"0" * 64}
_ALGORITHMS: Final = (b"SHA-256", b"MD5")


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    """The credentials were right: this subscriber sent the request."""

    user: str


def challenge(
    req: Request,
    realm: bytes,
    nonces: NonceManager,
    *,
    now: float,
    entropy: bytes,
    stale: bool = False,
) -> Response:
    """A 407 with one Proxy-Authenticate per algorithm, SHA-256 first (RFC 8760 §2.4)."""
    nonce = nonces.issue(now, entropy=entropy, realm=realm)
    headers = [
        (b"Proxy-Authenticate", bytes(c))
        for c in challenges_for(realm, nonce, algorithms=_ALGORITHMS, stale=stale)
    ]
    return make_response(req, 407, headers=headers)


def authenticate(
    req: Request,
    *,
    realm: bytes,
    subscribers: Mapping[str, Subscriber],
    nonces: NonceManager,
    now: float,
    entropy: bytes,
) -> Authenticated | Response:
    """Check Proxy-Authorization for ``realm``.

    Returns:
        :class:`Authenticated`, or the response to send: 407 (no, wrong, stale
        or unknown-user credentials alike, so users cannot be enumerated) or
        400 (digest-uri mismatch, RFC 7616 §3.4.6).
    """
    creds = next(
        (c for c in req.proxy_authorization if c.scheme.lower() == b"digest" and c.realm == realm),
        None,
    )
    if creds is None:
        return challenge(req, realm, nonces, now=now, entropy=entropy)
    status = nonces.check(creds.nonce, now, realm=realm)
    family = hash_family(creds.algorithm)
    if (
        status is NonceStatus.INVALID
        or family not in _DUMMY_HA1
        or creds.qop is None
        or creds.qop.lower() != b"auth"
    ):
        return challenge(req, realm, nonces, now=now, entropy=entropy)
    if not _same_uri(creds.uri, req.uri):
        return make_response(req, 400, b"Digest URI Mismatch")
    try:
        username = creds.username.decode("utf-8")
        subscriber = subscribers.get(aor_key(username, realm.decode("utf-8")))
    except (UnicodeDecodeError, ValueError):
        subscriber = None
    if subscriber is not None and not subscriber.enabled:
        subscriber = None
    ha1 = _DUMMY_HA1[family]
    if subscriber is not None:
        ha1 = (subscriber.ha1_md5 if family == b"MD5" else subscriber.ha1_sha256).encode()
    if not verify(creds, method=req.method, ha1=ha1, body=req.body) or subscriber is None:
        return challenge(req, realm, nonces, now=now, entropy=entropy)
    if status is NonceStatus.STALE:
        return challenge(req, realm, nonces, now=now, entropy=entropy, stale=True)
    return Authenticated(user=subscriber.user)


def _same_uri(digest_uri: bytes, request_uri: bytes) -> bool:
    if digest_uri == request_uri:
        return True
    try:
        return parse_uri(digest_uri) == parse_uri(request_uri)
    except ParseError:
        return False
