"""The router's metrics (metrics.py): known series, what a decision counts, destinations up."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from sipmesh_bus import routing
from sipmesh_bus.routing import Health, RoutingSnapshot
from sipmesh_bus.schema import CallEvent, CallEventKind, Drop
from sipmesh_router.metrics import (
    DestinationsUp,
    RouterMetrics,
    destination_states,
    method_label,
    route_of,
)
from sipmesh_router.model import Decision

NOW = 1_700_000_000.0


def event(kind: CallEventKind, **kw: str) -> CallEvent:
    return CallEvent(kind=kind, event_id=f"id.{kind}", call_id="c", at=NOW, **kw)  # type: ignore[arg-type]


def decision(outcome: str, *events: CallEvent, setup: float | None = None) -> Decision:
    return Decision(reply=Drop(reason="x"), outcome=outcome, events=events, setup_seconds=setup)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_metrics_known_series_exist_before_any_call() -> None:
    registry = CollectorRegistry()
    RouterMetrics(registry)
    for route in ("user", "dispatcher", "lcr"):
        assert sample(registry, "sipmesh_router_call_attempts_total", route=route) == 0
        assert sample(registry, "sipmesh_router_call_answers_total", route=route) == 0
        assert sample(registry, "sipmesh_router_call_setup_seconds_count", route=route) == 0
    for kind in ("attempt", "ringing", "answered", "failed", "ended"):
        for outcome in ("ok", "error"):
            labels = {"kind": kind, "outcome": outcome}
            assert sample(registry, "sipmesh_router_call_events_total", **labels) == 0
    assert sample(registry, "sipmesh_router_handling_seconds_count", method="INVITE") == 0
    assert sample(registry, "sipmesh_router_handling_seconds_count", method="response") == 0
    assert sample(registry, "sipmesh_router_decisions_total", outcome="forward") == 0
    assert (
        sample(registry, "sipmesh_router_media_requests_total", command="offer", outcome="ok") == 0
    )
    assert sample(registry, "sipmesh_router_calls_active") == 0


@pytest.mark.parametrize(
    ("fields", "route"),
    [
        pytest.param({}, "user", id="registered-phone"),
        pytest.param({"dispatcher_set": "pbx"}, "dispatcher", id="dispatcher"),
        pytest.param({"carrier": "cheap", "gateway": "gw1"}, "lcr", id="lcr"),
        pytest.param({"gateway": "gw1"}, "lcr", id="lcr-gateway-only"),
    ],
)
def test_route_of(fields: dict[str, str], route: str) -> None:
    assert route_of(event("attempt", **fields)) == route


@pytest.mark.parametrize(
    ("method", "label"),
    [(b"INVITE", "INVITE"), (b"BYE", "BYE"), (b"FOOBAR", "OTHER"), (None, "response")],
)
def test_method_label(method: bytes | None, label: str) -> None:
    assert method_label(method) == label


def test_metrics_decided_counts_calls_answers_setup_and_carriers() -> None:
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    lcr = {"carrier": "cheap", "gateway": "gw1"}
    metrics.decided(decision("forward", event("attempt", **lcr)), method=b"INVITE", seconds=0.002)
    backup = {"carrier": "backup", "gateway": "gw9"}
    failover = decision("failover_500", event("attempt", **backup))
    metrics.decided(failover, method=None, seconds=0.001)
    answered = decision("answered", event("answered", **backup), setup=4.0)
    metrics.decided(answered, method=None, seconds=0.001)
    metrics.decided(decision("provisional", event("ringing", **backup)), method=None, seconds=0)
    assert sample(registry, "sipmesh_router_call_attempts_total", route="lcr") == 1  # one call
    assert sample(registry, "sipmesh_router_call_answers_total", route="lcr") == 1
    assert sample(registry, "sipmesh_router_call_setup_seconds_sum", route="lcr") == 4.0
    assert sample(registry, "sipmesh_router_call_setup_seconds_bucket", route="lcr", le="3.0") == 0
    assert sample(registry, "sipmesh_router_call_setup_seconds_bucket", route="lcr", le="5.0") == 1
    carriers = "sipmesh_router_lcr_carrier_attempts_total"
    assert sample(registry, carriers, carrier="cheap", gateway="gw1") == 1
    assert sample(registry, carriers, carrier="backup", gateway="gw9") == 1
    assert sample(registry, "sipmesh_router_decisions_total", outcome="failover_500") == 1
    assert sample(registry, "sipmesh_router_handling_seconds_count", method="INVITE") == 1
    assert sample(registry, "sipmesh_router_handling_seconds_count", method="response") == 3
    assert sample(registry, "sipmesh_router_call_attempts_total", route="user") == 0


def test_metrics_answer_without_setup_time_counts_the_answer_only() -> None:
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    metrics.decided(decision("answered", event("answered")), method=None, seconds=0)
    assert sample(registry, "sipmesh_router_call_answers_total", route="user") == 1
    assert sample(registry, "sipmesh_router_call_setup_seconds_count", route="user") == 0


def _snapshot() -> RoutingSnapshot:
    snapshot = RoutingSnapshot()
    dests = [
        routing.Destination(uri="sip:10.0.0.1", host="10.0.0.1"),
        routing.Destination(uri="sip:10.0.0.2", host="10.0.0.2", port=5080, transport="tcp"),
        routing.Destination(uri="sip:[2001:db8::3]", host="2001:db8::3"),
    ]
    pool = routing.DispatcherSet(id="pbx", destinations=dests)
    snapshot.apply(routing.set_key("pbx"), routing.encode_record(pool))
    gw = routing.Gateway(id="gw1", carrier="cheap", host="198.18.0.10")
    snapshot.apply(routing.gateway_key("gw1"), routing.encode_record(gw))
    return snapshot


def test_destination_states_follow_fresh_health_only() -> None:
    health = {
        routing.health_key("udp", "10.0.0.1", 5060): Health(
            up=False, checked_at=NOW - 5, since=NOW - 60
        ),
        routing.health_key("tcp", "10.0.0.2", 5080): Health(
            up=False, checked_at=NOW - 3600, since=NOW - 7200
        ),
    }
    assert destination_states(_snapshot(), health, NOW) == [
        ("pbx", "10.0.0.1:5060", "udp", False),  # fresh "down"
        ("pbx", "10.0.0.2:5080", "tcp", True),  # a stale verdict does not count
        ("pbx", "[2001:db8::3]:5060", "udp", True),  # never probed
    ]


def test_destinations_up_collected_at_scrape_time() -> None:
    registry = CollectorRegistry()
    snapshot = _snapshot()
    health: dict[str, Health] = {}
    registry.register(DestinationsUp(lambda: destination_states(snapshot, health, NOW)))
    name = "sipmesh_router_dispatcher_destination_up"
    labels = {"set": "pbx", "destination": "10.0.0.1:5060", "transport": "udp"}
    assert registry.get_sample_value(name, labels) == 1
    health[routing.health_key("udp", "10.0.0.1", 5060)] = Health(
        up=False, checked_at=NOW, since=NOW
    )
    assert registry.get_sample_value(name, labels) == 0
    snapshot.apply(routing.set_key("pbx"), None)
    assert registry.get_sample_value(name, labels) is None


def test_metrics_known_gateways_get_carrier_series() -> None:
    registry = CollectorRegistry()
    RouterMetrics(registry).known_gateways(_snapshot())
    labels = {"carrier": "cheap", "gateway": "gw1"}
    assert registry.get_sample_value("sipmesh_router_lcr_carrier_attempts_total", labels) == 0
