"""Edge micro-benchmark: the sink's timer bookkeeping (``wheel.Deadlines``) at steady state.

Run with ``.venv/bin/python bench/edge/timers.py [calls per second]`` (default 800).

Per call, the deadlines ``call.py`` arms (8 wheel or heap entries): an INVITE
server's 300 s safety net, then its Timer L; a branch's Timer A, then Timer C;
a BYE server's Timer J; a BYE branch's Timer E, then Timer K. The entries are
stand-ins (a deadline and ``armed``) and firing ends them, so what is timed
is the bookkeeping alone. Warmed up past the longest deadline (330 s of clock),
so superseded entries pile up as in a long run; a tick every 4 calls; best of
5 x 20,000 calls on process CPU time.
"""

from __future__ import annotations

import gc
import itertools
import math
import sys
import time

from sipmesh_edge import wheel
from sipmesh_edge.wheel import Deadlines


class Entry:
    """What the sink's timers read of a Server or a Branch."""

    __slots__ = ("armed", "due", "key")

    def __init__(self, due: float, key: tuple[bytes, ...]) -> None:
        self.key = key
        self.armed = math.inf
        self.due = due

    def deadline(self) -> float:
        return self.due


def main() -> None:
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 800.0
    gc.set_threshold(50_000, 20, 100)  # as sipmesh_edge.__main__
    clock = [1000.0]
    deadlines: Deadlines[Entry] = Deadlines()
    # The deadlines name transactions by key (the sink's tables): each entry
    # stands in for a server, and its first firing ends it.
    servers: dict[tuple[bytes, ...], Entry] = {}

    def fire(entry: Entry, now: float) -> None:
        servers.pop(entry.key, None)

    arm = deadlines.arm
    step = 1 / rate

    serial = itertools.count()

    def run(calls: int) -> None:
        for i in range(calls):
            n = next(serial)
            now = clock[0] = clock[0] + step
            # (first deadline, the one that supersedes it): Timer L before the
            # safety net, Timer C after Timer A, Timer K after Timer E.
            for j, (first, then) in enumerate(
                ((300.0, 32.0), (0.5, 180.0), (32.0, 32.0), (0.5, 5.0))
            ):
                entry = Entry(now + first, (b"%d" % n, b"%d" % j, b"", b"INVITE"))
                servers[entry.key] = entry
                arm(entry)
                entry.due = now + then
                arm(entry)
            if i % 4 == 0:
                deadlines.fire_due(clock[0], servers.get, fire)

    run(int(rate * 330))
    best = math.inf
    for _ in range(5):
        gc.collect()
        gc.freeze()
        started = time.process_time()
        run(20_000)
        best = min(best, time.process_time() - started)
        gc.unfreeze()
    print(f"{wheel.__file__}: {best / 20_000 * 1e6:.2f} us per call (8 arms, 1/4 tick)")


if __name__ == "__main__":
    main()
