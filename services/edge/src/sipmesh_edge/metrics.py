"""The edge's Prometheus metrics, built against an injected registry.

The series every message touches (requests, responses, retransmissions, the
bus round trip, the transaction times) are :mod:`sipmesh_bus.tally` families:
plain numbers in slotted children, turned into metric families at scrape time.
A ``Counter.labels(...).inc()`` costs about 2.5 µs (label lookup, a lock), a
child's ``value += 1`` well under 0.1 µs, and a REGISTER used to pay four of
them. :class:`EdgeMetrics` keeps the children in byte-keyed tables so the hot
path never builds a label tuple. The exposition is prometheus-client's for
these series minus the ``_created`` samples. The rare series stay ordinary
prometheus-client metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import Metric

from sipmesh_bus.tally import CounterChild, CounterFamily, HistogramChild, HistogramFamily
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


class _ClassCounter(CounterFamily):
    """Responses by status class: a series per class from the start, exposed once non-zero.

    Every class has its child at start-up, so counting is one list index and
    no check; a class with nothing sent yet is left out of the exposition, so
    a 6xx series appears with the first 6xx, as a labelled counter's would.
    """

    def collect(self) -> Iterator[Metric]:
        """The family without its zero samples."""
        for family in super().collect():
            family.samples = [sample for sample in family.samples if sample.value]
            yield family


class EdgeMetrics:
    """Counters and histograms of the edge (names start with ``sipmesh_edge_``).

    Args:
        registry: where to register (a fresh ``CollectorRegistry()`` in tests).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        # Registered in this order, which is the order of the exposition.
        requests = CounterFamily(
            "sipmesh_edge_requests",
            "New requests received, by method (unknown methods count as OTHER)",
            ["method"],
            registry=registry,
        )
        self._requests: dict[bytes, CounterChild] = {
            method: requests.labels(label) for method, label in _METHOD_LABELS.items()
        }
        self._other_requests = requests.labels("OTHER")
        self._responses_sent = _ClassCounter(
            "sipmesh_edge_responses_sent",
            "Responses the edge sent (not retransmissions), by class: 1xx ... 6xx",
            ["status_class"],
            registry=registry,
        )
        self._responses = [self._responses_sent.labels(f"{cls}xx") for cls in range(10)]
        #: Per status // 100.
        self._retransmissions = CounterFamily(
            "sipmesh_edge_retransmissions_absorbed",
            "Requests matched to an existing server transaction (never sent to the bus again)",
            [],
            registry=registry,
        ).labels()
        self._bus = HistogramFamily(
            "sipmesh_edge_bus_round_trip_seconds",
            "From publishing a request on NATS to its reply",
            [],
            registry=registry,
            buckets=_BUS_BUCKETS,
        ).labels()
        self.bus_round_trip: Callable[[float], None] = self._bus.observe
        """Observe one NATS request's time to its reply (in seconds).

        The histogram child's own method, not a wrapper: one Python call less per reply.
        """
        self._transaction_family = HistogramFamily(
            "sipmesh_edge_transaction_seconds",
            "Server transactions: request received to final response sent, by method and kind"
            " (local, service, proxied; a proxied INVITE includes the callee's answer time)",
            ["method", "kind"],
            registry=registry,
            buckets=_TRANSACTION_BUCKETS,
        )
        self._transactions: dict[tuple[bytes, str], HistogramChild] = {
            (method, kind): self._transaction_family.labels(label, kind)
            for method, label in [*_METHOD_LABELS.items(), (b"", "OTHER")]
            for kind in TRANSACTION_KINDS
        }
        #: By (method, kind); b"" is OTHER (unknown methods take the slow path).
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
        self.handoffs = Counter(
            "sipmesh_edge_handoffs",
            "Messages handed over to another edge on the bus, by what: send (a target"
            " whose connection or NAT binding is there), response (one of its transactions')",
            ["what"],
            registry=registry,
        )
        self.internal_errors = Counter(
            "sipmesh_edge_internal_errors",
            "Messages whose handling raised an unexpected exception (a bug; logged)",
            registry=registry,
        )

    def request(self, method: bytes) -> None:
        """Count a new request."""
        self._requests.get(method, self._other_requests).value += 1

    def response(self, status: int) -> None:
        """Count a response sent (100-699)."""
        self._responses[status // 100 % 10].value += 1

    def retransmission(self) -> None:
        """Count a request retransmission absorbed by its server transaction."""
        self._retransmissions.value += 1

    def transaction(self, method: bytes, kind: str, seconds: float) -> None:
        """Observe one server transaction's time to its final response."""
        series = self._transactions.get((method, kind))
        if series is None:  # an unknown method, or a kind outside TRANSACTION_KINDS (a caller bug)
            series = self._transaction_family.labels(_METHOD_LABELS.get(method, "OTHER"), kind)
        series.observe(seconds)
