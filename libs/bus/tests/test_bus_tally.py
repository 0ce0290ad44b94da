"""sipmesh_bus.tally: lock-free families with the exposition prometheus-client gives."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sipmesh_bus.tally import CounterFamily, HistogramFamily

BUCKETS = (0.0005, 0.001, 0.01, 1.0, 60.0, 2_500_000.0)
#: Small, integral and huge bounds: the ``le`` strings are prometheus-client's
#: (2500000.0 is written "2.5e+06", as Go would).


def _lines(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_tally_exposes_what_prometheus_client_exposes_for_the_same_updates() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = CounterFamily("x_events", "Events", ["kind", "outcome"], registry=ours)
    histogram = HistogramFamily("x_seconds", "Time", ["method"], registry=ours, buckets=BUCKETS)
    ref_counter = Counter("x_events", "Events", ["kind", "outcome"], registry=theirs)
    ref_histogram = Histogram("x_seconds", "Time", ["method"], registry=theirs, buckets=BUCKETS)
    for kind, amount in (("a", 1.0), ("b", 2.5), ("a", 1.0)):
        counter.labels(kind, "ok").add(amount)
        ref_counter.labels(kind, "ok").inc(amount)
    counter.labels("c", "error").inc()
    ref_counter.labels("c", "error").inc()
    # On a bound, just above it, beyond the last bound, and zero.
    for value in (0.0005, 0.00051, 0.0, 7.0, 3e6, 0.01):
        histogram.labels("INVITE").observe(value)
        ref_histogram.labels("INVITE").observe(value)
    histogram.labels("BYE")  # created empty, as labels() does there
    ref_histogram.labels("BYE")
    assert 'le="2.5e+06"' in "\n".join(_lines(ours))
    assert _lines(ours) == _lines(theirs)


def test_tally_unlabelled_families_expose_their_series_from_the_start() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    CounterFamily("u_retries_total", "Retries", [], registry=ours)
    HistogramFamily("u_seconds", "Time", (), registry=ours, buckets=(0.1, 1.0, float("inf")))
    Counter("u_retries_total", "Retries", registry=theirs)
    Histogram("u_seconds", "Time", registry=theirs, buckets=(0.1, 1.0, float("inf")))
    assert _lines(ours) == _lines(theirs)
    assert ours.get_sample_value("u_seconds_bucket", {"le": "+Inf"}) == 0


def test_tally_unlabelled_series_is_the_one_labels_returns() -> None:
    registry = CollectorRegistry()
    latency = HistogramFamily("v_seconds", "Time", [], registry=registry, buckets=(1.0,))
    latency.labels().observe(0.5)
    latency.labels().observe(2.0)
    assert registry.get_sample_value("v_seconds_bucket", {"le": "1.0"}) == 1
    assert registry.get_sample_value("v_seconds_count") == 2
    assert registry.get_sample_value("v_seconds_sum") == 2.5


def test_tally_series_exist_at_zero_once_labelled() -> None:
    registry = CollectorRegistry()
    counter = CounterFamily("y_total_things", "Things", ["outcome"], registry=registry)
    assert registry.get_sample_value("y_total_things_total", {"outcome": "ok"}) is None
    counter.labels("ok")
    assert registry.get_sample_value("y_total_things_total", {"outcome": "ok"}) == 0
    assert counter.labels("ok") is counter.labels("ok")
    counter.labels("ok").inc()
    assert registry.get_sample_value("y_total_things_total", {"outcome": "ok"}) == 1


def test_tally_refuses_what_prometheus_client_refuses() -> None:
    registry = CollectorRegistry()
    counter = CounterFamily("z", "Z", ["a", "b"], registry=registry)
    with pytest.raises(ValueError, match="2 label values"):
        counter.labels("only-one")
    child = counter.labels("1", "2")
    with pytest.raises(ValueError, match="only goes up"):
        child.add(-1)
    assert child.value == 0
    with pytest.raises(ValueError, match="increase"):
        HistogramFamily("h", "H", [], registry=registry, buckets=(1.0, 0.5))
    with pytest.raises(ValueError, match="increase"):
        HistogramFamily("h", "H", [], registry=registry, buckets=(1.0, 1.0))


def test_tally_registry_refuses_a_second_family_of_a_name() -> None:
    registry = CollectorRegistry()
    CounterFamily("dup", "D", [], registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        CounterFamily("dup_total", "D", [], registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("dup", "D", registry=registry)
    HistogramFamily("hist", "H", [], registry=registry, buckets=(1.0,))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram("hist", "H", registry=registry)
