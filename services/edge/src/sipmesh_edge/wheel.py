"""The deadlines of the edge's transactions: a timer wheel of 10 ms slots.

A heap of every deadline costs a few µs per pop once it holds a few hundred
thousand entries (Timer J/L keep transactions 32 s, safety nets 300 s; each
superseded deadline stays until its time), mostly in cache misses. Here a
deadline goes into the bucket of its slot (a dict lookup and an append) and
only the slot numbers are kept in order (a heap of one int per slot).
Entries are never removed: the caller skips the ones it superseded.

:class:`Deadlines` is what the sink arms and ticks: one deadline per
transaction, named by its key, a superseded one skipped lazily.
:class:`Expiring` holds finished transactions that only linger (Timer J, K,
D), each as a tuple of bytes, strings and numbers until it ends.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Hashable
from typing import Final, Generic, Protocol, TypeVar

__all__ = ["SLOTS_PER_SECOND", "Deadlines", "Expiring", "Timed", "TimerWheel"]

SLOTS_PER_SECOND: Final = 100
#: The resolution (10 ms slots); an entry is still returned only once due.

E = TypeVar("E")
K = TypeVar("K", bound=Hashable)


class Timed(Protocol):
    """What :class:`Deadlines` reads of a transaction (the edge's Server and Branch)."""

    armed: float
    """The deadline in the wheel (``math.inf``: none); :class:`Deadlines` sets it."""

    @property
    def key(self) -> tuple[bytes, ...]:
        """The transaction's key in its table."""

    def deadline(self) -> float:
        """When it must be looked at next (``math.inf``: never)."""


T = TypeVar("T", bound=Timed)


class TimerWheel(Generic[E]):
    """Entries by deadline, popped a slot at a time (:meth:`pop_slot`), earliest first."""

    __slots__ = ("_buckets", "_slots")

    def __init__(self) -> None:
        self._buckets: dict[int, list[tuple[float, E]]] = {}
        self._slots: list[int] = []
        #: A heap of the slot numbers that have a bucket.

    def schedule(self, deadline: float, entry: E) -> None:
        """Add ``entry`` with a (finite) ``deadline``."""
        slot = int(deadline * SLOTS_PER_SECOND)
        bucket = self._buckets.get(slot)
        if bucket is None:
            self._buckets[slot] = [(deadline, entry)]
            heapq.heappush(self._slots, slot)
        else:
            bucket.append((deadline, entry))

    def pop_slot(self, now: float) -> list[tuple[float, E]] | None:
        """Remove and return the earliest bucket whose slot has begun at ``now``; None if none.

        Its entries are in the order scheduled; those of the current slot may
        not be due yet (``deadline > now``): the caller schedules them again
        once it is done popping (else this would return them again). What is
        scheduled while the caller handles a bucket is returned by a later
        call when its slot has begun.
        """
        slots = self._slots
        if slots and slots[0] <= now * SLOTS_PER_SECOND:
            return self._buckets.pop(heapq.heappop(slots))
        return None


class Deadlines(Generic[T]):
    """One deadline per transaction: :meth:`arm` after any change, :meth:`fire_due` every few ms.

    The wheel holds the key, not the transaction: a superseded entry stays
    until its own time (a UDP REGISTER's 64 s expiry after Timer J fired at
    32 s, an INVITE's 300 s safety net, a branch's Timer C), and holding the
    object would keep every finished transaction alive that long: twice the
    memory, and young objects that trigger the collector never balanced by
    frees.
    """

    __slots__ = ("_wheel",)

    def __init__(self) -> None:
        self._wheel: TimerWheel[tuple[bytes, ...]] = TimerWheel()

    def arm(self, entry: T) -> None:
        """Schedule ``entry.deadline()`` unless it is the armed one already."""
        deadline = entry.deadline()
        if deadline != entry.armed:
            # A new wheel entry for a deadline earlier or later than the armed
            # one (a response moved Timer A/E to Timer B/C/K, a final moved
            # the safety net to Timer L/J): the superseded entry stays in its
            # slot and is skipped there, instead of firing only to re-arm.
            entry.armed = deadline
            if deadline != math.inf:
                self._wheel.schedule(deadline, entry.key)

    def fire_due(
        self,
        now: float,
        find: Callable[[tuple[bytes, ...]], T | None],
        fire: Callable[[T, float], None],
    ) -> None:
        """``fire(entry, now)`` for every entry whose armed deadline is at or before ``now``.

        ``find`` maps a key to the live transaction (None once it is gone).
        Each fires once per arming (``armed`` is reset first), in deadline
        slot order; one armed while firing that is due already fires in this
        call too. ``fire`` must not raise.
        """
        wheel = self._wheel
        later: list[tuple[float, tuple[bytes, ...]]] = []
        # A timer armed while firing lands in its slot again (a new bucket),
        # so this loop fires it too when it is due already.
        while (bucket := wheel.pop_slot(now)) is not None:
            for deadline, key in bucket:
                entry = find(key)
                if entry is None or deadline != entry.armed:
                    continue  # gone, or superseded by another deadline (see arm)
                if deadline > now:
                    later.append((deadline, key))  # the current slot, not due yet
                    continue
                entry.armed = math.inf
                fire(entry, now)
        for deadline, key in later:
            wheel.schedule(deadline, key)


class Expiring(Generic[K, E]):
    """Values by key, each until its end; what ended is dropped by :meth:`expire` or when asked.

    For transactions that have nothing left to do but absorb or re-send until
    a timer of the same length for all (Timer J, K or D): entries are put in
    nearly the order they end, so a deque of (key, end) in insertion order
    finds what ended at its left. The values are meant to be tuples of bytes,
    strings and numbers, which the garbage collector stops tracking once it
    has seen them.
    """

    __slots__ = ("_entries", "_order")

    def __init__(self) -> None:
        self._entries: dict[K, tuple[float, E]] = {}
        self._order: deque[tuple[K, float]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: K, end: float, value: E) -> None:
        """Keep ``value`` for ``key`` until ``end`` (replacing what ``key`` had)."""
        self._entries[key] = (end, value)
        self._order.append((key, end))

    def get(self, key: K, now: float) -> E | None:
        """The value of ``key`` if it has not ended at ``now``, else None (and it is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        return entry[1]

    def expire(self, now: float) -> None:
        """Drop what ended at ``now`` (an entry replaced since ends later: kept)."""
        order, entries = self._order, self._entries
        while order and order[0][1] <= now:
            key, end = order.popleft()
            entry = entries.get(key)
            if entry is not None and entry[0] == end:
                del entries[key]
