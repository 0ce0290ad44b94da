"""Edge micro-benchmark: the sink's timer bookkeeping (``_arm``, ``tick``) at steady state.

Run with ``.venv/bin/python bench/edge/timers.py [calls per second]`` (default 800).

Per call, the deadlines ``call.py`` arms (8 wheel or heap entries): an INVITE
server's 300 s safety net, then its Timer L; a branch's Timer A, then Timer C;
a BYE server's Timer J; a BYE branch's Timer E, then Timer K. The entries are
stand-ins (a deadline and ``armed``) and firing does nothing, so what is timed
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
from collections.abc import Callable
from typing import cast

from prometheus_client import CollectorRegistry

from sipmesh_edge import sink as sink_module
from sipmesh_edge.core import EdgeIdentity
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.sink import EdgeSink, SinkConfig


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
    me = EdgeIdentity(edge_id="b", hosts=frozenset({b"192.0.2.10"}), ports=frozenset({5060}))
    sink = EdgeSink(
        SinkConfig(identity=me), EdgeMetrics(CollectorRegistry()), clock=lambda: clock[0]
    )
    # The wheel names transactions by key (EdgeSink._entry): each entry stands
    # in for a server, and its final deadline ends it.
    servers = sink._servers
    sink._fire = lambda entry, now: servers.pop(entry.key, None)  # type: ignore[method-assign,assignment]
    arm = cast(Callable[[Entry], None], sink._arm)  # duck-typed: Entry has what it reads
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
                servers[entry.key] = entry  # type: ignore[assignment]
                arm(entry)
                entry.due = now + then
                arm(entry)
            if i % 4 == 0:
                sink.tick()

    run(int(rate * 330))
    best = math.inf
    for _ in range(5):
        gc.collect()
        gc.freeze()
        started = time.process_time()
        run(20_000)
        best = min(best, time.process_time() - started)
        gc.unfreeze()
    print(f"{sink_module.__file__}: {best / 20_000 * 1e6:.2f} us per call (8 arms, 1/4 tick)")


if __name__ == "__main__":
    main()
