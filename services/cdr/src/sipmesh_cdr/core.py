"""Fold the call events of one call into one CDR row: pure, no I/O, no clock.

:func:`apply` takes the row as stored (or None for a new call) and one
:class:`~sipmesh_bus.schema.CallEvent`, and returns one of:

- :class:`Applied`: the new row (write it, with the event id in ``event_ids``);
- :class:`Duplicate`: the event id was applied before (a redelivery): nothing to do;
- :class:`Rejected`: the event contradicts the call's history, or is invalid:
  dead-letter it with ``reason``.

Events may arrive in any order (JetStream redelivers, replicas race), so each
event contributes facts and the derived fields (disposition, duration, cost)
are recomputed from the facts after every event. The rules for contradictions,
where the event arriving second is the one rejected:

| event | rejected when the row already has |
|---|---|
| ``answered`` | another answer; a BYE earlier than this answer; a failure later than it |
| ``failed`` | another failure; an answer earlier than this failure; a BYE with no answer |
| ``ended`` | another BYE; an answer later than this BYE; a failure with no answer |
| any | an empty ``call_id`` or ``event_id``, a negative or zero ``at`` |

A failure earlier than the answer is kept as a superseded fork branch (the
answer wins); ``attempt`` and ``ringing`` never contradict anything. An
``answered`` or ``failed`` event may carry the ring time too
(``CallEvent.ringing_at``, in place of a ``ringing`` event): the earliest ring
time of the call wins.

A call whose end never arrives is closed by :func:`close_expired` and marked
``timeout``; that close is provisional: a late ``ended`` or ``failed`` replaces it,
and a late ``answered`` opens the call again (the next sweep re-decides from the
answer time).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

import msgspec
from msgspec import Struct

from sipmesh_bus.schema import CallEvent, HangupSide

__all__ = [
    "PUBLIC_FIELDS",
    "Applied",
    "Cdr",
    "Disposition",
    "Duplicate",
    "Limits",
    "Outcome",
    "Rejected",
    "apply",
    "billable_seconds",
    "close_expired",
    "disposition_of",
    "number_of",
    "public_dict",
    "user_of",
]

Disposition: TypeAlias = Literal["answered", "busy", "no_answer", "cancelled", "failed", "timeout"]
DestinationKind: TypeAlias = Literal["", "user", "dispatcher", "gateway"]

_NUMBER: Final = re.compile(r"\+?[0-9]{2,}")
_BUSY: Final = frozenset({486, 600})
_NO_ANSWER: Final = frozenset({408, 480})
_CANCELLED: Final = 487


class Cdr(Struct, frozen=True, kw_only=True):
    """One call's record: what the CDR store keeps, one row per Call-ID."""

    call_id: str
    caller: str = ""
    #: From URI, ``user@host``.
    caller_user: str = ""
    #: Its user part.
    caller_number: str | None = None
    #: The user part when it is a phone number (``+`` and digits).
    callee: str = ""
    #: The dialled Request-URI.
    callee_user: str = ""
    callee_number: str | None = None
    source: str = ""
    #: The caller's address, ``host:port``.
    destination: str = ""
    #: The target reached, ``host:port``.
    destination_kind: DestinationKind = ""
    #: ``gateway`` (LCR carrier), ``dispatcher`` (a dispatcher set) or ``user``.
    carrier: str | None = None
    gateway: str | None = None
    dispatcher_set: str | None = None
    rate_prefix: str | None = None
    rate_per_minute: float | None = None
    currency: str | None = None
    billing_first: int | None = None
    billing_step: int | None = None
    start_at: float | None = None
    ring_at: float | None = None
    answer_at: float | None = None
    end_at: float | None = None
    duration: float | None = None
    #: Seconds from answer to end (0 for an unanswered call), once complete.
    billable: int | None = None
    #: Seconds charged, after the billing increments.
    cost: float | None = None
    #: ``billable / 60 * rate_per_minute``, rounded to 6 decimals.
    disposition: Disposition | None = None
    #: None while the call is in progress.
    status_code: int | None = None
    #: The final SIP status (200 for an answered call).
    reason: str | None = None
    hangup_side: HangupSide | None = None
    edge_id: str | None = None
    complete: bool = False
    #: True once the disposition is final (a later event may still correct a timeout).
    # -- facts the fold needs, kept with the row -----------------------------
    failed_at: float | None = None
    hangup_at: float | None = None
    leg_at: float | None = None
    #: The ``at`` of the event the destination/rate fields came from.
    timed_out: bool = False
    event_ids: tuple[str, ...] = ()
    #: Every event applied to this row: redeliveries are recognised by these.
    version: int = 0
    #: The stored version this row was read at (0: not stored yet).


PUBLIC_FIELDS: Final[tuple[str, ...]] = tuple(
    f for f in Cdr.__struct_fields__ if f not in ("failed_at", "hangup_at", "leg_at", "event_ids")
)
#: The fields shown by the CLI and the HTTP endpoint, in order.


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How the fold rates and closes calls."""

    max_call_duration: float = 86_400.0
    #: An answered call with no BYE after this long is closed as ``timeout``
    #: (the ``dialogs`` KV bucket forgets a dialog after one day).
    setup_timeout: float = 300.0
    #: An unanswered call with no final response after this long is closed too
    #: (well past Timer C, 181 s).
    billing_first: int = 1
    billing_step: int = 1
    #: Increments when the route named none.


@dataclass(frozen=True, slots=True)
class Applied:
    """The event changed the row; store ``cdr``."""

    cdr: Cdr


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The event was applied before; nothing changes."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """The event cannot be applied; dead-letter it."""

    reason: str


Outcome: TypeAlias = Applied | Duplicate | Rejected


def apply(cdr: Cdr | None, event: CallEvent, limits: Limits) -> Outcome:
    """Fold one event into the call's row.

    Args:
        cdr: the row as stored, or None when the call has none yet.
        event: the event; its ``call_id`` must be the row's.
        limits: rating defaults and the timeout used by a provisional close.

    Returns:
        Applied with the new row, Duplicate, or Rejected with a reason.
    """
    if problem := _invalid(event):
        return Rejected(problem)
    base = cdr if cdr is not None else Cdr(call_id=event.call_id)
    if base.call_id != event.call_id:
        return Rejected(f"event for call {event.call_id!r} applied to {base.call_id!r}")
    if event.event_id in base.event_ids:
        return Duplicate()
    # A provisional timeout close never blocks real facts: fold them into the
    # row as if it were open, keep the timeout only if the call is still open.
    facts = msgspec.structs.replace(base, timed_out=False) if base.timed_out else base
    problem = _contradiction(facts, event)
    if problem:
        return Rejected(problem)
    folded = _fold(facts, event)
    if base.timed_out and _disposition(folded) is None:
        if folded.answer_at == base.answer_at:
            folded = msgspec.structs.replace(folded, timed_out=True)
        else:  # answered after an unanswered-call close: open again, the sweep re-decides
            folded = msgspec.structs.replace(folded, end_at=None, hangup_side=None)
    folded = msgspec.structs.replace(folded, event_ids=(*base.event_ids, event.event_id))
    return Applied(_derive(folded, limits))


def close_expired(cdr: Cdr, now: float, limits: Limits) -> Cdr | None:
    """Close a call whose end never came, or None when it is complete or not due.

    An answered call ends ``max_call_duration`` after its answer; an unanswered
    one ``setup_timeout`` after its start. Either is marked ``timeout``, hung up
    by ``system``.

    Args:
        cdr: the stored row.
        now: the current time (seconds since the epoch).
        limits: the timeouts.
    """
    if cdr.complete:
        return None
    if cdr.answer_at is not None:
        end = cdr.answer_at + limits.max_call_duration
    else:
        began = cdr.start_at if cdr.start_at is not None else cdr.hangup_at
        if began is None:
            return None
        end = began + limits.setup_timeout
    if now < end:
        return None
    closed = msgspec.structs.replace(cdr, timed_out=True, end_at=end, hangup_side="system")
    return _derive(closed, limits)


def billable_seconds(duration: float, first: int, step: int) -> int:
    """Seconds charged for ``duration`` seconds under ``first``/``step`` increments.

    The duration is first rounded up to whole seconds; then the first block is
    charged whole, and each started ``step`` after it: 60/60 charges whole
    minutes, 1/1 whole seconds, 30/6 at least 30 s then 6 s steps.

    Args:
        duration: answered seconds (0 or less charges nothing).
        first: the first increment (seconds, >= 1).
        step: each next increment (seconds, >= 1).

    Returns:
        The billable seconds.
    """
    # Milliseconds first: 60.0000000001 from float subtraction is 60 s, not 61.
    seconds = math.ceil(round(duration * 1000) / 1000)
    if seconds <= 0:
        return 0
    if seconds <= first:
        return first
    return first + math.ceil((seconds - first) / step) * step


def disposition_of(status: int, hangup_side: HangupSide | None) -> Disposition:
    """The disposition of an unanswered call from its final status.

    486 Busy Here and 600 Busy Everywhere are ``busy``; 408 and 480 ``no_answer``;
    487 Request Terminated is ``cancelled`` when the caller sent CANCEL and
    ``no_answer`` when the proxy gave up (Timer C: the router sets
    ``hangup_side="system"``); anything else is ``failed``.
    """
    if status in _BUSY:
        return "busy"
    if status in _NO_ANSWER:
        return "no_answer"
    if status == _CANCELLED:
        return "no_answer" if hangup_side == "system" else "cancelled"
    return "failed"


def user_of(uri: str) -> str:
    """The user part of ``user@host``, ``sip:user@host;params`` or ``tel:+1...``."""
    rest = uri.partition(":")[2] if re.match(r"(?i)(sips?|tel):", uri) else uri
    user, at, _host = rest.partition("@")
    return user.partition(";")[0] if at or uri.lower().startswith("tel:") else ""


def number_of(uri: str) -> str | None:
    """The user part when it is a phone number (``+`` and digits), else None."""
    user = user_of(uri).replace("-", "").replace(".", "")
    return user if _NUMBER.fullmatch(user) else None


def public_dict(cdr: Cdr) -> dict[str, object]:
    """The row as shown to users: :data:`PUBLIC_FIELDS` only."""
    return {f: getattr(cdr, f) for f in PUBLIC_FIELDS}


# -- the fold ----------------------------------------------------------------


def _invalid(event: CallEvent) -> str | None:
    if not event.call_id:
        return "empty call_id"
    if not event.event_id:
        return "empty event_id"
    if not math.isfinite(event.at) or event.at <= 0:
        return f"invalid time at={event.at!r}"
    return None


def _contradiction(cdr: Cdr, event: CallEvent) -> str | None:
    at = _when(event)
    if event.kind == "answered":
        if cdr.answer_at is not None:
            return "answered twice (another answered event was applied)"
        if cdr.hangup_at is not None and cdr.hangup_at < at:
            return "answered after the call ended"
        if cdr.failed_at is not None and cdr.failed_at > at:
            return "answered, but the call failed after that answer"
    elif event.kind == "failed":
        if cdr.failed_at is not None:
            return "failed twice (another failed event was applied)"
        if cdr.answer_at is not None and cdr.answer_at <= at:
            return "failed after the call was answered"
        if cdr.hangup_at is not None and cdr.answer_at is None:
            return "failed, but a BYE ended the call"
    elif event.kind == "ended":
        if cdr.hangup_at is not None:
            return "ended twice (another ended event was applied)"
        if cdr.answer_at is not None and cdr.answer_at > at:
            return "ended before the call was answered"
        if cdr.failed_at is not None and cdr.answer_at is None:
            return "ended, but the call had failed"
    return None


def _when(event: CallEvent) -> float:
    if event.kind == "answered" and event.answered_at:
        return event.answered_at
    if event.kind == "ended" and event.ended_at:
        return event.ended_at
    return event.at


def _fold(cdr: Cdr, event: CallEvent) -> Cdr:
    at = _when(event)
    changes: dict[str, object] = {}
    _identity(cdr, event, changes)
    start = event.started_at or (None if event.kind == "ended" else at)
    if start is not None and (cdr.start_at is None or start < cdr.start_at):
        changes["start_at"] = start
    if event.kind != "ended" and event.destination and _leg_may_change(cdr, event, at):
        changes.update(_leg(event))
        changes["leg_at"] = at
    rang = _rang(event, at)
    if rang is not None and (cdr.ring_at is None or rang < cdr.ring_at):
        changes["ring_at"] = rang
    if event.kind == "answered":
        changes.update(answer_at=at, status_code=event.status_code or 200, reason=None)
    elif event.kind == "failed":
        changes["failed_at"] = at
        if cdr.answer_at is None:  # else a superseded fork branch: the answer wins
            changes.update(
                status_code=event.status_code or 500,
                reason=event.reason,
                hangup_side=event.hangup_side,
            )
    elif event.kind == "ended":
        changes.update(hangup_at=at, hangup_side=event.hangup_side)
    return msgspec.structs.replace(cdr, **changes)


def _rang(event: CallEvent, at: float) -> float | None:
    """When the call rang by this event: a ``ringing`` event's time, or the
    ``ringing_at`` an ``answered`` or ``failed`` event carries instead of one
    (the router folds the ringing it learns with the final into it); an
    unusable time is ignored, not a reason to reject the event."""
    if event.kind == "ringing":
        return at
    rang = event.ringing_at
    if rang is None or not math.isfinite(rang) or rang <= 0:
        return None
    return rang


def _identity(cdr: Cdr, event: CallEvent, changes: dict[str, object]) -> None:
    if event.caller and not cdr.caller:
        changes.update(
            caller=event.caller,
            caller_user=user_of(event.caller),
            caller_number=number_of(event.caller),
        )
    if event.callee and not cdr.callee:
        changes.update(
            callee=event.callee,
            callee_user=user_of(event.callee),
            callee_number=number_of(event.callee),
        )
    if event.source and not cdr.source and event.kind != "ended":
        changes["source"] = event.source
    if event.edge_id and not cdr.edge_id:
        changes["edge_id"] = event.edge_id


def _leg_may_change(cdr: Cdr, event: CallEvent, at: float) -> bool:
    """The answered event's leg is the one reached; before it, the latest attempt's."""
    if event.kind == "answered":
        return True
    if cdr.answer_at is not None:
        return False
    return cdr.leg_at is None or at >= cdr.leg_at


def _leg(event: CallEvent) -> dict[str, object]:
    kind: DestinationKind = (
        "gateway"
        if event.gateway or event.carrier
        else "dispatcher"
        if event.dispatcher_set
        else "user"
    )
    return {
        "destination": event.destination,
        "destination_kind": kind,
        "carrier": event.carrier,
        "gateway": event.gateway,
        "dispatcher_set": event.dispatcher_set,
        "rate_prefix": event.rate_prefix,
        "rate_per_minute": event.rate_per_minute,
        "currency": event.currency,
        "billing_first": event.billing_first,
        "billing_step": event.billing_step,
    }


def _disposition(cdr: Cdr) -> Disposition | None:
    if cdr.answer_at is not None:
        if cdr.hangup_at is not None:
            return "answered"
        return "timeout" if cdr.timed_out else None
    if cdr.failed_at is not None and cdr.status_code is not None:
        return disposition_of(cdr.status_code, cdr.hangup_side)
    return "timeout" if cdr.timed_out else None


def _derive(cdr: Cdr, limits: Limits) -> Cdr:
    """Recompute the end, duration, billable seconds, cost and disposition."""
    disposition = _disposition(cdr)
    if disposition is None:
        return msgspec.structs.replace(
            cdr, disposition=None, complete=False, duration=None, billable=None, cost=None
        )
    if cdr.timed_out:
        end = cdr.end_at
    elif cdr.answer_at is not None:
        end = cdr.hangup_at
    else:
        end = cdr.failed_at
    duration = 0.0
    if cdr.answer_at is not None and end is not None:
        duration = round(max(0.0, end - cdr.answer_at), 3)
    first = cdr.billing_first or limits.billing_first
    step = cdr.billing_step or limits.billing_step
    billable = billable_seconds(duration, first, step)
    cost = None
    if cdr.rate_per_minute is not None:
        cost = round(billable * cdr.rate_per_minute / 60.0, 6)
    side = cdr.hangup_side
    if disposition == "cancelled" and side is None:
        # A 487 the router does not mark as its own (Timer C is "system") is the
        # answer to the caller's CANCEL (RFC 3261 §9.1: "The CANCEL request is
        # used to cancel a previous request sent by a client"): the caller hung up.
        side = "caller"
    return msgspec.structs.replace(
        cdr,
        disposition=disposition,
        complete=True,
        end_at=end,
        duration=duration,
        billable=billable,
        cost=cost,
        hangup_side=side,
    )
