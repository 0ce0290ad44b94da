"""How a service runs Python's cyclic garbage collector, and what it costs.

Reference counting frees nearly every object a SIP message makes; the cyclic
collector only matters for the rare cycle. What it costs is a stop-the-world
pause proportional to the objects it scans, and a proxy keeps many alive on
purpose: a UDP transaction lives 64*T1 = 32 s after its final response (RFC
3261 §17.1.2.2 Timer K, §17.2.2 Timer J, RFC 6026 Timers L and M), so an edge
at 1,200 calls/s holds about 140,000 transactions. Left to the default
generations, scanning them took 335 ms at a time (generation 1) and 1.8 s for a
full collection: setup times of a third of a second, then retransmissions from
every phone that waited, then more load.

:class:`GcPolicy` offers two modes:

- ``"rare"`` (router, registrar, ...): scan generation 0 every 50,000 net
  allocations instead of 700 and never again what start-up built;
- ``"young"`` (the edge): the same, and after every collection what survived
  it is frozen (:func:`gc.freeze`), so no collection ever scans an object
  twice: each pause covers at most one generation-0 batch. Reference counting
  still frees frozen objects; only a cycle that becomes garbage after its
  first scan is kept. The proxy's per-call objects make no cycles (tested
  with the collector off), so that is the rare path's garbage, and
  :meth:`GcPolicy.maintain` bounds it: the first time the process's
  allocated blocks pass ``min_blocks`` they become the baseline, and when
  they reach ``regrowth`` times the baseline it unfreezes and collects
  everything once (one long pause, then a new baseline). Ramping up to a
  steady load does not trigger it (measured: three full collections of up
  to 1 s each in the first 30 s at 1,200 calls/s when the baseline was the
  idle process); a leak does, before memory has tripled.

Every pause is observed in ``sipmesh_gc_pause_seconds{generation}``; full
collections the policy ran are counted in
``sipmesh_gc_full_collections_total``.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["GcMode", "GcPolicy"]

GcMode = Literal["rare", "young"]

#: Net allocations of tracked objects between two generation-0 scans.
YOUNG_THRESHOLD = 50_000
#: Full collections happen only once the allocated blocks grew this much.
DEFAULT_REGROWTH = 3.0
#: Growth below this many allocated blocks (pymalloc's, up to 512 B each) is
#: taken for start-up and load, not for a leak: an edge at 1,200 calls/s
#: holds a few million.
MIN_BLOCKS = 4_000_000
_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GcPolicy:
    """Tune the cyclic collector of this process and measure its pauses.

    Args:
        registry: where the metrics go (``Service.registry``).
        mode: ``"rare"`` or ``"young"``, see the module docstring.
        regrowth: in ``"young"`` mode, the growth of allocated blocks since
            the last full collection that triggers the next one.
        min_blocks: no full collection below this many allocated blocks.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None,
        *,
        mode: GcMode = "rare",
        regrowth: float = DEFAULT_REGROWTH,
        min_blocks: int = MIN_BLOCKS,
    ) -> None:
        if regrowth <= 1.0:
            raise ValueError("regrowth: must be greater than 1")
        self.mode: GcMode = mode
        self.regrowth = regrowth
        self.min_blocks = min_blocks
        self.full_collections = 0
        self._baseline = 0
        self._started = 0.0
        self._installed = False
        pause = Histogram(
            "sipmesh_gc_pause_seconds",
            "Pauses of the cyclic garbage collector, by the oldest generation scanned",
            ["generation"],
            buckets=_PAUSE_BUCKETS,
            registry=registry,
        )
        self._pauses = [pause.labels(generation=str(g)) for g in range(3)]
        self._full = Counter(
            "sipmesh_gc_full_collections",
            "Full collections run because allocated memory grew (mode young)",
            registry=registry,
        )

    def install(self) -> None:
        """Collect once, freeze what start-up built, set the thresholds, start measuring."""
        if self._installed:
            return
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, 20, 100)
        self._baseline = 0
        gc.callbacks.append(self._on_gc)
        self._installed = True

    def uninstall(self) -> None:
        """Stop measuring and freezing; the thresholds stay (tests)."""
        if self._installed:
            gc.callbacks.remove(self._on_gc)
            self._installed = False

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self._pauses[info["generation"]].observe(time.perf_counter() - self._started)
        if self.mode == "young":
            # Everything still tracked has now been scanned at least once.
            gc.freeze()

    def maintain(self) -> bool:
        """In ``"young"`` mode, collect everything if memory grew past the bound.

        Returns:
            True if a full collection ran.
        """
        if self.mode != "young":
            return False
        blocks = sys.getallocatedblocks()
        if blocks < self.min_blocks:
            return False
        if not self._baseline:
            self._baseline = blocks
            return False
        if blocks < self._baseline * self.regrowth:
            return False
        gc.unfreeze()
        gc.collect()  # observed, and its survivors frozen, by _on_gc
        self._full.inc()
        self.full_collections += 1
        self._baseline = max(sys.getallocatedblocks(), self.min_blocks)
        return True

    async def maintain_forever(self, every: float = 5.0) -> None:
        """:meth:`maintain` every ``every`` seconds until cancelled."""
        while True:
            await asyncio.sleep(every)
            self.maintain()
