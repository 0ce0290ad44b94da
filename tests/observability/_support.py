"""Shared helpers of the observability tests: the dashboards module and PromQL names."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Final

__all__ = [
    "DASHBOARDS_PY",
    "GENERIC_LABELS",
    "REPO",
    "documented_labels",
    "legend_labels",
    "load_dashboards",
    "metric_names",
    "promtool",
    "query_labels",
    "series_name",
]

REPO: Final = Path(__file__).resolve().parents[2]
DASHBOARDS_PY: Final = REPO / "deploy" / "grafana" / "dashboards.py"
_METRIC: Final = re.compile(r"\b(sipmesh_[a-z0-9_]+|process_[a-z0-9_]+|up(?=\{))")
#: The metric names the dashboards use (``up`` always with a selector).
_SUFFIXES: Final = ("_bucket", "_count", "_sum")
_GROUPING: Final = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_SELECTOR: Final = re.compile(r"\{([^}]*)\}")
_MATCHER: Final = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_LEGEND: Final = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_TICKED: Final = re.compile(r"`([^`]+)`")
_PARENTHESES: Final = re.compile(r"\([^()]*\)")
GENERIC_LABELS: Final = frozenset({"job", "instance", "service", "le"})
#: Labels every series has (the scrape's ``job``, ``instance``, ``sipmesh up``'s
#: ``service``) or a histogram's buckets have (``le``).


def load_dashboards() -> ModuleType:
    """deploy/grafana/dashboards.py, imported by path (deploy/ is not a package)."""
    name = "sipmesh_grafana_dashboards"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, DASHBOARDS_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads, as Prometheus stores them."""
    return set(_METRIC.findall(expr))


def series_name(name: str) -> str:
    """The family a stored name belongs to: ``x_bucket`` -> ``x`` (histograms)."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def promtool() -> str:
    """The promtool binary (Debian package prometheus); fails the test when missing."""
    path = shutil.which("promtool")
    assert path is not None, "promtool is not installed: apt-get install prometheus"
    return path


def query_labels(expr: str) -> set[str]:
    """Label names an expression groups by or matches on (``by (a, b)``, ``{a="x"}``)."""
    names = {n.strip() for g in _GROUPING.findall(expr) for n in g.split(",") if n.strip()}
    names |= {m for sel in _SELECTOR.findall(expr) for m in _MATCHER.findall(sel)}
    return names


def legend_labels(legend: str) -> set[str]:
    """Label names a Grafana legend format shows (``{{route}} p95`` -> ``route``)."""
    return set(_LEGEND.findall(legend))


def documented_labels(markdown: str) -> dict[str, set[str]]:
    """Metric name -> label names, from the tables of docs/metrics.md.

    A table row is ``| `name` | type | labels | meaning |``; in the labels cell a
    label is a backticked name outside parentheses (inside are its values).
    """
    labels: dict[str, set[str]] = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        cell = cells[2]
        while (stripped := _PARENTHESES.sub("", cell)) != cell:
            cell = stripped
        for name in _TICKED.findall(cells[0]):
            labels[name] = set(_TICKED.findall(cell))
    return labels
