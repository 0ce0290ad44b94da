"""The fold of call events into one CDR row: dispositions, rating, order, contradictions."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from sipmesh_bus.schema import CallEvent
from sipmesh_cdr.core import (
    Applied,
    Cdr,
    Duplicate,
    Limits,
    Rejected,
    apply,
    billable_seconds,
    close_expired,
    disposition_of,
    number_of,
    user_of,
)

T0 = 1_700_000_000.0
LIMITS = Limits(max_call_duration=3600.0, setup_timeout=300.0)
LEG: dict[str, Any] = {
    "destination": "192.0.2.50:5060",
    "carrier": "acme",
    "gateway": "gw1",
    "rate_prefix": "4930",
    "rate_per_minute": 0.6,
    "currency": "EUR",
    "billing_first": 60,
    "billing_step": 60,
}


def ev(kind: str, at: float, **kw: Any) -> CallEvent:
    """An event of call c1 as the router publishes it."""
    defaults: dict[str, Any] = {
        "call_id": "c1",
        "event_id": f"c1.{kind}.{kw.pop('detail', '0')}",
        "at": T0 + at,
    }
    if kind != "ended":
        defaults |= {
            "caller": "alice@example.com",
            "callee": "sip:+493012345@example.com;user=phone",
            "source": "198.51.100.7:5060",
            "started_at": T0,
            "edge_id": "e1",
        }
    return CallEvent(kind=kind, **(defaults | kw))  # type: ignore[arg-type]


def fold(events: list[CallEvent], limits: Limits = LIMITS) -> Cdr:
    cdr: Cdr | None = None
    for event in events:
        out = apply(cdr, event, limits)
        assert isinstance(out, Applied), (event, out)
        cdr = out.cdr
    assert cdr is not None
    return cdr


def answered_call(talk: float, **leg: Any) -> list[CallEvent]:
    legs = LEG | leg
    return [
        ev("attempt", 0, **legs),
        ev("ringing", 1, **legs),
        ev("answered", 2, **legs),
        ev("ended", 2 + talk, hangup_side="callee"),
    ]


def test_cdr_answered_call_has_every_field() -> None:
    cdr = fold(answered_call(95.2))
    assert cdr.call_id == "c1"
    assert (cdr.caller, cdr.caller_user, cdr.caller_number) == ("alice@example.com", "alice", None)
    assert cdr.callee_user == "+493012345"
    assert cdr.callee_number == "+493012345"
    assert cdr.source == "198.51.100.7:5060"
    assert (cdr.destination, cdr.destination_kind) == ("192.0.2.50:5060", "gateway")
    assert (cdr.carrier, cdr.gateway, cdr.rate_prefix) == ("acme", "gw1", "4930")
    assert (cdr.start_at, cdr.ring_at, cdr.answer_at, cdr.end_at) == (T0, T0 + 1, T0 + 2, T0 + 97.2)
    assert cdr.duration == pytest.approx(95.2)
    assert cdr.billable == 120  # 60/60: two started minutes
    assert cdr.cost == pytest.approx(1.2)
    assert (cdr.disposition, cdr.status_code, cdr.hangup_side) == ("answered", 200, "callee")
    assert cdr.complete
    assert len(cdr.event_ids) == 4


def test_cdr_answered_call_with_folded_ring_time_has_the_same_row() -> None:
    # The router reports the ringing it learns with the 2xx on the answered
    # event (ringing_at) instead of a ringing event of its own.
    separate = fold(answered_call(95.2))
    folded = fold(
        [
            ev("attempt", 0, **LEG),
            ev("answered", 2, ringing_at=T0 + 1, **LEG),
            ev("ended", 97.2, hangup_side="callee"),
        ]
    )
    assert folded.ring_at == T0 + 1
    skip = {"event_ids"}
    for name in Cdr.__struct_fields__:
        if name not in skip:
            assert getattr(folded, name) == getattr(separate, name), name
    assert len(folded.event_ids) == 3


@pytest.mark.parametrize("status", [486, 487])
def test_cdr_failed_call_with_folded_ring_time(status: int) -> None:
    cdr = fold(
        [
            ev("attempt", 0, **LEG),
            ev("failed", 7, status_code=status, reason="x", ringing_at=T0 + 1.5, **LEG),
        ]
    )
    assert (cdr.start_at, cdr.ring_at, cdr.end_at) == (T0, T0 + 1.5, T0 + 7)
    assert cdr.status_code == status


@pytest.mark.parametrize(
    ("events", "ring"),
    [
        # A 183 the router saw (ringing at 1) and the final's ringing_at (1.5).
        ([("ringing", 1.0, None), ("answered", 2.0, 1.5)], 1.0),
        ([("answered", 2.0, 1.5), ("ringing", 1.0, None)], 1.0),
        ([("ringing", 1.5, None), ("answered", 2.0, 1.0)], 1.0),
        # Unusable ring times are ignored, the event is not rejected.
        ([("answered", 2.0, float("nan"))], None),
        ([("answered", 2.0, -1.0 - T0)], None),
        ([("answered", 2.0, None)], None),
    ],
    ids=str,
)
def test_cdr_ring_time_is_the_earliest(
    events: list[tuple[str, float, float | None]], ring: float | None
) -> None:
    cdr = fold(
        [ev("attempt", 0, **LEG)]
        + [
            ev(kind, at, ringing_at=None if rang is None else T0 + rang, **LEG)
            for kind, at, rang in events
        ]
    )
    assert cdr.ring_at == (None if ring is None else T0 + ring)
    assert cdr.answer_at == T0 + 2


@pytest.mark.parametrize(
    ("status", "side", "disposition"),
    [
        (486, None, "busy"),
        (600, None, "busy"),
        (408, None, "no_answer"),
        (480, None, "no_answer"),
        (487, "system", "no_answer"),
        (487, "caller", "cancelled"),
        (487, None, "cancelled"),
        (404, None, "failed"),
        (503, None, "failed"),
        (603, None, "failed"),
    ],
    ids=str,
)
def test_cdr_unanswered_dispositions(status: int, side: str | None, disposition: str) -> None:
    cdr = fold(
        [
            ev("attempt", 0, **LEG),
            ev("ringing", 1, **LEG),
            ev("failed", 7, status_code=status, reason="x", hangup_side=side, **LEG),
        ]
    )
    assert cdr.disposition == disposition
    assert cdr.status_code == status
    assert (cdr.duration, cdr.billable, cdr.cost) == (0.0, 0, 0.0)
    assert cdr.end_at == T0 + 7
    assert cdr.complete
    assert disposition_of(status, side) == disposition  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "side", "expected"),
    [
        (487, None, "caller"),
        (487, "caller", "caller"),
        (487, "system", "system"),
        (486, None, None),
        (404, None, None),
    ],
    ids=str,
)
def test_cdr_cancelled_call_was_hung_up_by_the_caller(
    status: int, side: str | None, expected: str | None
) -> None:
    """A 487 with no side is the caller's CANCEL; other failures keep what the router said."""
    cdr = fold(
        [
            ev("attempt", 0, **LEG),
            ev("failed", 3, status_code=status, reason="x", hangup_side=side, **LEG),
        ]
    )
    assert cdr.hangup_side == expected


@pytest.mark.parametrize(
    ("talk", "first", "step", "billable"),
    [
        (0.0, 60, 60, 0),
        (0.4, 60, 60, 60),
        (60.0, 60, 60, 60),
        (60.001, 60, 60, 120),
        (119.0, 60, 60, 120),
        (0.4, 1, 1, 1),
        (59.2, 1, 1, 60),
        (61.0, 1, 1, 61),
        (5.0, 30, 6, 30),
        (30.0, 30, 6, 30),
        (31.0, 30, 6, 36),
        (36.0, 30, 6, 36),
        (37.0, 30, 6, 42),
    ],
    ids=str,
)
def test_cdr_billing_increments(talk: float, first: int, step: int, billable: int) -> None:
    assert billable_seconds(talk, first, step) == billable
    cdr = fold(answered_call(talk, billing_first=first, billing_step=step, rate_per_minute=1.2))
    assert cdr.billable == billable
    assert cdr.cost == pytest.approx(billable * 0.02)


def test_cdr_float_noise_does_not_add_an_increment() -> None:
    assert billable_seconds((T0 + 62.0) - (T0 + 2.0), 60, 60) == 60


def test_cdr_default_increments_when_the_route_names_none() -> None:
    limits = Limits(billing_first=30, billing_step=6)
    cdr = fold(answered_call(31.0, billing_first=None, billing_step=None), limits)
    assert cdr.billable == 36


def test_cdr_no_rate_means_no_cost() -> None:
    cdr = fold(answered_call(10.0, rate_per_minute=None))
    assert cdr.billable == 60
    assert cdr.cost is None


def test_cdr_same_event_twice_changes_nothing() -> None:
    events = answered_call(30.0)
    cdr = fold(events)
    for event in events:
        assert apply(cdr, event, LIMITS) == Duplicate()


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))), ids=str)
def test_cdr_any_order_gives_the_same_row(order: tuple[int, ...]) -> None:
    events = answered_call(95.2)
    expected = fold(events)
    got = fold([events[i] for i in order])
    strip = {"event_ids": ()}
    assert msgspec.structs.replace(got, **strip) == msgspec.structs.replace(expected, **strip)


def test_cdr_end_before_answer_waits_for_the_answer() -> None:
    ended = ev("ended", 50, hangup_side="caller")
    first = apply(None, ended, LIMITS)
    assert isinstance(first, Applied)
    assert first.cdr.disposition is None
    assert not first.cdr.complete
    done = apply(first.cdr, ev("answered", 2, **LEG), LIMITS)
    assert isinstance(done, Applied)
    assert done.cdr.disposition == "answered"
    assert done.cdr.duration == 48.0
    assert done.cdr.caller == "alice@example.com"


def test_cdr_answered_call_in_progress_is_incomplete() -> None:
    cdr = fold(answered_call(10.0)[:3])
    assert cdr.disposition is None
    assert not cdr.complete
    assert cdr.billable is None


def test_cdr_failover_keeps_the_leg_of_the_last_attempt() -> None:
    other = LEG | {"destination": "203.0.113.9:5060", "carrier": "beta", "gateway": "gw9"}
    cdr = fold(
        [
            ev("attempt", 0, **LEG),
            ev("attempt", 3, detail="1", **other),
            ev("answered", 4, **other),
            ev("ended", 10, hangup_side="caller"),
        ]
    )
    assert (cdr.carrier, cdr.gateway, cdr.destination) == ("beta", "gw9", "203.0.113.9:5060")


def test_cdr_late_attempt_does_not_overwrite_the_answered_leg() -> None:
    other = LEG | {"destination": "203.0.113.9:5060", "carrier": "beta"}
    cdr = fold([ev("answered", 4, **LEG), ev("attempt", 5, detail="1", **other)])
    assert cdr.carrier == "acme"


def test_cdr_destination_kinds() -> None:
    user = fold([ev("attempt", 0, destination="192.0.2.1:5060")])
    disp = fold([ev("attempt", 0, destination="192.0.2.1:5060", dispatcher_set="pbx")])
    assert (user.destination_kind, disp.destination_kind) == ("user", "dispatcher")


def test_cdr_failure_before_the_answer_is_a_superseded_branch() -> None:
    cdr = fold(
        [
            ev("attempt", 0, **LEG),
            ev("failed", 1, status_code=486, **LEG),
            ev("answered", 2, **LEG),
            ev("ended", 12, hangup_side="caller"),
        ]
    )
    assert (cdr.disposition, cdr.status_code) == ("answered", 200)


@pytest.mark.parametrize(
    ("history", "event", "reason"),
    [
        ([ev("answered", 2)], ev("answered", 3, detail="other"), "answered twice"),
        ([ev("ended", 5)], ev("answered", 9), "answered after the call ended"),
        ([ev("failed", 9, status_code=486)], ev("answered", 2), "failed after that answer"),
        ([ev("failed", 2, status_code=486)], ev("failed", 3, detail="1"), "failed twice"),
        ([ev("answered", 2)], ev("failed", 3, status_code=500), "after the call was answered"),
        ([ev("ended", 5)], ev("failed", 3, status_code=486), "a BYE ended the call"),
        ([ev("ended", 5)], ev("ended", 6, detail="x"), "ended twice"),
        ([ev("answered", 9)], ev("ended", 5), "ended before the call was answered"),
        ([ev("failed", 2, status_code=486)], ev("ended", 5), "the call had failed"),
        ([], ev("attempt", 0, call_id=""), "empty call_id"),
        ([], ev("attempt", 0, event_id=""), "empty event_id"),
        ([], CallEvent(kind="attempt", event_id="x", call_id="c1", at=0.0), "invalid time"),
        ([], CallEvent(kind="attempt", event_id="x", call_id="c1", at=float("nan")), "invalid"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_cdr_contradictions_are_rejected(
    history: list[CallEvent], event: CallEvent, reason: str
) -> None:
    cdr = fold(history) if history else None
    out = apply(cdr, event, LIMITS)
    assert isinstance(out, Rejected)
    assert reason in out.reason


def test_cdr_event_of_another_call_is_rejected() -> None:
    out = apply(Cdr(call_id="c2"), ev("attempt", 0), LIMITS)
    assert isinstance(out, Rejected)


def test_cdr_answered_call_without_bye_times_out() -> None:
    cdr = fold(answered_call(10.0)[:3])
    assert close_expired(cdr, T0 + 2 + 3599, LIMITS) is None
    closed = close_expired(cdr, T0 + 2 + 3600, LIMITS)
    assert closed is not None
    assert (closed.disposition, closed.hangup_side, closed.complete) == ("timeout", "system", True)
    assert closed.end_at == T0 + 3602
    assert closed.duration == 3600.0
    assert closed.billable == 3600
    assert closed.cost == pytest.approx(36.0)
    assert close_expired(closed, T0 + 10_000, LIMITS) is None


def test_cdr_unanswered_call_without_final_times_out() -> None:
    cdr = fold([ev("attempt", 0, **LEG), ev("ringing", 1, **LEG)])
    assert close_expired(cdr, T0 + 299, LIMITS) is None
    closed = close_expired(cdr, T0 + 300, LIMITS)
    assert closed is not None
    assert (closed.disposition, closed.billable, closed.status_code) == ("timeout", 0, None)


def test_cdr_late_bye_replaces_the_timeout() -> None:
    cdr = fold(answered_call(10.0)[:3])
    closed = close_expired(cdr, T0 + 5000, LIMITS)
    assert closed is not None
    out = apply(closed, ev("ended", 4000, hangup_side="caller"), LIMITS)
    assert isinstance(out, Applied)
    assert (out.cdr.disposition, out.cdr.duration, out.cdr.timed_out) == ("answered", 3998.0, False)


def test_cdr_late_ringing_keeps_the_timeout() -> None:
    cdr = fold(answered_call(10.0)[:1] + answered_call(10.0)[2:3])
    closed = close_expired(cdr, T0 + 5000, LIMITS)
    assert closed is not None
    out = apply(closed, ev("ringing", 1), LIMITS)
    assert isinstance(out, Applied)
    assert (out.cdr.disposition, out.cdr.complete, out.cdr.ring_at) == ("timeout", True, T0 + 1)


@pytest.mark.parametrize(
    ("uri", "user", "number"),
    [
        ("alice@example.com", "alice", None),
        ("sip:+493012345@example.com;user=phone", "+493012345", "+493012345"),
        ("sips:0049301234@h", "0049301234", "0049301234"),
        ("tel:+1-202-555-0100", "+1-202-555-0100", "+12025550100"),
        ("example.com", "", None),
    ],
)
def test_cdr_user_and_number(uri: str, user: str, number: str | None) -> None:
    assert user_of(uri) == user
    assert number_of(uri) == number


def test_cdr_late_answer_opens_an_unanswered_timeout_again() -> None:
    cdr = fold([ev("attempt", 0, **LEG)])
    closed = close_expired(cdr, T0 + 400, LIMITS)
    assert closed is not None
    out = apply(closed, ev("answered", 2, **LEG), LIMITS)
    assert isinstance(out, Applied)
    assert (out.cdr.disposition, out.cdr.complete, out.cdr.end_at) == (None, False, None)
    again = close_expired(out.cdr, T0 + 4000, LIMITS)
    assert again is not None
    assert (again.disposition, again.duration) == ("timeout", 3600.0)
