"""sipmesh_bus.calllimits: caps per user and per trunk."""

from __future__ import annotations

import msgspec
import pytest

from sipmesh_bus.calllimits import CallCounter, CallLimits, LimitReached


def test_calllimits_user_cap() -> None:
    counter = CallCounter(CallLimits(per_user=2))
    assert counter.admit("c1", user="alice", trunk=None) is None
    assert counter.admit("c2", user="alice", trunk=None) is None
    assert counter.admit("c3", user="alice", trunk=None) == LimitReached(
        kind="user", name="alice", limit=2
    )
    assert counter.admit("c3", user="bob", trunk=None) is None
    assert counter.user_calls("alice") == 2
    counter.ended("c1")
    assert counter.admit("c4", user="alice", trunk=None) is None


def test_calllimits_trunk_cap_and_override() -> None:
    counter = CallCounter(CallLimits(per_trunk=1, trunks={"big": 3}))
    assert counter.admit("c1", user=None, trunk="gw") is None
    assert counter.admit("c2", user=None, trunk="gw") == LimitReached(
        kind="trunk", name="gw", limit=1
    )
    assert [counter.admit(f"b{i}", user=None, trunk="big") for i in range(4)] == [
        None,
        None,
        None,
        LimitReached(kind="trunk", name="big", limit=3),
    ]


def test_calllimits_refused_call_is_not_counted_anywhere() -> None:
    counter = CallCounter(CallLimits(per_user=5, per_trunk=1))
    assert counter.admit("c1", user="alice", trunk="gw") is None
    assert counter.admit("c2", user="alice", trunk="gw") is not None
    assert counter.user_calls("alice") == 1


@pytest.mark.parametrize("limits", [CallLimits(), CallLimits(users={"pbx": 0}, per_user=1)])
def test_calllimits_zero_is_unlimited(limits: CallLimits) -> None:
    counter = CallCounter(limits)
    assert all(counter.admit(f"c{i}", user="pbx", trunk="gw") is None for i in range(100))


def test_calllimits_started_and_ended_are_idempotent() -> None:
    counter = CallCounter(CallLimits(per_user=1))
    counter.started("c1", user="alice", trunk="gw")
    counter.started("c1", user="alice", trunk="gw")  # the watch replays it
    assert counter.user_calls("alice") == 1
    assert counter.trunk_calls("gw") == 1
    assert counter.admit("c1", user="alice", trunk="gw") is None  # a re-INVITE
    assert counter.admit("c2", user="alice", trunk="gw") is not None
    counter.ended("c1")
    counter.ended("c1")
    counter.ended("unknown")
    assert (counter.user_calls("alice"), counter.trunk_calls("gw")) == (0, 0)


def test_calllimits_config_rejects_negative() -> None:
    with pytest.raises(msgspec.ValidationError, match="per_user"):
        msgspec.convert({"per_user": -1}, CallLimits)
