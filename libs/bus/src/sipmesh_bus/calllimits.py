"""Concurrent-call caps per user and per trunk: a pure counter for the router.

Why the router and not the edge: only the router sees every call (each edge
sees its own share), knows who the caller is after authentication and which
trunk (gateway, peer) a call went to, and keeps dialogs in the ``dialogs``
bucket. Every router replica feeds one :class:`CallCounter` from a watch on
that bucket, so the replicas agree within the watch latency::

    counter = CallCounter(CallLimits(per_user=4, per_trunk=30))
    # on each dialogs-bucket entry:   counter.started(call_id, user=..., trunk=...)
    # on each delete:                 counter.ended(call_id)
    over = counter.admit(call_id, user="alice@example.com", trunk="gw-1")
    if over is not None: ...  # refuse (user) or try the next gateway (trunk)

``admit`` counts the call at once, so two INVITEs on one replica never both
take the last slot; between replicas the cap can be exceeded by one call per
replica during the watch latency (milliseconds), the price of no lock.

Suggested answers: a user over its cap gets 403 (RFC 3261 §21.4.4 "the server
understood the request, but is refusing to fulfill it"); a full trunk is
skipped like a failed gateway, and 503 with Retry-After when none is left.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Literal

from msgspec import Meta, Struct

__all__ = ["CallCounter", "CallLimits", "LimitReached"]


class CallLimits(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The caps (0 means none)."""

    per_user: Annotated[int, Meta(ge=0)] = 0
    #: Concurrent calls of one authenticated user (inbound and outbound).
    per_trunk: Annotated[int, Meta(ge=0)] = 0
    #: Concurrent calls through one trunk (gateway or trusted peer).
    users: dict[str, Annotated[int, Meta(ge=0)]] = {}
    #: Per-user overrides: ``{"pbx@example.com": 60}``.
    trunks: dict[str, Annotated[int, Meta(ge=0)]] = {}
    #: Per-trunk overrides, by gateway or peer id.


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitReached:
    """Why a call was not admitted."""

    kind: Literal["user", "trunk"]
    name: str
    limit: int


class CallCounter:
    """Live calls per user and per trunk (see the module docstring).

    Args:
        limits: the caps.
    """

    def __init__(self, limits: CallLimits) -> None:
        self.limits = limits
        self._calls: dict[str, tuple[str | None, str | None]] = {}
        self._users: Counter[str] = Counter()
        self._trunks: Counter[str] = Counter()

    def admit(self, call_id: str, *, user: str | None, trunk: str | None) -> LimitReached | None:
        """Count a new call unless it would exceed a cap.

        Args:
            call_id: the dialog's key (Call-ID, or Call-ID plus tags).
            user: the authenticated user, or None (not a user's call).
            trunk: the trunk it goes to or comes from, or None.

        Returns:
            None when admitted (and counted); else the cap reached (not counted).
        """
        if call_id in self._calls:
            return None  # a re-INVITE or a retransmission: already counted
        if user is not None:
            limit = self.limits.users.get(user, self.limits.per_user)
            if limit and self._users[user] >= limit:
                return LimitReached(kind="user", name=user, limit=limit)
        if trunk is not None:
            limit = self.limits.trunks.get(trunk, self.limits.per_trunk)
            if limit and self._trunks[trunk] >= limit:
                return LimitReached(kind="trunk", name=trunk, limit=limit)
        self.started(call_id, user=user, trunk=trunk)
        return None

    def started(self, call_id: str, *, user: str | None, trunk: str | None) -> None:
        """Count a call another replica admitted (idempotent per ``call_id``)."""
        if call_id in self._calls:
            return
        self._calls[call_id] = (user, trunk)
        if user is not None:
            self._users[user] += 1
        if trunk is not None:
            self._trunks[trunk] += 1

    def ended(self, call_id: str) -> None:
        """Forget a call (BYE, failure, or its dialog record deleted); unknown ids are ignored."""
        found = self._calls.pop(call_id, None)
        if found is None:
            return
        user, trunk = found
        if user is not None:
            self._users[user] -= 1
            if not self._users[user]:
                del self._users[user]
        if trunk is not None:
            self._trunks[trunk] -= 1
            if not self._trunks[trunk]:
                del self._trunks[trunk]

    def user_calls(self, user: str) -> int:
        """Live calls of ``user``."""
        return self._users[user]

    def trunk_calls(self, trunk: str) -> int:
        """Live calls through ``trunk``."""
        return self._trunks[trunk]
