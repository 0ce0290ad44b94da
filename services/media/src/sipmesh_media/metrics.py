"""The media service's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["MediaMetrics"]


class MediaMetrics:
    """Counters, gauges and the ng latency histogram of one media replica."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sessions = Counter(
            "sipmesh_media_sessions",
            "Successful ng commands by command (offer, answer, delete)",
            ["command"],
            registry=registry,
        )
        self.errors = Counter(
            "sipmesh_media_errors",
            "Failed media requests by command and code (timeout, instance_down, ...)",
            ["command", "code"],
            registry=registry,
        )
        self.round_trip = Histogram(
            "sipmesh_media_ng_round_trip_seconds",
            "ng round trip from first send to reply (retries included), by instance",
            ["instance", "command"],
            registry=registry,
            buckets=(0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 3.0),
        )
        self.instance_up = Gauge(
            "sipmesh_media_instance_up",
            "1 while the RTPEngine instance answers pings",
            ["instance"],
            registry=registry,
        )
