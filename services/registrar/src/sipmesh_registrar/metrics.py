"""The registrar's Prometheus metrics, on an injected registry.

The two touched by every REGISTER, ``sipmesh_registrar_registrations_total``
and ``sipmesh_registrar_handling_seconds``, are plain Python counters turned
into families only when the registry is collected (as
:class:`sipmesh_bus.requeststats.RequestStats` does): a prometheus-client
``inc()`` and ``observe()`` take a lock and a value object each, ~2 us per
REGISTER. The event loop is the only thread that records or collects.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["LATENCY_BUCKETS", "Latency", "RegistrarMetrics", "ResultCount", "Results"]

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Upper bounds (seconds) of ``sipmesh_registrar_handling_seconds``; +Inf is implied.


class ResultCount:
    """One ``result`` label's count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        """Count one REGISTER answered with this result."""
        self.value += 1


class Results:
    """``sipmesh_registrar_registrations`` by result (``labels(name).inc()`` as a Counter)."""

    def __init__(self) -> None:
        self._children: dict[str, ResultCount] = {}

    def labels(self, result: str) -> ResultCount:
        """The count of one result, made on first use."""
        child = self._children.get(result)
        if child is None:
            child = self._children[result] = ResultCount()
        return child

    def family(self) -> Metric:
        """The counter family as it is now."""
        family = CounterMetricFamily(
            "sipmesh_registrar_registrations",
            "REGISTER requests answered, by result (ok, query, challenge, auth_failed, ...)",
            labels=["result"],
        )
        for result, child in self._children.items():
            family.add_metric([result], child.value)
        return family


class Latency:
    """``sipmesh_registrar_handling_seconds``: bucket counts and the sum."""

    __slots__ = ("_counts", "_total")

    def __init__(self) -> None:
        self._counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self._total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one REGISTER answered in ``seconds``."""
        self._total += seconds
        self._counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def family(self) -> Metric:
        """The histogram family as it is now (cumulative buckets)."""
        family = HistogramMetricFamily(
            "sipmesh_registrar_handling_seconds",
            "Time to answer one REGISTER, KV round trips included",
        )
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, n in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self._counts, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        family.add_metric([], buckets, self._total)
        return family


class _HotFamilies(Collector):
    def __init__(self, results: Results, latency: Latency) -> None:
        self._results = results
        self._latency = latency

    def collect(self) -> Iterator[Metric]:
        yield self._results.family()
        yield self._latency.family()


class RegistrarMetrics:
    """Counters and gauges of one registrar replica."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registrations = Results()
        self.latency = Latency()
        registry.register(_HotFamilies(self.registrations, self.latency))
        self.auth_failures = Counter(
            "sipmesh_registrar_auth_failures",
            "Failed digest authentications, by reason (wrong_password, unknown_user, replay, ...)",
            ["reason"],
            registry=registry,
        )
        self.kv_conflicts = Counter(
            "sipmesh_registrar_kv_conflicts",
            "Location writes refused because another replica changed the AoR first",
            registry=registry,
        )
        self.aors = Gauge(
            "sipmesh_registrar_aors",
            "AoR keys in the location bucket (sampled; best effort)",
            registry=registry,
        )
        self.bindings = Gauge(
            "sipmesh_registrar_bindings",
            "Live bindings (Contacts not expired) across all AoRs in this replica's location cache",
            registry=registry,
        )
        self.subscribers = Gauge(
            "sipmesh_registrar_subscribers",
            "Subscribers in this replica's watched cache",
            registry=registry,
        )

    def result(self, name: str) -> ResultCount:
        """The ``registrations`` count of one result label."""
        return self.registrations.labels(name)
