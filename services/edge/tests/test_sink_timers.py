"""The sink's deadlines (``wheel.Deadlines``): each fires at the first tick at or after it.

``EdgeSink`` arms every Server and Branch here (``_arm``) and fires them from
``tick()``; these entries stand in for them, and the sink's wiring runs through
real transactions in test_sink.py and test_proxy.py (Timers A, C, J).
"""

from __future__ import annotations

import math
import random
import weakref

from sipmesh_edge.wheel import Deadlines


class Entry:
    """What the deadlines read of a Server or a Branch: its key, armed deadline and deadline."""

    count = 0

    def __init__(self, due: float) -> None:
        Entry.count += 1
        self.key = (b"z9hG4bK%d" % Entry.count, b"192.0.2.1", b"", b"REGISTER")
        self.armed = math.inf
        self.due = due

    def deadline(self) -> float:
        return self.due


class Harness:
    def __init__(self) -> None:
        self.deadlines: Deadlines[Entry] = Deadlines()
        self.table: dict[tuple[bytes, ...], Entry] = {}
        #: The live transactions by key (the sink's tables).
        self.fired: list[tuple[Entry, float]] = []
        self.then: dict[int, float] = {}
        #: id(entry) -> the next deadline to arm when it fires.

    def _fire(self, entry: Entry, now: float) -> None:
        self.fired.append((entry, now))
        again = self.then.pop(id(entry), None)
        if again is not None:
            entry.due = again
            self.arm(entry)

    def arm(self, entry: Entry) -> None:
        # The deadlines name a transaction by its key: the entry stands in for a server.
        self.table[entry.key] = entry
        self.deadlines.arm(entry)

    def tick(self, now: float) -> list[Entry]:
        self.fired.clear()
        self.deadlines.fire_due(now, self.table.get, self._fire)
        return [e for e, _ in self.fired]


def test_a_deadline_fires_at_the_first_tick_at_or_after_it_even_within_a_slot() -> None:
    h = Harness()
    entry = Entry(1000.5034)
    h.arm(entry)
    assert h.tick(1000.5) == []  # same 10 ms slot, not due yet
    assert h.tick(1000.5033) == []
    assert h.tick(1000.5034) == [entry]
    assert h.tick(1010.0) == []  # fired once


def test_a_new_deadline_earlier_or_later_supersedes_the_armed_one() -> None:
    h = Harness()
    entry = Entry(1032.0)
    h.arm(entry)
    entry.due = 1000.5
    h.arm(entry)  # earlier: a new entry; the 32 s one is skipped when its slot comes
    assert h.tick(1000.5) == [entry]
    entry.due = 1000.7
    h.arm(entry)
    entry.due = 1005.0
    h.arm(entry)  # later (a response moved Timer A to Timer B): 1000.7 never fires
    assert h.tick(1000.8) == []
    assert h.tick(1004.99) == []
    assert h.tick(1005.0) == [entry]
    assert h.tick(1040.0) == []  # the superseded entries never fire


def test_a_finished_transaction_is_not_held_by_its_superseded_deadlines() -> None:
    h = Harness()
    entry = Entry(1064.0)  # a UDP REGISTER: the 64 s expiry first
    h.arm(entry)
    entry.due = 1032.0  # then Timer J
    h.arm(entry)
    assert h.tick(1032.0) == [entry]
    del h.table[entry.key]  # Timer J terminated it
    ref = weakref.ref(entry)
    del entry
    h.fired.clear()
    assert ref() is None  # the 64 s wheel entry holds the key only
    assert h.tick(1064.0) == []


def test_a_timer_armed_while_firing_that_is_due_fires_in_the_same_tick() -> None:
    h = Harness()
    entry = Entry(1000.1)
    h.then[id(entry)] = 1000.2  # e.g. a retransmission timer that is already due again
    h.arm(entry)
    fired = h.tick(1000.3)
    assert fired == [entry, entry]
    assert [now for _, now in h.fired] == [1000.3, 1000.3]


def test_random_deadlines_fire_exactly_once_in_time() -> None:
    rng = random.Random(3261)
    h = Harness()
    entries = [Entry(1000.0 + rng.uniform(0, 40)) for _ in range(500)]
    for entry in entries:
        h.arm(entry)
    seen: list[int] = []
    now = 1000.0
    while now < 1041.0:
        now += rng.uniform(0.0005, 0.2)
        for entry in h.tick(now):
            assert entry.due <= now
            seen.append(id(entry))
        done = set(seen)
        assert [e for e in entries if e.due <= now and id(e) not in done] == []
    assert sorted(seen) == sorted(map(id, entries))
