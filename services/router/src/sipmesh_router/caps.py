"""Concurrent-call caps per user and per trunk, decided purely from counts (issue 8).

The caps are ``router.call_limits`` (:class:`sipmesh_bus.calllimits.CallLimits`);
the counts are the answered calls of KV ``dialogs`` every replica folds in
(:attr:`ActiveCalls.users <sipmesh_router.active.ActiveCalls.users>` and
``trunks``), handed to the core in ``Inputs.user_calls`` and ``trunk_calls``.
A new INVITE is refused when the count has reached the cap:

- the authenticated caller at its cap: **403 Call Limit Reached**. RFC 3261
  §21.4.4: "The server understood the request, but is refusing to fulfill it.
  Authorization will not help, and the request SHOULD NOT be repeated." Not
  486, which speaks of the callee (§21.4.24: "the callee is currently not
  willing or able to take additional calls").
- the trusted peer it comes from at its cap: **503 Call Limit Reached** with
  Retry-After. §21.5.4: "temporarily unable to process the request due to a
  temporary overloading"; a PBX or carrier retries later or elsewhere.
- an LCR gateway at its cap is skipped like a gateway that is down; when every
  gateway is full, the same 503.

Only answered calls count: a call ringing (INVITE sent, no 2xx yet) is in no
bucket, so a burst of simultaneous INVITEs passes until the first answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sipmesh_bus.calllimits import CallLimits, LimitReached
from sipmesh_bus.schema import SendResponse
from sipmsg import Request, make_response

from .model import Decision

__all__ = ["REASON", "refuse", "trunk_over", "user_over"]

REASON: Final = b"Call Limit Reached"


def user_over(
    limits: CallLimits, user: str | None, counts: Mapping[str, int]
) -> LimitReached | None:
    """The cap ``user`` (``user@domain``, None: no user) has reached, or None."""
    if user is None:
        return None
    limit = limits.users.get(user, limits.per_user)
    if limit and counts.get(user, 0) >= limit:
        return LimitReached(kind="user", name=user, limit=limit)
    return None


def trunk_over(
    limits: CallLimits, trunk: str | None, counts: Mapping[str, int]
) -> LimitReached | None:
    """The cap ``trunk`` (peer name or gateway id, None: none) has reached, or None."""
    if trunk is None:
        return None
    limit = limits.trunks.get(trunk, limits.per_trunk)
    if limit and counts.get(trunk, 0) >= limit:
        return LimitReached(kind="trunk", name=trunk, limit=limit)
    return None


def refuse(req: Request, over: LimitReached, *, retry_after: int) -> Decision:
    """The answer to an INVITE over ``over`` (see the module docstring for the codes).

    The outcome is ``call_limit_user`` or ``call_limit_trunk`` (the rejection metric).
    """
    if over.kind == "user":
        resp = make_response(req, 403, REASON)
    else:
        resp = make_response(req, 503, REASON, headers=((b"Retry-After", b"%d" % retry_after),))
    return Decision(reply=SendResponse(data=bytes(resp)), outcome=f"call_limit_{over.kind}")
