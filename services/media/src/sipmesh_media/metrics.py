"""The media service's Prometheus metrics, on an injected registry.

RTPEngine instances are told apart by the label ``rtpengine``, not ``instance``:
Prometheus gives every scrape target an ``instance`` label of its own and would
store ours as ``exported_instance``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["COMMANDS", "FAILURES", "NG_COMMANDS", "OK", "UNKNOWN", "MediaMetrics"]

COMMANDS: Final = ("offer", "answer", "delete")
#: The media requests the service answers (one ng command each).
OK: Final = "ok"
FAILURES: Final = (
    "timeout",
    "instance_down",
    "no_instance",
    "rtpengine_error",
    "bad_request",
    "internal",
)
#: The ``code`` of a failed :class:`~sipmesh_bus.schema.MediaReply`.
NG_COMMANDS: Final = (*COMMANDS, "ping", "statistics")
#: What the service sends to every RTPEngine (round-trip histogram children).
UNKNOWN: Final = "unknown"
#: The command of a request that did not decode (outcome ``bad_request`` or ``internal``).


class MediaMetrics:
    """Counters, gauges and the ng latency histogram of one media replica."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter(
            "sipmesh_media_commands",
            "Media requests by command and outcome (ok, or the failure code)",
            ["command", "outcome"],
            registry=registry,
        )
        self.round_trip = Histogram(
            "sipmesh_media_ng_round_trip_seconds",
            "ng round trip from first send to reply (retries included), by RTPEngine",
            ["rtpengine", "command"],
            registry=registry,
            buckets=(0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 3.0),
        )
        self.instance_up = Gauge(
            "sipmesh_media_instance_up",
            "1 while the RTPEngine instance answers pings",
            ["rtpengine"],
            registry=registry,
        )
        self.sessions_active = Gauge(
            "sipmesh_media_sessions_active",
            "Sessions the RTPEngine instance runs (its ng statistics, read every ping round)",
            ["rtpengine"],
            registry=registry,
        )
        for command in COMMANDS:
            for outcome in (OK, *FAILURES):
                self.commands.labels(command, outcome)
        for outcome in ("bad_request", "internal"):
            self.commands.labels(UNKNOWN, outcome)

    def add_instances(self, names: Iterable[str]) -> None:
        """Create the per-instance series (up, sessions, round trips) at 0.

        A series that appears only at its first event leaves dashboards empty and
        ``rate()`` blind to that first event; these exist from start-up on.
        """
        for name in names:
            self.instance_up.labels(name)
            self.sessions_active.labels(name)
            for command in NG_COMMANDS:
                self.round_trip.labels(name, command)
