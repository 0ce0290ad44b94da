"""docs/deploy.md says what the chart renders: its object tables match the default render."""

from __future__ import annotations

import re

from sipmesh.services import SERVICES

from .conftest import ROOT, Render

DOC = ROOT / "docs" / "deploy.md"
_ROW = re.compile(r"^\| (?P<kind>[A-Za-z]+) \| `(?P<name>[^`]+)` \|", re.MULTILINE)


def documented_objects() -> set[tuple[str, str]]:
    """(kind, name) of the rows of the "What the chart creates" tables."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## What the chart creates", 1)[1].split("\n## ", 1)[0]
    tables = section.split("Optional:", 1)[0]
    out: set[tuple[str, str]] = set()
    for m in _ROW.finditer(tables):
        name = m["name"]
        if "<s>" in name:
            out.update((m["kind"], name.replace("<s>", s.name)) for s in SERVICES)
        else:
            out.add((m["kind"], name))
    return out


def test_documented_objects_are_the_default_render(render: Render) -> None:
    documented = documented_objects()
    rendered = {(d["kind"], d["metadata"]["name"]) for d in render({})}
    # cdr has no HPA by default (SQLite), as the table's note says.
    documented.discard(("HorizontalPodAutoscaler", "sipmesh-cdr"))
    assert documented == rendered


def test_optional_objects_render_when_turned_on(render: Render) -> None:
    text = DOC.read_text(encoding="utf-8")
    optional = text.split("Optional:", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`(\w+)`\s+`(sipmesh[\w-]*)`", optional))
    docs = render(
        {
            "serviceMonitor": {"enabled": True},
            "cdr": {"store": {"url": "postgresql://db/cdr"}, "keda": {"enabled": True}},
            "externalNats": {"monitoringEndpoint": "nats:8222"},
        }
    )
    rendered = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert named == {
        ("ServiceMonitor", "sipmesh"),
        ("ScaledObject", "sipmesh-cdr"),
        ("Secret", "sipmesh-cdr"),
    }
    assert named <= rendered


def test_documented_commands_use_real_paths() -> None:
    text = DOC.read_text(encoding="utf-8")
    for path in re.findall(r"`((?:deploy|docs|src)/[\w./-]+?)`", text):
        if "*" in path or "<" in path:
            continue
        assert (ROOT / path.rstrip("/")).exists(), path
