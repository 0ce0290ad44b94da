"""GcPolicy: the collector's thresholds, freezing, pauses and the full-collection bound."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from sipmesh_bus.gcpolicy import YOUNG_THRESHOLD, GcPolicy


class Node:
    """Something that can sit in a reference cycle and be watched by a weakref."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def restore_gc() -> Iterator[list[GcPolicy]]:
    """Undo what the policies of a test did to this process's collector."""
    threshold = gc.get_threshold()
    policies: list[GcPolicy] = []
    yield policies
    for policy in policies:
        policy.uninstall()
    gc.unfreeze()
    gc.set_threshold(*threshold)
    gc.collect()


def pauses(registry: CollectorRegistry, generation: int) -> float:
    value = registry.get_sample_value(
        "sipmesh_gc_pause_seconds_count", {"generation": str(generation)}
    )
    assert value is not None
    return value


def cycle() -> weakref.ref[Node]:
    """A two-node cycle nobody else references; the weakref tells when it is freed."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_install_sets_rare_scans_and_freezes_startup(restore_gc: list[GcPolicy]) -> None:
    kept = Node()
    policy = GcPolicy(CollectorRegistry(), mode="rare")
    restore_gc.append(policy)
    policy.install()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.is_tracked(kept)
    assert all(o is not kept for o in gc.get_objects())  # frozen: never scanned again


def test_every_pause_is_observed_by_generation(restore_gc: list[GcPolicy]) -> None:
    registry = CollectorRegistry()
    policy = GcPolicy(registry, mode="rare")
    restore_gc.append(policy)
    policy.install()
    gc.collect(0)
    gc.collect(2)
    assert pauses(registry, 0) == 1
    assert pauses(registry, 2) == 1
    assert pauses(registry, 1) == 0


def test_rare_mode_still_collects_old_cycles(restore_gc: list[GcPolicy]) -> None:
    policy = GcPolicy(CollectorRegistry(), mode="rare")
    restore_gc.append(policy)
    policy.install()
    ref = cycle()
    gc.collect(0)
    assert ref() is None
    assert policy.maintain() is False


def test_young_mode_freezes_what_survived_a_scan(restore_gc: list[GcPolicy]) -> None:
    policy = GcPolicy(CollectorRegistry(), mode="young")
    restore_gc.append(policy)
    policy.install()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gc.collect(0)
    # Scanned once and alive: frozen, so no later collection scans it again...
    assert all(o is not a for o in gc.get_objects())
    ref = weakref.ref(a)
    del a, b
    gc.collect()
    # ...which is also why a cycle that dies afterwards outlives collections
    assert ref() is not None
    assert policy.maintain() is False  # below min_blocks: no full collection
    assert ref() is not None


def test_young_mode_full_collection_once_memory_grew(restore_gc: list[GcPolicy]) -> None:
    registry = CollectorRegistry()
    policy = GcPolicy(registry, mode="young", regrowth=1.5, min_blocks=1)
    restore_gc.append(policy)
    policy.install()
    assert policy.maintain() is False  # past min_blocks: the baseline
    assert policy.maintain() is False  # nothing grew since
    a, b = Node(), Node()
    a.other, b.other = b, a
    gc.collect(0)
    ref = weakref.ref(a)
    del a, b
    ballast = [bytearray(8) for _ in range(200_000)]  # allocated blocks grow
    assert policy.maintain() is True
    assert ref() is None
    assert policy.full_collections == 1
    assert registry.get_sample_value("sipmesh_gc_full_collections_total") == 1
    assert policy.maintain() is False  # a new baseline: no second one
    del ballast


def test_regrowth_must_exceed_one() -> None:
    with pytest.raises(ValueError, match="regrowth"):
        GcPolicy(CollectorRegistry(), regrowth=1.0)
