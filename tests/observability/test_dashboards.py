"""The dashboards as code: exported JSON is current, fits the SDK model, PromQL parses.

Offline checks (no Prometheus server): ``test_e2e_prometheus.py`` evaluates the
same expressions against a real Prometheus scraping a running sipmesh.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.observability._support import (
    GENERIC_LABELS,
    REPO,
    documented_labels,
    legend_labels,
    load_dashboards,
    metric_names,
    promtool,
    query_labels,
    series_name,
)

dashboards = load_dashboards()
SPECS = dashboards.DASHBOARDS
NAMES = [spec.name for spec in SPECS]


def _exported(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((dashboards.OUT_DIR / f"{name}.json").read_text())
    return data


def _panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = data["panels"]
    return panels


def _rules_file(path: Path, exprs: Iterable[str]) -> Path:
    rules = [{"record": f"sipmesh:dashboard_expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    return path


def _promtool_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dashboards_every_issue_dashboard_is_there() -> None:
    assert NAMES == ["overview", "edge", "registrar", "router", "media", "cdr"]
    assert len({spec.uid for spec in SPECS}) == len(SPECS)


def test_dashboards_check_mode_passes_on_the_committed_json() -> None:
    assert dashboards.main(["--check"]) == 0


def test_dashboards_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    assert dashboards.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.json" for n in NAMES)
    assert dashboards.main(["--check", "--out", str(tmp_path)]) == 0
    edge = tmp_path / "edge.json"
    edge.write_text(edge.read_text().replace("Requests by method", "Requests"))
    assert dashboards.main(["--check", "--out", str(tmp_path)]) == 1
    (tmp_path / "cdr.json").unlink()
    assert dashboards.main(["--check", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("name", NAMES)
def test_dashboards_json_round_trips_through_the_sdk_model(name: str) -> None:
    data = _exported(name)
    model = Dashboard.from_json(data)
    again = json.loads(json.dumps(model, cls=JSONEncoder))
    assert again == data
    assert model.title is not None
    assert model.title.startswith("sipmesh / ")


@pytest.mark.parametrize("name", NAMES)
def test_dashboards_panels_have_ids_datasource_and_targets(name: str) -> None:
    panels = _panels(_exported(name))
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, int) and i > 0 for i in ids)
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["type"] in ("timeseries", "stat")
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert [t["refId"] for t in panel["targets"]] == [
            "ABCDEFGH"[i] for i in range(len(panel["targets"]))
        ]


@pytest.mark.parametrize("name", NAMES)
def test_dashboards_json_holds_exactly_the_spec_queries(name: str) -> None:
    (spec,) = [s for s in SPECS if s.name == name]
    exported = [t["expr"] for p in _panels(_exported(name)) for t in p.get("targets", [])]
    assert exported == [q.expr for q in spec.queries()]


def test_dashboards_every_expression_passes_promtool(tmp_path: Path) -> None:
    exprs = [dashboards.concrete(q.expr) for spec in SPECS for q in spec.queries()]
    done = _promtool_rules(_rules_file(tmp_path / "dashboards.rules.yml", exprs))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


def test_dashboards_promtool_check_catches_a_broken_expression(tmp_path: Path) -> None:
    done = _promtool_rules(_rules_file(tmp_path / "bad.rules.yml", ["sum(rate(x[1m])"]))
    assert done.returncode != 0
    assert "unclosed left parenthesis" in done.stdout + done.stderr


def test_dashboards_concrete_replaces_the_grafana_rate_interval() -> None:
    expr = "sum(rate(a_total[$__rate_interval])) / sum(rate(b_total[$__rate_interval]))"
    assert dashboards.concrete(expr, "30s") == "sum(rate(a_total[30s])) / sum(rate(b_total[30s]))"


def test_dashboards_every_metric_is_in_the_metrics_reference() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    used = {series_name(n) for s in SPECS for q in s.queries() for n in metric_names(q.expr)}
    assert used, "no metric names found in the dashboards"
    missing = sorted(n for n in used if f"`{n}`" not in doc and n != "up")
    assert missing == []


def _undocumented_labels(expr: str, legend: str, doc: dict[str, set[str]]) -> set[str]:
    known = set(GENERIC_LABELS)
    for name in metric_names(expr):
        known |= doc.get(name, doc.get(series_name(name), set()))
    return (query_labels(expr) | legend_labels(legend)) - known


def test_dashboards_every_label_is_a_label_of_its_metrics() -> None:
    # A panel grouping by a label its metric does not have is not an error in
    # PromQL: it silently shows one series without the label (the router's
    # `result` label renamed to `outcome` left such panels behind).
    doc = documented_labels((REPO / "docs" / "metrics.md").read_text())
    wrong = [
        (spec.name, q.expr, sorted(bad))
        for spec in SPECS
        for q in spec.queries()
        if (bad := _undocumented_labels(q.expr, q.legend, doc))
    ]
    assert wrong == []


def test_dashboards_label_check_catches_a_renamed_label() -> None:
    doc = documented_labels((REPO / "docs" / "metrics.md").read_text())
    expr = 'sum by (kind, result) (rate(sipmesh_router_call_events_total{result="error"}[1m]))'
    assert _undocumented_labels(expr, "{{kind}} {{result}}", doc) == {"result"}
    assert _undocumented_labels(expr.replace("result", "outcome"), "{{kind}}", doc) == set()
    assert _undocumented_labels("sum(up)", "{{route}}", doc) == {"route"}


def test_dashboards_router_panels_cover_the_call_metrics() -> None:
    (router,) = [s for s in SPECS if s.name == "router"]
    (overview,) = [s for s in SPECS if s.name == "overview"]
    for spec in (router, overview):
        used = {series_name(n) for q in spec.queries() for n in metric_names(q.expr)}
        assert {
            "sipmesh_router_calls_active",
            "sipmesh_router_call_attempts_total",
            "sipmesh_router_call_answers_total",
            "sipmesh_router_dispatcher_destination_up",
        } <= used, spec.name
    used = {series_name(n) for q in router.queries() for n in metric_names(q.expr)}
    assert {
        "sipmesh_router_call_setup_seconds",
        "sipmesh_router_lcr_carrier_attempts_total",
        "sipmesh_router_handling_seconds",
        "sipmesh_router_media_requests_total",
    } <= used
    setup = [q for q in router.queries() if "call_setup_seconds" in q.expr]
    assert [q.legend for q in setup] == ["{{route}} p50", "{{route}} p95"]


def test_dashboards_destination_panel_maps_up_and_down() -> None:
    (panel,) = [p for p in _panels(_exported("router")) if p["title"] == "Dispatcher destinations"]
    assert panel["type"] == "stat"
    assert panel["options"]["colorMode"] == "background"
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    assert mapping["type"] == "value"
    assert {v: (m["text"], m["color"]) for v, m in mapping["options"].items()} == {
        "0": ("down", "red"),
        "1": ("up", "green"),
    }


def test__metric_names_finds_names_in_selectors_ranges_and_comparisons() -> None:
    expr = (
        'count(up{job=~"sipmesh-.*"} == 0) + sum(rate(sipmesh_a_total[1m]))'
        " + max(sipmesh_b) + count(sipmesh_c == 0)"
    )
    assert metric_names(expr) == {"up", "sipmesh_a_total", "sipmesh_b", "sipmesh_c"}
    assert series_name("sipmesh_edge_bus_round_trip_seconds_bucket") == (
        "sipmesh_edge_bus_round_trip_seconds"
    )


def test__query_labels_reads_groupings_and_matchers() -> None:
    expr = (
        'count by (set) (max by (set, destination) (x{a="1", b!~"2"}) == 0)'
        ' + sum without (c) (rate(y{job=~"s-.*"}[$__rate_interval]))'
    )
    assert query_labels(expr) == {"set", "destination", "a", "b", "c", "job"}
    assert legend_labels("{{ route }} p95 {{method}}") == {"route", "method"}


def test__documented_labels_skips_values_in_parentheses() -> None:
    doc = (
        "| Name | Type | Labels | Meaning |\n|---|---|---|---|\n"
        "| `m_total` | counter | `kind` (`a`, `b (c)`), `outcome` (`ok`) | x |\n"
        "| `p_a`, `p_b` | | | y |\n"
    )
    assert documented_labels(doc) == {"m_total": {"kind", "outcome"}, "p_a": set(), "p_b": set()}
