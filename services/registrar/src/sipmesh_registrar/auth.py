"""Digest authentication of REGISTER (RFC 3261 §22, RFC 7616, RFC 8760), pure.

Nonces are stateless (HMAC, :class:`sipmsg.digest.NonceManager`) so that any
replica checks what another issued. The one thing they cannot do alone, refuse
a nonce-count seen before, is done against the AoR's record
(:mod:`.replay`): :func:`authenticate` returns the count to accept once.

Every failure, an unknown user included, gets the same fresh 401 challenge
(Kamailio's behaviour): a wrong password and a missing account look alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sipmesh_bus.records import SeenNonce, Subscriber, aor_key
from sipmsg import ParseError, Request
from sipmsg.digest import NonceManager, challenges_for, hash_family, verify
from sipmsg.uri import parse_uri

from .model import Admitted, Answer, Policy, answer
from .replay import seen_nonce

__all__ = ["authenticate", "challenge", "replayed"]

# Timing: an unknown user is checked against a dummy HA1, so that the answer
# and its latency are those of a wrong password (no user enumeration).
_DUMMY_HA1: Final = {b"MD5": b"0" * 32, b"SHA-256": b"0" * 64}


def challenge(
    req: Request,
    realm: bytes,
    nonces: NonceManager,
    policy: Policy,
    *,
    now: float,
    entropy: bytes,
    stale: bool = False,
    result: str = "challenge",
    auth_failure: str | None = None,
) -> Answer:
    """A 401 with one fresh challenge per algorithm, SHA-256 first.

    RFC 8760 §2.4: a server that supports several algorithms sends one
    WWW-Authenticate header field per algorithm, the most preferred first;
    MD5-only clients skip the SHA-256 one.
    """
    nonce = nonces.issue(now, entropy=entropy, realm=realm)
    headers = tuple(
        (b"WWW-Authenticate", bytes(c))
        for c in challenges_for(realm, nonce, algorithms=policy.algorithms, stale=stale)
    )
    return answer(req, 401, result, headers=headers, auth_failure=auth_failure)


def authenticate(
    req: Request,
    *,
    user: str,
    realm: bytes,
    subscribers: Mapping[str, Subscriber],
    nonces: NonceManager,
    policy: Policy,
    now: float,
    entropy: bytes,
) -> SeenNonce | Answer:
    """Check the Digest credentials for ``realm`` (RFC 3261 §22.4, RFC 7616 §3.4).

    Args:
        req: the REGISTER.
        user: the AoR's user (To), unescaped.
        realm: the AoR's domain.
        subscribers: KV key -> subscriber.
        nonces, policy, now, entropy: as for :func:`challenge`.

    Returns:
        The nonce-count to accept once when the credentials are right, else the
        answer: 401 (challenge, wrong or unknown user alike, stale nonce), 400
        (digest-uri mismatch), 403 (someone else's AoR).
    """

    def again(failure: str | None, *, stale: bool = False) -> Answer:
        result = "stale" if stale else ("auth_failed" if failure else "challenge")
        return challenge(
            req,
            realm,
            nonces,
            policy,
            now=now,
            entropy=entropy,
            stale=stale,
            result=result,
            auth_failure=failure,
        )

    creds = next(
        (c for c in req.authorization if c.scheme.lower() == b"digest" and c.realm == realm),
        None,
    )
    if creds is None:
        return again(None)
    # NonceManager.check's classification, from the one HMAC check that also
    # gives the expiry used below.
    issued = nonces.issued_at(creds.nonce, realm=realm)
    if issued is None:
        return again("invalid_nonce")
    stale = not -nonces.max_skew <= now - issued <= nonces.ttl
    if not _same_uri(creds.uri, req.uri):
        # RFC 7616 §3.4.6: a server "SHOULD ... check that the request-uri
        # matches the request" and answer 400 (Bad Request) when it does not.
        return answer(req, 400, "bad_request", reason=b"Digest URI Mismatch")
    family = hash_family(creds.algorithm)
    if creds.qop is None or creds.qop.lower() != b"auth" or creds.nc is None:
        # We offer qop=auth only; its nonce-count is what stops replays.
        return again("bad_qop")
    if family not in _DUMMY_HA1:
        return again("bad_algorithm")
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
        return again("unknown_user" if subscriber is None else "wrong_password")
    if stale:
        # RFC 7616 §3.3: stale=true "indicating that the previous request from
        # the client was rejected because the nonce value was stale".
        return again(None, stale=True)
    if subscriber.user != user:
        # §10.3 step 4: "the registrar MUST ... determine if the authorized
        # user is authorized to modify registrations for this address-of-record".
        return answer(req, 403, "forbidden", reason=b"Not Your AoR")
    # Until its expiry some replica (its clock up to max_skew behind) may accept it.
    return seen_nonce(creds.nonce, creds.nc, until=issued + nonces.ttl + nonces.max_skew)


def _same_uri(digest_uri: bytes, request_uri: bytes) -> bool:
    if digest_uri == request_uri:
        return True
    try:
        return parse_uri(digest_uri) == parse_uri(request_uri)
    except ParseError:
        return False


def replayed(
    admitted: Admitted, nonces: NonceManager, policy: Policy, *, now: float, entropy: bytes
) -> Answer:
    """The answer to a nonce-count already used: a fresh challenge, not stale.

    RFC 7616 §3.4: the nc "allows the server to detect request replays by
    maintaining its own copy of this count - if the same nc-value is seen
    twice, then the request is a replay".
    """
    return challenge(
        admitted.request,
        admitted.realm,
        nonces,
        policy,
        now=now,
        entropy=entropy,
        result="auth_failed",
        auth_failure="replay",
    )
