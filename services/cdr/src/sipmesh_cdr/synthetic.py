"""Synthetic calls, as the router would publish them: for tests and bench/cdr.

``synthetic_call(n, t0)`` gives the event sequence of call number ``n`` and the
disposition, billable seconds and cost its CDR must end up with. The shape
cycles through answered (60/60, 1/1, 30/6), busy, cancelled and no answer.
The ring time travels on the final's event (``CallEvent.ringing_at``), as the
router sends it; the no-answer shape has a ``ringing`` event of its own, as
under topology hiding (and from routers before ``ringing_at``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sipmesh_bus import subjects
from sipmesh_bus.schema import CallEvent

__all__ = ["SyntheticCall", "publish_subject", "synthetic_call"]

_SHAPES: Final = 6
_RATE: Final = 1.2
#: Per minute: 0.02 a second, easy to check.


@dataclass(frozen=True, slots=True, kw_only=True)
class SyntheticCall:
    """One call's events and the CDR it must produce."""

    call_id: str
    events: tuple[CallEvent, ...]
    disposition: str
    status_code: int
    billable: int
    cost: float


def publish_subject(event: CallEvent) -> str:
    """``call.events.<kind>``."""
    return subjects.call_event(event.kind)


def synthetic_call(n: int, t0: float, *, prefix: str = "call") -> SyntheticCall:
    """The events of call ``n`` (started at ``t0 + n``) and its expected CDR.

    Args:
        n: the call's number; ``n % 6`` picks the shape.
        t0: the time of call 0.
        prefix: Call-ID prefix (one per test run keeps runs apart).
    """
    call_id = f"{prefix}-{n}@example.com"
    start = t0 + n
    shape = n % _SHAPES
    increments = [(60, 60), (1, 1), (30, 6)][shape % 3]
    common = {
        "call_id": call_id,
        "started_at": start,
        "caller": f"u{n % 97}@example.com",
        "callee": f"sip:+4930{n:07d}@example.com",
        "source": "198.51.100.7:5060",
        "destination": "192.0.2.50:5060",
        "carrier": "acme",
        "gateway": "gw1",
        "rate_prefix": "4930",
        "rate_per_minute": _RATE,
        "currency": "EUR",
        "billing_first": increments[0],
        "billing_step": increments[1],
        "edge_id": "e1",
    }

    def event(kind: str, at: float, detail: str, **kw: object) -> CallEvent:
        fields = common | kw if kind != "ended" else {"call_id": call_id} | kw
        return CallEvent(kind=kind, event_id=f"{call_id}.{kind}.{detail}", at=at, **fields)  # type: ignore[arg-type]

    attempt = event("attempt", start, "0")
    if shape < 3:
        talk = 31 + n % 50
        billable = _billable(talk, *increments)
        return SyntheticCall(
            call_id=call_id,
            events=(
                attempt,
                event(
                    "answered",
                    start + 2,
                    "2xx",
                    answered_at=start + 2,
                    status_code=200,
                    ringing_at=start + 1,
                ),
                event(
                    "ended",
                    start + 2 + talk,
                    "bye",
                    ended_at=start + 2 + talk,
                    hangup_side="caller",
                ),
            ),
            disposition="answered",
            status_code=200,
            billable=billable,
            cost=round(billable * _RATE / 60, 6),
        )
    status, side, disposition = {
        3: (486, None, "busy"),
        4: (487, "caller", "cancelled"),
        5: (480, None, "no_answer"),
    }[shape]
    events: tuple[CallEvent, ...]
    if shape == 5:
        ringing = event("ringing", start + 1, "0")
        failed = event("failed", start + 5, "0", status_code=status, reason="x")
        events = (attempt, ringing, failed)
    else:
        failed = event(
            "failed",
            start + 5,
            "0",
            status_code=status,
            reason="x",
            hangup_side=side,
            ringing_at=start + 1,
        )
        events = (attempt, failed)
    return SyntheticCall(
        call_id=call_id,
        events=events,
        disposition=disposition,
        status_code=status,
        billable=0,
        cost=0.0,
    )


def _billable(talk: int, first: int, step: int) -> int:
    if talk <= first:
        return first
    return first + -(-(talk - first) // step) * step
