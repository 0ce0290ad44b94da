"""sipmesh_bus.requeststats: the same samples prometheus-client's Counter/Histogram give."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sipmesh_bus.requeststats import BUCKETS, RequestStats

RECORDS = [
    (b"sip.route", "ok", 0.0004),
    (b"sip.route", "ok", 0.0005),  # on a bound: counted in that bucket (le)
    (b"sip.route", "error", 0.003),
    (b"sip.register", "ok", 7.0),  # over the last bound: +Inf only
    (b"sip.route", "bad_request", 0.0),
]


def _reference() -> CollectorRegistry:
    registry = CollectorRegistry()
    count = Counter("sipmesh_bus_requests", "x", ["subject", "outcome"], registry=registry)
    latency = Histogram(
        "sipmesh_bus_request_duration_seconds",
        "x",
        ["subject"],
        registry=registry,
        buckets=BUCKETS,
    )
    for subject, outcome, seconds in RECORDS:
        count.labels(subject.decode(), outcome).inc()
        latency.labels(subject.decode()).observe(seconds)
    return registry


def _ours() -> CollectorRegistry:
    registry = CollectorRegistry()
    stats = RequestStats(registry)
    for subject, outcome, seconds in RECORDS:
        stats.record(subject, outcome, seconds)
    return registry


@pytest.mark.parametrize("bound", [*map(str, BUCKETS), "+Inf"])
@pytest.mark.parametrize("subject", ["sip.route", "sip.register"])
def test_requeststats_buckets_match_prometheus_client(subject: str, bound: str) -> None:
    name = "sipmesh_bus_request_duration_seconds_bucket"
    labels = {"subject": subject, "le": bound}
    assert _ours().get_sample_value(name, labels) == _reference().get_sample_value(name, labels)


def test_requeststats_counts_and_sums_match_prometheus_client() -> None:
    ours, ref = _ours(), _reference()
    for subject in ("sip.route", "sip.register"):
        for suffix in ("count", "sum"):
            name = f"sipmesh_bus_request_duration_seconds_{suffix}"
            got = ours.get_sample_value(name, {"subject": subject})
            assert got == pytest.approx(ref.get_sample_value(name, {"subject": subject}))
        for outcome in ("ok", "error", "bad_request"):
            labels = {"subject": subject, "outcome": outcome}
            name = "sipmesh_bus_requests_total"
            assert ours.get_sample_value(name, labels) == ref.get_sample_value(name, labels)
    assert (
        ours.get_sample_value(
            "sipmesh_bus_requests_total", {"subject": "sip.route", "outcome": "ok"}
        )
        == 2
    )


def test_requeststats_exposition_has_types_and_help() -> None:
    text = generate_latest(_ours()).decode()
    assert "# TYPE sipmesh_bus_requests_total counter" in text
    assert "# TYPE sipmesh_bus_request_duration_seconds histogram" in text
    assert 'sipmesh_bus_request_duration_seconds_bucket{le="+Inf",subject="sip.route"} 4.0' in text
