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

import itertools
import os
from collections.abc import Mapping
from typing import Final

from sipmesh_bus.records import Subscriber
from sipmesh_edge.stamp import stamp_via, stamped_top_via_line
from sipmesh_registrar.config import RegistrarSettings, make_policy
from sipmesh_registrar.fastpath import FastPath, branch_template
from sipmsg import ParseError, Request, parse
from sipmsg.digest import NonceManager

__all__ = ["RegisterChallenger"]

_ENTROPY: Final = 12
#: Random bytes per nonce, as the registrar draws them.
_POOL: Final = _ENTROPY * 512
_NOBODY: Final[Mapping[str, Subscriber]] = {}
#: A challenge reads no subscriber.
_STAMPS: Final = 32_768
#: Stamped top Via templates kept, about one per phone (its Via line without
#: the branch, and its source address), as many as the fast path keeps of
#: its other per-phone memos; past it the older half is dropped.
_BRANCH: Final = b";branch="


class RegisterChallenger:
    """Answers a REGISTER without credentials with the registrar's 401.

    Args:
        settings: the registrar's section (domain, aliases, algorithms, nonce TTL).
        secret: the nonce secret the registrars share.
    """

    def __init__(self, settings: RegistrarSettings, secret: bytes) -> None:
        nonces = NonceManager(secret=secret, ttl=settings.nonce_ttl)
        # The nonces are answered at a registrar, never here: no table of them.
        self._fast = FastPath(make_policy(settings), nonces, keep_issued=False)
        self._pool = b""
        self._at = _POOL
        self._stamps: dict[tuple[bytes, str, int], tuple[bytes, bytes]] = {}
        # (top Via line with a fixed branch, source host, port) -> the stamped
        # line's text before and after the branch value.

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
        top_via = self._stamped_top_via(req, source[0], source[1])
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

    def _stamped_top_via(self, req: Request, host: str, port: int) -> bytes | None:
        """``stamped_top_via_line``, worked out once per phone and source address.

        The stamp (received, rport) depends on the top via-parm's host and
        parameters, never on the branch value, which it copies: for a Via line
        of the plain shape (``branch_template``: one via-parm, the branch a
        token, so that the line parses exactly when its template does) the
        stamped line is the same text around whatever branch the phone drew
        for this transaction. A phone sends the same line, branch aside, with
        every REGISTER.
        """
        line = req.headers.get_lines(b"via")[0]
        plain = branch_template(line)
        if plain is None:
            return stamped_top_via_line(req, host, port)
        template, branch = plain
        key = (template, host, port)
        around = self._stamps.get(key)
        if around is None:
            stamped = stamped_top_via_line(req, host, port)
            if stamped is None:
                return None
            cut = _around_branch(stamped, branch)
            if cut is None:
                return stamped
            around = cut
            if len(self._stamps) >= _STAMPS:
                for old in list(itertools.islice(self._stamps, _STAMPS // 2)):
                    del self._stamps[old]
            self._stamps[key] = around
        return around[0] + branch + around[1]

    def _entropy(self) -> bytes:
        # One urandom syscall per 512 nonces, as the registrar does.
        at = self._at
        if at >= _POOL:
            self._pool = os.urandom(_POOL)
            at = 0
        self._at = at + _ENTROPY
        return self._pool[at : at + _ENTROPY]


def _around_branch(stamped: bytes, branch: bytes) -> tuple[bytes, bytes] | None:
    """The text before and after the one ``;branch=`` value of ``stamped``, if it is ``branch``."""
    if stamped.lower().count(_BRANCH) != 1:
        return None
    start = stamped.find(_BRANCH + branch)
    if start < 0:
        return None
    start += len(_BRANCH)
    end = start + len(branch)
    if end < len(stamped) and stamped[end : end + 1] != b";":
        return None
    return stamped[:start], stamped[end:]
