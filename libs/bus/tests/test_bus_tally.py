"""Lock-free counters and histograms (tally.py): same exposition as prometheus-client's."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sipmesh_router.tally import TallyCounter, TallyHistogram

BUCKETS = (0.0005, 0.001, 0.01, 1.0, 60.0, 2_500_000.0)


def _lines(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_tally_exposes_what_prometheus_client_exposes_for_the_same_updates() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = TallyCounter("x_events", "Events", ["kind", "outcome"], registry=ours)
    histogram = TallyHistogram("x_seconds", "Time", ["method"], registry=ours, buckets=BUCKETS)
    ref_counter = Counter("x_events", "Events", ["kind", "outcome"], registry=theirs)
    ref_histogram = Histogram("x_seconds", "Time", ["method"], registry=theirs, buckets=BUCKETS)
    for kind, amount in (("a", 1.0), ("b", 2.5), ("a", 1.0)):
        counter.labels(kind, "ok").inc(amount)
        ref_counter.labels(kind, "ok").inc(amount)
    # On a bound, just above it, beyond the last bound, and zero.
    for value in (0.0005, 0.00051, 0.0, 7.0, 3e6, 0.01):
        histogram.labels("INVITE").observe(value)
        ref_histogram.labels("INVITE").observe(value)
    histogram.labels("BYE")  # created empty, as labels() does there
    ref_histogram.labels("BYE")
    assert _lines(ours) == _lines(theirs)


def test_tally_series_exist_at_zero_once_labelled() -> None:
    registry = CollectorRegistry()
    counter = TallyCounter("y_total_things", "Things", ["outcome"], registry=registry)
    counter.labels("ok")
    assert registry.get_sample_value("y_total_things_total", {"outcome": "ok"}) == 0
    assert counter.labels("ok") is counter.labels("ok")


def test_tally_refuses_what_prometheus_client_refuses() -> None:
    registry = CollectorRegistry()
    counter = TallyCounter("z", "Z", ["a", "b"], registry=registry)
    with pytest.raises(ValueError, match="2 label values"):
        counter.labels("only-one")
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("1", "2").inc(-1)
    with pytest.raises(ValueError, match="increase"):
        TallyHistogram("h", "H", [], registry=registry, buckets=(1.0, 0.5))
