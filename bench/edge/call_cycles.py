"""Do finished calls' objects go away without the cyclic GC? (They do since 2026-11-29; see below.)

    .venv/bin/python bench/edge/call_cycles.py

Runs ``call.py``'s scenario through the sink (60,000 calls at 400/s of clock),
then ticks the clock 400 s past every timer, counting the proxy's ``Server``,
``Fork`` and ``Branch`` objects alive. A proxied server transaction and its
fork point at each other (``Server.fork``, ``Fork.server``), as do a fork and
its branches (``Fork.branches``, ``Branch.fork``), so reference counting frees
none of them: with the edge's GC thresholds (``sipmesh_edge.__main__``:
50,000, 20, 100) they are promoted to gen2 while the call is alive and stay
until a full collection, which runs after 100 gen1 collections. Session 4
(2026-11-29): every one of the 120,000 Servers (INVITE and BYE) stayed, with
none left in the tables, until ``gc.collect()``. Since the sink's and the
proxy's ``_retire`` cut the cycles when a transaction leaves its table:
"400 s later: 0 in the tables, objects {}".
"""

from __future__ import annotations

import gc
import importlib
import sys
from pathlib import Path

from sipmesh_edge.proxy import Branch, Fork, Server

sys.path.insert(0, str(Path(__file__).resolve().parent))
cb = importlib.import_module("call")  # the bench next to this file


def _alive() -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in gc.get_objects():
        if type(o) in (Server, Fork, Branch):
            counts[type(o).__name__] = counts.get(type(o).__name__, 0) + 1
    return counts


def main() -> None:
    gc.set_threshold(50_000, 20, 100)  # as sipmesh_edge.__main__
    b = cb.Bench(400.0, 20)
    for k in range(6):
        calls = b.calls(k * 10_000, 10_000)
        b.run(calls)
        for c in calls:
            del b.bus.calls[c.call_id]
            del b.branch[c.call_id]
        print(
            f"{(k + 1) * 10_000} calls (clock {b.now - 1000:.0f} s): "
            f"{b.sink.transactions} transactions in the tables, objects {_alive()}"
        )
    for _ in range(4000):
        b.now += 0.1
        b.sink.tick()
    print(f"400 s later: {b.sink.transactions} in the tables, objects {_alive()}")
    gc.collect()
    print(f"after gc.collect(): {_alive()}")


if __name__ == "__main__":
    main()
