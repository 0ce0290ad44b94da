"""Stateless Digest nonces: a timestamp and some entropy, authenticated with HMAC-SHA256.

Any replica that shares the secret validates a nonce another replica issued,
so a REGISTER challenged by one registrar instance may be answered to another.
No state is kept here; the one thing a stateless nonce cannot do, reject a
replayed nonce-count, is left to the caller with :func:`nc_key`.

Wire form (base64url without padding, so it is a token and needs no escaping)::

    version(1) | issued_ms(8, big-endian) | entropy(n) | mac(16)
    mac = HMAC-SHA256(secret, "sipmesh-nonce" 0x00 realm 0x00 version|issued_ms|entropy)[:16]
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ._errors import LocalProtocolError
from ._native import python_class

__all__ = ["NonceManager", "NonceStatus", "nc_key"]

_VERSION: Final = 1
_HEAD: Final = struct.Struct(">BQ")
_MAC_LEN: Final = 16
_MAX_ENTROPY: Final = 64
_LABEL: Final = b"sipmesh-nonce\x00"
_B64URL_RE: Final = re.compile(rb"\A[A-Za-z0-9_-]+\Z")


class NonceStatus(Enum):
    """What :meth:`NonceManager.check` found."""

    #: Authentic and within its lifetime.
    VALID = "valid"
    #: Authentic but expired (or from too far in the future): challenge again
    #: with ``stale=true`` if the digest itself was right (RFC 2617 §3.2.1:
    #: "The server should only set stale to TRUE if it receives a request for
    #: which the nonce is invalid but with a valid digest for that nonce").
    STALE = "stale"
    #: Not issued with this secret and realm: forged, truncated or garbage.
    INVALID = "invalid"


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class NonceManager:
    """Issue and check HMAC-authenticated nonces.

    ``now`` must be wall-clock seconds (``time.time()``), the same clock on
    every replica: the nonce carries its issue time.
    """

    secret: bytes
    #: Shared by every replica; at least 16 random bytes.
    ttl: float = 300.0
    #: Seconds a nonce stays VALID after it was issued.
    max_skew: float = 5.0
    #: Seconds a nonce may come from the future (replica clocks differ).
    previous_secrets: tuple[bytes, ...] = ()
    #: Secrets being rotated out: nonces they authenticated still check.

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise LocalProtocolError("the nonce secret must be at least 16 bytes")

    def issue(self, now: float, *, entropy: bytes, realm: bytes = b"") -> bytes:
        """A new nonce.

        Args:
            now: wall-clock seconds.
            entropy: fresh random bytes from the caller (``os.urandom(12)``),
                at most 64, so that two nonces of the same millisecond differ.
            realm: binds the nonce to a realm; :meth:`check` must get the same.

        Raises:
            LocalProtocolError: ``now`` is negative or the entropy too long.
        """
        if now < 0 or len(entropy) > _MAX_ENTROPY:
            raise LocalProtocolError("now must be >= 0 and entropy at most 64 bytes")
        body = _HEAD.pack(_VERSION, int(now * 1000)) + entropy
        mac = _mac(self.secret, realm, body)
        return base64.urlsafe_b64encode(body + mac).rstrip(b"=")

    def check(self, nonce: bytes, now: float, *, realm: bytes = b"") -> NonceStatus:
        """Classify a nonce a client sent back.

        Args:
            nonce: the unquoted ``nonce`` directive of the credentials.
            now: wall-clock seconds.
            realm: the realm it was issued for.

        Returns:
            VALID, STALE (authentic, but older than ``ttl`` or newer than
            ``now + max_skew``) or INVALID.
        """
        issued = self.issued_at(nonce, realm=realm)
        if issued is None:
            return NonceStatus.INVALID
        age = now - issued
        if -self.max_skew <= age <= self.ttl:
            return NonceStatus.VALID
        return NonceStatus.STALE

    def issued_at(self, nonce: bytes, *, realm: bytes = b"") -> float | None:
        """The issue time of an authentic nonce, or None when it is not authentic."""
        raw = _decode(nonce)
        if raw is None or len(raw) < _HEAD.size + _MAC_LEN:
            return None
        body, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
        version, issued_ms = _HEAD.unpack_from(body)
        if version != _VERSION:
            return None
        ok = False
        for secret in (self.secret, *self.previous_secrets):
            # Check every secret so the timing does not tell which one matched.
            ok |= hmac.compare_digest(mac, _mac(secret, realm, body))
        return issued_ms / 1000.0 if ok else None

    def expires_at(self, nonce: bytes, *, realm: bytes = b"") -> float | None:
        """When an authentic nonce turns STALE; the TTL for its :func:`nc_key` entry."""
        issued = self.issued_at(nonce, realm=realm)
        return None if issued is None else issued + self.ttl


def _mac(secret: bytes, realm: bytes, body: bytes) -> bytes:
    msg = _LABEL + realm + b"\x00" + body
    return hmac.new(secret, msg, hashlib.sha256).digest()[:_MAC_LEN]


def _decode(nonce: bytes) -> bytes | None:
    if not _B64URL_RE.match(nonce) or len(nonce) % 4 == 1:
        return None
    try:
        return base64.urlsafe_b64decode(nonce + b"=" * (-len(nonce) % 4))
    except (binascii.Error, ValueError):
        return None


def nc_key(nonce: bytes) -> bytes:
    """A key under which to store the highest nonce-count accepted for ``nonce``.

    Stateless nonces cannot stop a replayed request by themselves. RFC 2617
    §3.2.2 on nc: it lets the server "detect request replays by maintaining its
    own copy of this count - if the same nc-value is seen twice, then the
    request is a replay". Store the last accepted ``nc`` under
    this key (a NATS KV-safe name, whatever bytes the client sent) with a TTL
    until :meth:`NonceManager.expires_at`, and reject a request whose ``nc`` is
    not greater; use a compare-and-set update so that two replicas cannot both
    accept the same count.
    """
    return b"nc." + hashlib.sha256(nonce).hexdigest()[:40].encode("ascii")
