"""Per-request metrics of :meth:`sipmesh_bus.runtime.Service.serve`, cheap to record.

A prometheus-client ``Counter.inc()`` plus ``Histogram.observe()`` costs about
2 µs per request (a lock and a value object each, and the histogram's bucket
search in Python): half of what the whole responder side of a round trip costs
on the wire client. Here a request adds to plain Python lists, and the
families are built only when the registry is collected (a ``/metrics`` scrape,
or ``registry.get_sample_value`` in a test). The event loop is the only
thread that records or collects, so no lock is needed.

Exposed, as before: ``sipmesh_bus_requests_total{subject, outcome}`` and the
histogram ``sipmesh_bus_request_duration_seconds{subject}``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["BUCKETS", "RequestStats"]

BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Upper bounds (seconds) of the latency histogram; +Inf is implied.


class _Latency:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0


class RequestStats(Collector):
    """Request counts by (subject, outcome) and latency by subject.

    Args:
        registry: where the two families are collected from.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._counts: dict[tuple[str, str], list[int]] = {}
        self._latency: dict[str, _Latency] = {}
        self._cells: dict[tuple[bytes, str], tuple[list[int], _Latency]] = {}
        registry.register(self)

    def record(self, subject: bytes, outcome: str, seconds: float) -> None:
        """Count one request on ``subject`` that ended with ``outcome``."""
        cell = self._cells.get((subject, outcome))
        if cell is None:
            cell = self._cell(subject, outcome)
        cell[0][0] += 1
        latency = cell[1]
        latency.total += seconds
        latency.counts[bisect_left(BUCKETS, seconds)] += 1

    def count(self, subject: bytes, outcome: str) -> None:
        """Count one request that got no reply (no latency to observe)."""
        cell = self._cells.get((subject, outcome))
        if cell is None:
            cell = self._cell(subject, outcome)
        cell[0][0] += 1

    def _cell(self, subject: bytes, outcome: str) -> tuple[list[int], _Latency]:
        text = subject.decode(errors="replace")
        count = self._counts.setdefault((text, outcome), [0])
        latency = self._latency.setdefault(text, _Latency())
        cell = self._cells[subject, outcome] = (count, latency)
        return cell

    def collect(self) -> Iterator[Metric]:
        """The two families as they are now (called by the registry)."""
        requests = CounterMetricFamily(
            "sipmesh_bus_requests",
            "Requests handled, by subject and outcome (ok, bad_request, error, shed)",
            labels=["subject", "outcome"],
        )
        for (subject, outcome), count in self._counts.items():
            requests.add_metric([subject, outcome], count[0])
        yield requests
        duration = HistogramMetricFamily(
            "sipmesh_bus_request_duration_seconds",
            "Time from receipt to reply, by subject",
            labels=["subject"],
        )
        for subject, latency in self._latency.items():
            buckets: list[tuple[str, float]] = []
            cumulative = 0
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), latency.counts, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            duration.add_metric([subject], buckets, latency.total)
        yield duration
