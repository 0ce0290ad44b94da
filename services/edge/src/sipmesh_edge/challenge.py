"""The registrar's digest challenge, answered at the edge: no bus round trip for a 401.

A registration is two exchanges (RFC 3261 §22.2, §10.3 step 3): a REGISTER
without credentials gets ``401 Unauthorized`` with a fresh nonce, and the
same REGISTER with an Authorization header gets the 200. The first answer
needs nothing the registrar keeps: the nonce is stateless (an HMAC over its
issue time and realm under the secret every replica shares, sipmsg
``NonceManager``), and the realm and algorithms are the registrar's
settings. So an edge given the registrar's settings and its nonce secret
(``EdgeConfig.challenge_registers``) answers it with the registrar's own
code, :class:`sipmesh_registrar.fastpath.FastPath`, byte for byte the 401 a
registrar would have sent, and the registrar, which checks every answer in
full (nonce HMAC and age, replayed nonce-counts, the subscriber's HA1), sees
only the second REGISTER. That saves a bus round trip per registration: the
registrar's and NATS's share of it and the edge's own request and reply.

Whatever the fast path does not answer exactly as the registrar would (a
REGISTER for a domain not served, ``Contact: *``, anything unusual) goes to
the registrar as before. The edge's settings must be the registrar's (``up``
and the Helm chart give both the same); a mismatch costs the phone one more
challenge or a refusal, never a registration the registrar did not accept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from sipmesh_bus.records import Subscriber
from sipmesh_edge.stamp import stamp_via, stamped_top_via_line
from sipmesh_registrar.config import RegistrarSettings, make_policy
from sipmesh_registrar.fastpath import FastPath
from sipmsg import ParseError, Request, parse
from sipmsg.digest import NonceManager

__all__ = ["RegisterChallenger"]

_ENTROPY: Final = 12
#: Random bytes per nonce, as the registrar draws them.
_POOL: Final = _ENTROPY * 512
_NOBODY: Final[Mapping[str, Subscriber]] = {}
#: A challenge reads no subscriber.


class RegisterChallenger:
    """Answers a REGISTER without credentials with the registrar's 401.

    Args:
        settings: the registrar's section (domain, aliases, algorithms, nonce TTL).
        secret: the nonce secret the registrars share.
    """

    def __init__(self, settings: RegistrarSettings, secret: bytes) -> None:
        nonces = NonceManager(secret=secret, ttl=settings.nonce_ttl)
        self._fast = FastPath(make_policy(settings), nonces)
        self._pool = b""
        self._at = _POOL

    def challenge(self, req: Request, source: tuple[str, int], now: float) -> bytes | None:
        """The 401 for ``req``, or None when the registrar must decide.

        Args:
            req: a REGISTER that passed the edge's checks.
            source: the packet's (host, port): the 401's Via carries ``received``
                and ``rport`` as the registrar's would (RFC 3581 §4; phones learn
                their public address from them).
            now: epoch seconds (the nonce's issue time).
        """
        if req.method != b"REGISTER" or req.headers.get_lines(b"authorization"):
            return None
        top_via = stamped_top_via_line(req, source[0], source[1])
        if top_via is None:  # a folded top Via: the stamped request parsed again
            try:
                parsed = parse(stamp_via(req, source[0], source[1]))
            except ParseError:
                return None
            if not isinstance(parsed, Request):
                return None
            req = parsed
        answer = self._fast.admit(
            req,
            subscribers=_NOBODY,  # read only with credentials
            now=now,
            entropy=self._entropy(),
            top_via=top_via,
        )
        return answer if isinstance(answer, bytes) else None

    def _entropy(self) -> bytes:
        # One urandom syscall per 512 nonces, as the registrar does.
        at = self._at
        if at >= _POOL:
            self._pool = os.urandom(_POOL)
            at = 0
        self._at = at + _ENTROPY
        return self._pool[at : at + _ENTROPY]
