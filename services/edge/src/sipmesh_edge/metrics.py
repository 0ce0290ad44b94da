"""The edge's Prometheus metrics, built against an injected registry.

The series every message touches (requests, responses, retransmissions, the
bus round trip, the transaction times) are plain ints and floats in
:class:`EdgeMetrics`, exposed through a custom collector at scrape time: a
``Counter.labels(...).inc()`` costs about 2.5 µs (label lookup, a lock), a
dict increment 0.1 µs, and a REGISTER used to pay four of them. The exposition
is the same as prometheus-client's for these series (``_total``; ``_bucket``,
``_count``, ``_sum``) minus the ``_created`` samples. The rare series stay
ordinary prometheus-client metrics.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sipmesh_edge.core import SUPPORTED_METHODS

__all__ = ["TRANSACTION_KINDS", "EdgeMetrics"]

_METHOD_LABELS: Final = {m: m.decode() for m in SUPPORTED_METHODS}
TRANSACTION_KINDS: Final = ("local", "service", "proxied")
#: How a server transaction got its final response: made by the edge itself
#: (``core.answer_locally``), sent by a service in a ``SendResponse`` (or the
#: edge's 503 when none answered), or passed upstream from a forwarded request.
_BUS_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_TRANSACTION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip


class _Histogram:
    """One histogram series in plain numbers (observed without a lock: one event loop)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        #: Per bucket, not cumulative; the last is +Inf.
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # The bucket of ``value`` is the first bound >= value ("le").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for label, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            out.append((label, float(total)))  # cumulative, as "le" means
        return out


class EdgeMetrics:
    """Counters and histograms of the edge (names start with ``sipmesh_edge_``).

    Args:
        registry: where to register (a fresh ``CollectorRegistry()`` in tests).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = dict.fromkeys([*_METHOD_LABELS, b""], 0)
        #: New requests by method; b"" counts the unknown ones (OTHER).
        self._responses = [0] * 10
        #: Responses sent, by status // 100.
        self._retransmissions = 0
        self._bus = _Histogram(_BUS_BUCKETS)
        self._transactions = {
            (method, kind): _Histogram(_TRANSACTION_BUCKETS)
            for method in [*_METHOD_LABELS, b""]
            for kind in TRANSACTION_KINDS
        }
        registry.register(_HotCollector(self))
        self.parse_errors = Counter(
            "sipmesh_edge_parse_errors", "Messages that were not usable SIP", registry=registry
        )
        self.unavailable = Counter(
            "sipmesh_edge_unavailable",
            "503 answers because a service did not answer, by reason",
            ["reason"],
            registry=registry,
        )
        self.dropped = Counter(
            "sipmesh_edge_dropped",
            "Messages dropped, by reason (stray_response, bad_reply, too_large ...)",
            ["reason"],
            registry=registry,
        )
        self.internal_errors = Counter(
            "sipmesh_edge_internal_errors",
            "Messages whose handling raised an unexpected exception (a bug; logged)",
            registry=registry,
        )

    def request(self, method: bytes) -> None:
        """Count a new request."""
        counts = self._requests
        if method in counts:
            counts[method] += 1
        else:
            counts[b""] += 1

    def response(self, status: int) -> None:
        """Count a response sent (100-699)."""
        self._responses[status // 100 % 10] += 1

    def retransmission(self) -> None:
        """Count a request retransmission absorbed by its server transaction."""
        self._retransmissions += 1

    def bus_round_trip(self, seconds: float) -> None:
        """Observe one NATS request's time to its reply."""
        self._bus.observe(seconds)

    def transaction(self, method: bytes, kind: str, seconds: float) -> None:
        """Observe one server transaction's time to its final response."""
        key = (method if method in _METHOD_LABELS else b"", kind)
        series = self._transactions.get(key)
        if series is None:  # a kind outside TRANSACTION_KINDS: a caller bug, still counted
            series = self._transactions[key] = _Histogram(_TRANSACTION_BUCKETS)
        series.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        """The per-message series as metric families (what the collector exposes)."""
        requests = _counter(
            "sipmesh_edge_requests",
            "New requests received, by method (unknown methods count as OTHER)",
            ["method"],
        )
        for method, count in self._requests.items():
            requests.add_metric([_METHOD_LABELS.get(method, "OTHER")], count)
        responses = _counter(
            "sipmesh_edge_responses_sent",
            "Responses the edge sent (not retransmissions), by class: 1xx ... 6xx",
            ["status_class"],
        )
        for cls, count in enumerate(self._responses):
            if count:
                responses.add_metric([f"{cls}xx"], count)
        retransmissions = _counter(
            "sipmesh_edge_retransmissions_absorbed",
            "Requests matched to an existing server transaction (never sent to the bus again)",
            [],
        )
        retransmissions.add_metric([], self._retransmissions)
        bus = _histogram(
            "sipmesh_edge_bus_round_trip_seconds",
            "From publishing a request on NATS to its reply",
            [],
        )
        bus.add_metric([], self._bus.buckets(), self._bus.sum)
        transactions = _histogram(
            "sipmesh_edge_transaction_seconds",
            "Server transactions: request received to final response sent, by method and kind"
            " (local, service, proxied; a proxied INVITE includes the callee's answer time)",
            ["method", "kind"],
        )
        for (method, kind), series in self._transactions.items():
            label = _METHOD_LABELS.get(method, "OTHER")
            transactions.add_metric([label, kind], series.buckets(), series.sum)
        yield from (requests, responses, retransmissions, bus, transactions)


def _counter(name: str, documentation: str, labels: Sequence[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, labels=labels)


def _histogram(name: str, documentation: str, labels: Sequence[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, labels=labels)


class _HotCollector(Collector):
    """Exposes :meth:`EdgeMetrics.collect` to the registry."""

    def __init__(self, metrics: EdgeMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect()
