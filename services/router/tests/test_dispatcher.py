"""sipmesh_router.dispatcher: the failover order of a dispatcher set, per algorithm."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping

import pytest

from sipmesh_bus.routing import (
    ALGORITHMS,
    Algorithm,
    Destination,
    DispatcherSet,
    Health,
    RoutingSnapshot,
)
from sipmesh_router.dispatcher import rendezvous_score, select_destinations

NOW = 1_700_000_000.0
SNAP = RoutingSnapshot()


def dest(n: int, *, weight: int = 1, priority: int = 0) -> Destination:
    return Destination(
        uri=f"sip:10.0.0.{n}:5060", host=f"10.0.0.{n}", weight=weight, priority=priority
    )


A, B, C, D = dest(1), dest(2), dest(3), dest(4)


def down(*dests: Destination, at: float = NOW - 5) -> dict[str, Health]:
    return {d.key: Health(up=False, checked_at=at, since=at, failures=3) for d in dests}


def select(
    algorithm: Algorithm,
    dests: list[Destination],
    *,
    call_id: str = "call-1@host",
    from_user: str = "alice",
    health: Mapping[str, Health] | None = None,
    active: Mapping[str, int] | None = None,
    rr: int = 0,
    rand: random.Random | None = None,
) -> list[Destination]:
    ds = DispatcherSet(id="pbx", algorithm=algorithm, destinations=dests)
    return select_destinations(
        ds,
        SNAP,
        call_id=call_id,
        from_user=from_user,
        now=NOW,
        health=health or {},
        active_calls=active or {},
        rr_counter=rr,
        rand=rand.random if rand else None,
    )


@pytest.mark.parametrize(
    ("rr", "expected"),
    [(0, [A, B, C]), (1, [B, C, A]), (2, [C, A, B]), (3, [A, B, C]), (7, [B, C, A])],
    ids=["0", "1", "2", "wraps", "large"],
)
def test_select_round_robin_rotates_by_the_counter(rr: int, expected: list[Destination]) -> None:
    assert select("round_robin", [A, B, C], rr=rr) == expected


def test_select_round_robin_rotates_over_the_live_ones_only() -> None:
    assert select("round_robin", [A, B, C], rr=1, health=down(B)) == [C, A]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_select_every_algorithm_returns_each_live_destination_once(algorithm: Algorithm) -> None:
    got = select(algorithm, [A, B, C, D], health=down(C), rand=random.Random(1))
    assert sorted(d.host for d in got) == ["10.0.0.1", "10.0.0.2", "10.0.0.4"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_select_all_down_is_empty(algorithm: Algorithm) -> None:
    assert select(algorithm, [A, B], health=down(A, B)) == []


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_select_empty_set_is_empty(algorithm: Algorithm) -> None:
    assert select(algorithm, []) == []


def test_select_ignores_stale_and_up_health_records() -> None:
    health = {**down(A, at=NOW - 3600), B.key: Health(up=True, checked_at=NOW, since=NOW)}
    assert select("priority", [A, B]) == select("priority", [A, B], health=health) == [A, B]


def test_select_weighted_follows_the_weights() -> None:
    heavy, light = dest(1, weight=3), dest(2, weight=1)
    rng = random.Random(42)
    firsts = Counter(select("weighted", [heavy, light], rand=rng)[0].host for _ in range(8000))
    share = firsts["10.0.0.1"] / 8000
    assert 0.72 < share < 0.78  # 3 / (3 + 1)


def test_select_weighted_without_rand_is_stable_per_call_id() -> None:
    dests = [dest(n) for n in range(1, 6)]
    first = select("weighted", dests, call_id="abc@x")
    assert all(select("weighted", dests, call_id="abc@x") == first for _ in range(5))
    spread = {select("weighted", dests, call_id=f"c{i}")[0].host for i in range(200)}
    assert len(spread) == 5


def test_select_hash_callid_is_stable_and_spreads() -> None:
    dests = [A, B, C, D]
    assert select("hash_callid", dests, call_id="x1") == select("hash_callid", dests, call_id="x1")
    firsts = Counter(select("hash_callid", dests, call_id=f"call-{i}")[0].host for i in range(4000))
    assert len(firsts) == 4
    assert min(firsts.values()) > 800  # about 1000 each


def test_select_hash_callid_moves_only_the_calls_of_a_dead_destination() -> None:
    dests = [A, B, C, D]
    moved = 0
    for i in range(2000):
        before = select("hash_callid", dests, call_id=f"call-{i}")
        after = select("hash_callid", dests, call_id=f"call-{i}", health=down(B))
        if before[0] != B:
            assert after[0] == before[0]
        else:
            moved += 1
            assert after[0] == before[1]  # the failover target it already had
        assert after == [d for d in before if d != B]
    assert 350 < moved < 650


def test_select_hash_from_user_keys_on_the_user() -> None:
    dests = [A, B, C, D]
    firsts = {
        select("hash_from_user", dests, from_user="bob", call_id=f"c{i}")[0] for i in range(50)
    }
    assert len(firsts) == 1
    users = {select("hash_from_user", dests, from_user=f"u{i}")[0] for i in range(200)}
    assert len(users) == 4


def test_select_hash_from_user_empty_user_hashes_the_call_id() -> None:
    dests = [A, B, C, D]
    by_call = select("hash_callid", dests, call_id="zz")
    assert select("hash_from_user", dests, from_user="", call_id="zz") == by_call


def test_select_hash_weights_shift_the_share() -> None:
    heavy = dest(1, weight=4)
    firsts = Counter(select("hash_callid", [heavy, B], call_id=f"k{i}")[0] for i in range(5000))
    assert 0.76 < firsts[heavy] / 5000 < 0.84  # 4 / (4 + 1)


def test_rendezvous_score_of_weight_zero_is_zero() -> None:
    assert rendezvous_score("k", dest(1, weight=0)) == 0.0
    assert rendezvous_score("k", dest(1)) > 0.0


@pytest.mark.parametrize(
    ("active", "expected"),
    [
        pytest.param({}, [A, B, C], id="idle-set-order"),
        pytest.param({A.key: 5, B.key: 1, C.key: 3}, [B, C, A], id="fewest-first"),
        pytest.param({A.key: 2, B.key: 2}, [C, A, B], id="missing-is-zero"),
    ],
)
def test_select_least_calls(active: dict[str, int], expected: list[Destination]) -> None:
    assert select("least_calls", [A, B, C], active=active) == expected


def test_select_least_calls_per_unit_of_weight() -> None:
    big = dest(1, weight=4)
    # 6 calls on weight 4 (1.5 each) is less loaded than 2 calls on weight 1.
    assert select("least_calls", [B, big], active={big.key: 6, B.key: 2}) == [big, B]


def test_select_priority_lower_first_stable_among_equals() -> None:
    p2, p0a, p1, p0b = dest(1, priority=2), dest(2), dest(3, priority=1), dest(4)
    assert select("priority", [p2, p0a, p1, p0b]) == [p0a, p0b, p1, p2]
    assert select("priority", [p2, p0a, p1, p0b], health=down(p0a, p0b)) == [p1, p2]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_select_draining_destinations_come_last(algorithm: Algorithm) -> None:
    drain = dest(9, weight=0)
    for i in range(20):
        got = select(algorithm, [drain, A, B], call_id=f"c{i}", rr=i, rand=random.Random(i))
        assert got[-1] == drain
        assert len(got) == 3
