"""The registrar's per-REGISTER metrics, as a scrape sees them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sipmesh_registrar.metrics import LATENCY_BUCKETS, RegistrarMetrics


def test_registrar_metrics_results_are_counted_by_label() -> None:
    registry = CollectorRegistry()
    metrics = RegistrarMetrics(registry)
    ok = metrics.result("ok")
    ok.inc()
    ok.inc()
    metrics.registrations.labels("challenge").inc()
    assert metrics.result("ok") is ok
    sample = registry.get_sample_value
    assert sample("sipmesh_registrar_registrations_total", {"result": "ok"}) == 2
    assert sample("sipmesh_registrar_registrations_total", {"result": "challenge"}) == 1
    assert sample("sipmesh_registrar_registrations_total", {"result": "query"}) is None


def test_registrar_metrics_latency_is_a_cumulative_histogram() -> None:
    registry = CollectorRegistry()
    metrics = RegistrarMetrics(registry)
    for seconds in (0.0002, 0.0005, 0.003, 2.0):
        metrics.latency.observe(seconds)
    sample = registry.get_sample_value
    name = "sipmesh_registrar_handling_seconds"
    # Upper bounds are inclusive (le), as prometheus-client's Histogram has them.
    assert sample(f"{name}_bucket", {"le": "0.0005"}) == 2
    assert sample(f"{name}_bucket", {"le": "0.0025"}) == 2
    assert sample(f"{name}_bucket", {"le": "0.005"}) == 3
    assert sample(f"{name}_bucket", {"le": "1.0"}) == 3
    assert sample(f"{name}_bucket", {"le": "+Inf"}) == 4
    assert sample(f"{name}_count") == 4
    assert sample(f"{name}_sum") == 0.0002 + 0.0005 + 0.003 + 2.0


def test_registrar_metrics_exposition_keeps_the_names_and_help() -> None:
    registry = CollectorRegistry()
    RegistrarMetrics(registry).result("ok").inc()
    text = generate_latest(registry).decode()
    assert "# TYPE sipmesh_registrar_registrations_total counter" in text
    assert 'sipmesh_registrar_registrations_total{result="ok"} 1.0' in text
    assert "# TYPE sipmesh_registrar_handling_seconds histogram" in text
    assert "# HELP sipmesh_registrar_handling_seconds Time to answer one REGISTER" in text


def test_registrar_metrics_hot_families_expose_what_prometheus_client_would() -> None:
    """The tally families print as a Counter and a Histogram of the same name, help, buckets."""
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    metrics = RegistrarMetrics(ours)
    results = Counter(
        "sipmesh_registrar_registrations",
        "REGISTER requests answered, by result (ok, query, challenge, auth_failed, ...)",
        ["result"],
        registry=theirs,
    )
    latency = Histogram(
        "sipmesh_registrar_handling_seconds",
        "Time to answer one REGISTER, KV round trips included",
        registry=theirs,
        buckets=LATENCY_BUCKETS,
    )
    for result, seconds in (("ok", 0.0004), ("challenge", 0.001), ("ok", 3.0)):
        metrics.result(result).inc()
        metrics.latency.observe(seconds)
        results.labels(result).inc()
        latency.observe(seconds)
    names = ("sipmesh_registrar_registrations", "sipmesh_registrar_handling_seconds")

    def hot_lines(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return [
            line
            for line in text.splitlines()
            if any(name in line for name in names) and "_created" not in line
        ]

    assert len(hot_lines(ours)) == 4 + 2 + 12 + 2  # HELP/TYPE, 2 counts, 12 buckets, count/sum
    assert hot_lines(ours) == hot_lines(theirs)
