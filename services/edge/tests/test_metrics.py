"""EdgeMetrics: the per-message series print what prometheus-client's would (minus _created)."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sipmesh_edge.core import SUPPORTED_METHODS
from sipmesh_edge.metrics import _BUS_BUCKETS, _TRANSACTION_BUCKETS, TRANSACTION_KINDS, EdgeMetrics

_HOT = (
    "sipmesh_edge_requests",
    "sipmesh_edge_responses_sent",
    "sipmesh_edge_retransmissions_absorbed",
    "sipmesh_edge_bus_round_trip_seconds",
    "sipmesh_edge_transaction_seconds",
)


def _hot_text(registry: CollectorRegistry) -> str:
    """The exposition of the per-message families, without _created lines."""
    lines = generate_latest(registry).decode().splitlines(keepends=True)
    keep = [line for line in lines if any(name in line for name in _HOT)]
    return "".join(line for line in keep if not re.search(r"_created[{ ]", line))


def _update(metrics: EdgeMetrics) -> None:
    metrics.request(b"REGISTER")
    metrics.request(b"REGISTER")
    metrics.request(b"FOO")
    metrics.response(401)  # a 4xx first: the exposition still lists 2xx first
    metrics.response(200)
    metrics.response(603)
    metrics.retransmission()
    metrics.bus_round_trip(0.0005)  # on a bound: counted in that bucket ("le")
    metrics.bus_round_trip(3.0)  # above the last bound: +Inf only
    metrics.transaction(b"REGISTER", "service", 0.004)
    metrics.transaction(b"FOO", "local", 0.0001)
    metrics.transaction(b"INVITE", "odd", 200.0)  # a kind outside TRANSACTION_KINDS


def _reference(registry: CollectorRegistry) -> None:
    """The same updates on prometheus-client metrics of the same names, in the same label order."""
    methods = [m.decode() for m in SUPPORTED_METHODS]
    requests = Counter(
        "sipmesh_edge_requests",
        "New requests received, by method (unknown methods count as OTHER)",
        ["method"],
        registry=registry,
    )
    for label in [*methods, "OTHER"]:
        requests.labels(label)
    responses = Counter(
        "sipmesh_edge_responses_sent",
        "Responses the edge sent (not retransmissions), by class: 1xx ... 6xx",
        ["status_class"],
        registry=registry,
    )
    retransmissions = Counter(
        "sipmesh_edge_retransmissions_absorbed",
        "Requests matched to an existing server transaction (never sent to the bus again)",
        registry=registry,
    )
    bus = Histogram(
        "sipmesh_edge_bus_round_trip_seconds",
        "From publishing a request on NATS to its reply",
        registry=registry,
        buckets=_BUS_BUCKETS,
    )
    transactions = Histogram(
        "sipmesh_edge_transaction_seconds",
        "Server transactions: request received to final response sent, by method and kind"
        " (local, service, proxied; a proxied INVITE includes the callee's answer time)",
        ["method", "kind"],
        registry=registry,
        buckets=_TRANSACTION_BUCKETS,
    )
    for label in [*methods, "OTHER"]:
        for kind in TRANSACTION_KINDS:
            transactions.labels(label, kind)
    requests.labels("REGISTER").inc(2)
    requests.labels("OTHER").inc()
    responses.labels("2xx").inc()
    responses.labels("4xx").inc()
    responses.labels("6xx").inc()
    retransmissions.inc()
    bus.observe(0.0005)
    bus.observe(3.0)
    transactions.labels("REGISTER", "service").observe(0.004)
    transactions.labels("OTHER", "local").observe(0.0001)
    transactions.labels("INVITE", "odd").observe(200.0)


def test_exposition_is_prometheus_clients_minus_created() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    _update(EdgeMetrics(ours))
    _reference(theirs)
    assert _hot_text(ours) == _hot_text(theirs)
    assert (
        "_created"
        not in _hot_text(CollectorRegistry())
        + generate_latest(ours).decode().split("sipmesh_edge_parse_errors")[0]
    )


def test_values_and_absent_classes() -> None:
    registry = CollectorRegistry()
    metrics = EdgeMetrics(registry)
    get = registry.get_sample_value
    assert get("sipmesh_edge_requests_total", {"method": "OTHER"}) == 0
    assert get("sipmesh_edge_responses_sent_total", {"status_class": "2xx"}) is None
    _update(metrics)
    metrics.response(699)
    assert get("sipmesh_edge_requests_total", {"method": "REGISTER"}) == 2
    assert get("sipmesh_edge_requests_total", {"method": "OTHER"}) == 1
    assert get("sipmesh_edge_responses_sent_total", {"status_class": "6xx"}) == 2
    assert get("sipmesh_edge_responses_sent_total", {"status_class": "1xx"}) is None
    assert get("sipmesh_edge_retransmissions_absorbed_total") == 1
    assert get("sipmesh_edge_bus_round_trip_seconds_bucket", {"le": "0.0005"}) == 1
    assert get("sipmesh_edge_bus_round_trip_seconds_bucket", {"le": "2.5"}) == 1
    assert get("sipmesh_edge_bus_round_trip_seconds_count") == 2
    labels = {"method": "OTHER", "kind": "local"}
    assert get("sipmesh_edge_transaction_seconds_count", labels) == 1
    assert get("sipmesh_edge_transaction_seconds_sum", {"method": "INVITE", "kind": "odd"}) == 200.0
