"""Shared helpers of the observability tests: the dashboards module and PromQL names."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Final

__all__ = ["DASHBOARDS_PY", "REPO", "load_dashboards", "metric_names", "promtool", "series_name"]

REPO: Final = Path(__file__).resolve().parents[2]
DASHBOARDS_PY: Final = REPO / "deploy" / "grafana" / "dashboards.py"
_METRIC: Final = re.compile(r"\b(sipmesh_[a-z0-9_]+|process_[a-z0-9_]+|up(?=\{))")
#: The metric names the dashboards use (``up`` always with a selector).
_SUFFIXES: Final = ("_bucket", "_count", "_sum")


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
