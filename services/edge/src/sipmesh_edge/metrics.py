"""The edge's Prometheus metrics, built against an injected registry."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

from sipmesh_edge.core import SUPPORTED_METHODS

__all__ = ["TRANSACTION_KINDS", "EdgeMetrics"]

_METHOD_LABELS: Final = {m: m.decode() for m in SUPPORTED_METHODS}
TRANSACTION_KINDS: Final = ("local", "service", "proxied")
#: How a server transaction got its final response: made by the edge itself
#: (``core.answer_locally``), sent by a service in a ``SendResponse`` (or the
#: edge's 503 when none answered), or passed upstream from a forwarded request.


class EdgeMetrics:
    """Counters and histograms of the edge (names start with ``sipmesh_edge_``).

    Args:
        registry: where to register (a fresh ``CollectorRegistry()`` in tests).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "sipmesh_edge_requests",
            "New requests received, by method (unknown methods count as OTHER)",
            ["method"],
            registry=registry,
        )
        self.responses = Counter(
            "sipmesh_edge_responses_sent",
            "Responses the edge sent (not retransmissions), by class: 1xx ... 6xx",
            ["status_class"],
            registry=registry,
        )
        self.bus_latency = Histogram(
            "sipmesh_edge_bus_round_trip_seconds",
            "From publishing a request on NATS to its reply",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.parse_errors = Counter(
            "sipmesh_edge_parse_errors", "Messages that were not usable SIP", registry=registry
        )
        self.unavailable = Counter(
            "sipmesh_edge_unavailable",
            "503 answers because a service did not answer, by reason",
            ["reason"],
            registry=registry,
        )
        self.retransmissions = Counter(
            "sipmesh_edge_retransmissions_absorbed",
            "Requests matched to an existing server transaction (never sent to the bus again)",
            registry=registry,
        )
        self.dropped = Counter(
            "sipmesh_edge_dropped",
            "Messages dropped, by reason (stray_response, bad_reply, too_large ...)",
            ["reason"],
            registry=registry,
        )
        self.transactions = Histogram(
            "sipmesh_edge_transaction_seconds",
            "Server transactions: request received to final response sent, by method and kind"
            " (local, service, proxied; a proxied INVITE includes the callee's answer time)",
            ["method", "kind"],
            registry=registry,
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                5.0,
                10.0,
                30.0,
                60.0,
                120.0,
            ),
        )
        self._transactions = {
            (method, kind): self.transactions.labels(label, kind)
            for method, label in [*_METHOD_LABELS.items(), (b"", "OTHER")]
            for kind in TRANSACTION_KINDS
        }
        self.internal_errors = Counter(
            "sipmesh_edge_internal_errors",
            "Messages whose handling raised an unexpected exception (a bug; logged)",
            registry=registry,
        )

    def request(self, method: bytes) -> None:
        """Count a new request."""
        self.requests.labels(_METHOD_LABELS.get(method, "OTHER")).inc()

    def response(self, status: int) -> None:
        """Count a response sent."""
        self.responses.labels(f"{status // 100}xx").inc()

    def transaction(self, method: bytes, kind: str, seconds: float) -> None:
        """Observe one server transaction's time to its final response."""
        child = self._transactions.get((method if method in _METHOD_LABELS else b"", kind))
        if child is None:  # a kind outside TRANSACTION_KINDS: a caller bug, still counted
            child = self.transactions.labels(_METHOD_LABELS.get(method, "OTHER"), kind)
        child.observe(seconds)
