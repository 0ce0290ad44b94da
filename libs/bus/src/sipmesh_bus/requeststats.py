"""Per-request metrics of :meth:`sipmesh_bus.runtime.Service.serve`, cheap to record.

A prometheus-client ``Counter.inc()`` plus ``Histogram.observe()`` costs about
2 µs per request (a lock and a value object each, and the histogram's bucket
search in Python): half of what the whole responder side of a round trip costs
on the wire client. Here a request adds to the plain numbers of
:mod:`sipmesh_bus.tally` series, and the families are built only when the
registry is collected (a ``/metrics`` scrape, or ``registry.get_sample_value``
in a test). The event loop is the only thread that records or collects, so no
lock is needed.

Exposed, as before: ``sipmesh_bus_requests_total{subject, outcome}`` and the
histogram ``sipmesh_bus_request_duration_seconds{subject}``.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

from prometheus_client import CollectorRegistry

from .tally import CounterChild, CounterFamily, HistogramChild, HistogramFamily

__all__ = ["BUCKETS", "RequestStats"]

BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Upper bounds (seconds) of the latency histogram; +Inf is implied.


class RequestStats:
    """Request counts by (subject, outcome) and latency by subject.

    Args:
        registry: where the two families are collected from.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = CounterFamily(
            "sipmesh_bus_requests",
            "Requests handled, by subject and outcome (ok, bad_request, error, shed)",
            ["subject", "outcome"],
            registry=registry,
        )
        self._duration = HistogramFamily(
            "sipmesh_bus_request_duration_seconds",
            "Time from receipt to reply, by subject",
            ["subject"],
            registry=registry,
            buckets=BUCKETS,
        )
        self._cells: dict[tuple[bytes, str], tuple[CounterChild, HistogramChild]] = {}
        #: (subject as received, outcome) -> its two series, so that a request
        #: decodes no subject and builds no label tuple.

    def record(self, subject: bytes, outcome: str, seconds: float) -> None:
        """Count one request on ``subject`` that ended with ``outcome``."""
        cell = self._cells.get((subject, outcome))
        if cell is None:
            cell = self._cell(subject, outcome)
        cell[0].value += 1
        # HistogramChild.observe inlined: a method call is ~7% of a record.
        latency = cell[1]
        latency.sum += seconds
        latency.counts[bisect_left(latency.bounds, seconds)] += 1

    def count(self, subject: bytes, outcome: str) -> None:
        """Count one request that got no reply (no latency to observe)."""
        cell = self._cells.get((subject, outcome))
        if cell is None:
            cell = self._cell(subject, outcome)
        cell[0].value += 1

    def _cell(self, subject: bytes, outcome: str) -> tuple[CounterChild, HistogramChild]:
        # The subject's histogram series exists from its first request, even
        # one shed without a reply (as before: the same series on /metrics).
        text = subject.decode(errors="replace")
        cell = self._cells[subject, outcome] = (
            self._requests.labels(text, outcome),
            self._duration.labels(text),
        )
        return cell
