"""The registrar's Prometheus metrics, on an injected registry.

The two touched by every REGISTER, ``sipmesh_registrar_registrations_total``
and ``sipmesh_registrar_handling_seconds``, are :mod:`sipmesh_bus.tally`
families (plain numbers turned into families only when the registry is
collected): a prometheus-client ``inc()`` and ``observe()`` take a lock and a
value object each, ~2 us per REGISTER. The event loop is the only thread that
records or collects.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from sipmesh_bus.tally import CounterChild, CounterFamily, HistogramChild, HistogramFamily

__all__ = ["LATENCY_BUCKETS", "RegistrarMetrics"]

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Upper bounds (seconds) of ``sipmesh_registrar_handling_seconds``; +Inf is implied.


class RegistrarMetrics:
    """Counters and gauges of one registrar replica."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registrations = CounterFamily(
            "sipmesh_registrar_registrations",
            "REGISTER requests answered, by result (ok, query, challenge, auth_failed, ...)",
            ["result"],
            registry=registry,
        )
        self.latency: HistogramChild = HistogramFamily(
            "sipmesh_registrar_handling_seconds",
            "Time to answer one REGISTER, KV round trips included",
            [],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        ).labels()
        #: The one series of ``sipmesh_registrar_handling_seconds``.
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

    def result(self, name: str) -> CounterChild:
        """The ``registrations`` count of one result label."""
        return self.registrations.labels(name)
