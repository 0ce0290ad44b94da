"""Call events (stream CALLS) and dialog records (KV ``dialogs``) built from a route context.

Event ids are deterministic, ``<hash of Call-ID>.<kind>.<what>``, so that a
publish retried by this or another replica is stored once (the id is the
JetStream ``Nats-Msg-Id``).
"""

from __future__ import annotations

import functools
import hashlib

from sipmesh_bus.schema import CallEvent, CallEventKind, HangupSide

from .context import DialogRecord, RouteContext

__all__ = ["call_event", "dialog_key", "dialog_record", "ended_event", "event_id"]


@functools.lru_cache(maxsize=1024)
def dialog_key(call_id: str) -> str:
    """The ``dialogs`` KV key of a call (a hash: a Call-ID may hold any character).

    Memoised: a call's messages ask for it several times (event ids, the record).
    """
    return hashlib.sha256(call_id.encode("utf-8", "surrogateescape")).hexdigest()[:40]


def event_id(call_id: str, kind: CallEventKind, detail: str) -> str:
    """The event's id, the same whoever publishes it and however often."""
    return f"{dialog_key(call_id)}.{kind}.{detail}"


def call_event(
    ctx: RouteContext,
    kind: CallEventKind,
    *,
    now: float,
    detail: str,
    status: int | None = None,
    reason: str | None = None,
    hangup_side: HangupSide | None = None,
    ringing_at: float | None = None,
) -> CallEvent:
    """An event of the call attempt ``ctx`` describes (``ringing_at``: when it rang)."""
    leg = ctx.leg
    return CallEvent(
        kind=kind,
        event_id=event_id(ctx.call_id, kind, detail),
        call_id=ctx.call_id,
        at=now,
        started_at=ctx.started_at or None,
        answered_at=now if kind == "answered" else None,
        caller=ctx.caller,
        callee=ctx.callee,
        source=ctx.source,
        destination=leg.destination if leg else "",
        carrier=leg.carrier if leg else None,
        rate_prefix=leg.rate_prefix if leg else None,
        rate_per_minute=leg.rate_per_minute if leg else None,
        currency=leg.currency if leg else None,
        status_code=status,
        reason=reason,
        hangup_side=hangup_side,
        edge_id=ctx.edge_id,
        gateway=leg.gateway if leg else None,
        dispatcher_set=leg.dispatcher_set if leg else None,
        billing_first=leg.billing_first if leg else None,
        billing_step=leg.billing_step if leg else None,
        media_instance=ctx.media_instance if ctx.media else None,
        ringing_at=ringing_at,
    )


def ended_event(
    call_id: str,
    side: HangupSide,
    *,
    now: float,
    source: str,
    edge_id: str,
    media_instance: str | None = None,
) -> CallEvent:
    """The call ended: a BYE from ``side``."""
    return CallEvent(
        kind="ended",
        event_id=event_id(call_id, "ended", "bye"),
        call_id=call_id,
        at=now,
        ended_at=now,
        source=source,
        hangup_side=side,
        edge_id=edge_id,
        media_instance=media_instance,
    )


def dialog_record(
    ctx: RouteContext, *, caller_tag: str, callee_tag: str, now: float
) -> DialogRecord:
    """The record of an answered call."""
    leg = ctx.leg
    return DialogRecord(
        call_id=ctx.call_id,
        caller_tag=caller_tag,
        callee_tag=callee_tag,
        caller=ctx.caller,
        callee=ctx.callee,
        source=ctx.source,
        destination=leg.destination if leg else "",
        answered_at=now,
        started_at=ctx.started_at,
        carrier=leg.carrier if leg else None,
        gateway=leg.gateway if leg else None,
        dispatcher_set=leg.dispatcher_set if leg else None,
        rate_per_minute=leg.rate_per_minute if leg else None,
        edge_id=ctx.edge_id,
        destination_key=leg.destination_key if leg else "",
        media_instance=ctx.media_instance if ctx.media else None,
        user=ctx.user,
        peer=ctx.peer,
    )
