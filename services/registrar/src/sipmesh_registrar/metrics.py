"""The registrar's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RegistrarMetrics"]


class RegistrarMetrics:
    """Counters and gauges of one registrar replica."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registrations = Counter(
            "sipmesh_registrar_registrations",
            "REGISTER requests answered, by result (ok, query, challenge, auth_failed, ...)",
            ["result"],
            registry=registry,
        )
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
        self.latency = Histogram(
            "sipmesh_registrar_handling_seconds",
            "Time to answer one REGISTER, KV round trips included",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
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
        self._results: dict[str, Any] = {}

    def result(self, name: str) -> Any:
        """The ``registrations`` child for one result label, looked up once.

        ``labels()`` hashes, validates and locks on every call; the registrar
        counts every REGISTER, so the children are kept here.
        """
        child = self._results.get(name)
        if child is None:
            child = self._results[name] = self.registrations.labels(name)
        return child
