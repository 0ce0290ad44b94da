"""The deadlines of the edge's transactions: a timer wheel of 10 ms slots.

A heap of every deadline costs a few µs per pop once it holds a few hundred
thousand entries (Timer J/L keep transactions 32 s, safety nets 300 s; each
superseded deadline stays until its time), mostly in cache misses. Here a
deadline goes into the bucket of its slot (a dict lookup and an append) and
only the slot numbers are kept in order (a heap of one int per slot).
Entries are never removed: the caller skips the ones it superseded.
"""

from __future__ import annotations

import heapq
from typing import Final, Generic, TypeVar

__all__ = ["SLOTS_PER_SECOND", "TimerWheel"]

SLOTS_PER_SECOND: Final = 100
#: The resolution (10 ms slots); an entry is still returned only once due.

E = TypeVar("E")


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
