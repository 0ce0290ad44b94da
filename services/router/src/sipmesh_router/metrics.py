"""The router's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RouterMetrics"]


class RouterMetrics:
    """Counters and gauges of one router replica."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "sipmesh_router_decisions",
            "Requests and responses decided, by outcome (forward, challenge, failover_503 ...)",
            ["outcome"],
            registry=registry,
        )
        self.events = Counter(
            "sipmesh_router_call_events",
            "Call events published to JetStream, by kind and result (ok, error)",
            ["kind", "result"],
            registry=registry,
        )
        self.latency = Histogram(
            "sipmesh_router_handling_seconds",
            "Time to decide one message, KV reads and event publishes included",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.routing_keys = Gauge(
            "sipmesh_router_routing_objects",
            "Dispatcher sets plus gateways in this replica's routing snapshot",
            registry=registry,
        )
        self.subscribers = Gauge(
            "sipmesh_router_subscribers",
            "Subscribers in this replica's watched cache",
            registry=registry,
        )
        self.media = Counter(
            "sipmesh_router_media_requests",
            "Requests to the media service, by command (offer, answer, delete) and result "
            "(ok, or MediaReply.code: unavailable, timeout, instance_down, no_instance ...)",
            ["command", "result"],
            registry=registry,
        )
