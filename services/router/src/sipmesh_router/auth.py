"""Proxy authentication of calls from local users (RFC 3261 §22.3), pure.

The digest is the registrar's (SHA-256 and MD5, RFC 8760; stateless HMAC
nonces from the shared secret, :class:`sipmsg.digest.NonceManager`), asked for
with 407 and Proxy-Authenticate instead of 401 and WWW-Authenticate: §22.3 "a
proxy ... MUST challenge the request with a 407 (Proxy Authentication Required)
response ... containing a Proxy-Authenticate header field value".

Replays: a stateless nonce stays valid for its lifetime, so the nonce-count
is what stops a replayed request (RFC 7616 §3.4: "if the same nc-value is seen
twice, then the request is a replay"). :class:`Authenticated` carries the key
under which the shell claims that count in KV ``nonces`` (``kv.create``, which
only one replica can win); the key space is the registrar's (``nc.<hash of the
nonce>.<nc in hex>``), since both services accept each other's nonces. A
count claimed already gets :func:`challenge` again, not stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sipmesh_bus.records import Subscriber, aor_key
from sipmsg import ParseError, Request, Response, make_response
from sipmsg.digest import (
    NonceManager,
    NonceStatus,
    challenges_for,
    hash_family,
    nc_key,
    verify,
)
from sipmsg.uri import parse_uri

__all__ = ["Authenticated", "authenticate", "challenge"]

_DUMMY_HA1: Final = {b"MD5": b"0" * 32, b"SHA-256": b"0" * 64}
_ALGORITHMS: Final = (b"SHA-256", b"MD5")


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    """The credentials were right: this subscriber sent the request."""

    user: str
    replay_key: str
    #: The ``nonces`` key to claim (create) before accepting the request.
    replay_ttl: float
    #: Seconds the claim must live: until the nonce turns stale, plus skew.


def challenge(
    req: Request,
    realm: bytes,
    nonces: NonceManager,
    *,
    now: float,
    entropy: bytes,
    stale: bool = False,
    algorithms: tuple[bytes, ...] = _ALGORITHMS,
) -> Response:
    """A 407 with one Proxy-Authenticate per algorithm, SHA-256 first by default.

    RFC 8760 §2.4: "the server SHOULD send one WWW-Authenticate header field
    per algorithm ... in order of preference" (``router.algorithms``).
    """
    nonce = nonces.issue(now, entropy=entropy, realm=realm)
    headers = [
        (b"Proxy-Authenticate", bytes(c))
        for c in challenges_for(realm, nonce, algorithms=algorithms, stale=stale)
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
    algorithms: tuple[bytes, ...] = _ALGORITHMS,
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
        return challenge(req, realm, nonces, now=now, entropy=entropy, algorithms=algorithms)
    status = nonces.check(creds.nonce, now, realm=realm)
    family = hash_family(creds.algorithm)
    if (
        status is NonceStatus.INVALID
        or family not in _DUMMY_HA1
        or creds.qop is None
        or creds.qop.lower() != b"auth"
        or creds.nc is None  # qop=auth without nc: no replay protection
    ):
        return challenge(req, realm, nonces, now=now, entropy=entropy, algorithms=algorithms)
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
        return challenge(req, realm, nonces, now=now, entropy=entropy, algorithms=algorithms)
    if status is NonceStatus.STALE:
        return challenge(
            req, realm, nonces, now=now, entropy=entropy, stale=True, algorithms=algorithms
        )
    expires_at = nonces.expires_at(creds.nonce, realm=realm) or now
    ttl = max(1.0, expires_at - now + nonces.max_skew)
    key = f"{nc_key(creds.nonce).decode('ascii')}.{creds.nc:08x}"
    return Authenticated(user=subscriber.user, replay_key=key, replay_ttl=ttl)


def _same_uri(digest_uri: bytes, request_uri: bytes) -> bool:
    if digest_uri == request_uri:
        return True
    try:
        return parse_uri(digest_uri) == parse_uri(request_uri)
    except ParseError:
        return False
