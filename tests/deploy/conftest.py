"""Fixtures of the deployment checks: render the Helm chart offline (helm-python-sdk)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import helm_python
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "k8s" / "sipmesh"
NAMESPACE = "voip"
RELEASE = "sipmesh"

Manifest: TypeAlias = dict[str, Any]
Render: TypeAlias = Callable[[dict[str, Any]], list[Manifest]]

#: Value sets every check runs on (ids: what they turn on).
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "replicas-no-autoscaling": {
        svc: {"replicas": 3, "autoscaling": {"enabled": False}}
        for svc in ("edge", "registrar", "router", "media")
    },
    "external-nats-credentials": {
        "externalNats": {
            "url": "nats://n1.example.net:4222,nats://n2.example.net:4222",
            "user": "sipmesh",
            "password": "p@ss:word",
        },
        "edge": {"advertisedAddress": "203.0.113.10"},
    },
    "keda-postgres": {
        "cdr": {
            "store": {"url": "postgresql://cdr:secret@db.example.net/cdr"},
            "keda": {"enabled": True},
        },
        "externalNats": {
            "monitoringEndpoint": "nats.nats.svc:8222",
            "credsSecret": "sipmesh-nats-creds",
        },
    },
    "servicemonitor-tls-ws-digest": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "edge": {
            "tls": {"enabled": True, "secretName": "sip-tls"},
            "ws": {"enabled": True},
        },
        "image": {"digest": "sha256:" + "ab" * 32},
    },
    "nats-subchart": {"nats": {"enabled": True}, "cdr": {"persistence": {"enabled": False}}},
}


def render_chart(values: dict[str, Any]) -> list[Manifest]:
    """Every object the chart renders with ``values`` (NOTES.txt left out)."""
    chart = helm_python.Chart.load(CHART)
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs: list[Manifest] = []
    for path, text in sorted(out.items()):
        if path.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d is not None)
    return docs


@pytest.fixture
def render() -> Render:
    return render_chart


@pytest.fixture(params=sorted(VALUE_SETS), ids=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    """The objects of one value set (each test runs once per set)."""
    return render_chart(VALUE_SETS[request.param])


@pytest.fixture
def value_sets() -> dict[str, dict[str, Any]]:
    return VALUE_SETS
