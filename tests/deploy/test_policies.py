"""Rendered manifests pass kubernetes-validate (strict) and checkov (skips explained)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from .conftest import ROOT, Manifest, render_chart

#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema bundled.
KUBE_VERSIONS = ("1.30.0", "1.37.0")
#: Custom resources: kubernetes-validate bundles no schema for them, so they are checked
#: field by field in test_chart.py instead (ServiceMonitor, ScaledObject) and skipped here.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}
BROKEN = "broken-privileged"
SKIPS_FILE = ROOT / "deploy" / "k8s" / "checkov-skips.yaml"


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_manifests_pass_strict_schema_validation(rendered: list[Manifest], version: str) -> None:
    checked = 0
    for doc in rendered:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 30


def test_strict_validation_catches_a_bad_manifest(rendered: list[Manifest]) -> None:
    deployment = next(d for d in rendered if d["kind"] == "Deployment")
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)


def test_only_the_listed_crds_are_left_to_other_tests(
    value_sets: dict[str, dict[str, Any]],
) -> None:
    seen = {
        (d["apiVersion"], d["kind"])
        for values in value_sets.values()
        for d in render_chart(values)
        if "." in d["apiVersion"].split("/")[0] and not d["apiVersion"].endswith(".k8s.io/v1")
    }
    assert seen == CRD_KINDS


# -- checkov ---------------------------------------------------------------------------------


def checkov_binary() -> str:
    """checkov: $SIPMESH_CHECKOV, else .venv/checkov/bin/checkov, else on PATH.

    It lives in its own virtualenv (291 MB, pins of its own), made with
    ``python3 -m venv .venv/checkov && .venv/checkov/bin/pip install checkov``.
    """
    candidates = [
        os.environ.get("SIPMESH_CHECKOV", ""),
        str(ROOT / ".venv" / "checkov" / "bin" / "checkov"),
        shutil.which("checkov") or "",
    ]
    found = next((c for c in candidates if c and Path(c).is_file()), None)
    if found is None:
        pytest.fail(
            "checkov not found: python3 -m venv .venv/checkov && "
            ".venv/checkov/bin/pip install checkov (or set SIPMESH_CHECKOV)"
        )
    return found


def run_checkov(directory: Path) -> list[dict[str, Any]]:
    """The failed checks of ``checkov -d directory`` (offline)."""
    result = subprocess.run(
        [
            checkov_binary(),
            "--directory",
            str(directory),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "ERROR"},
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed: list[dict[str, Any]] = []
    for one in reports:
        failed.extend(one.get("results", {}).get("failed_checks", []))
    return failed


@pytest.fixture(scope="module")
def checkov_failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Failed check id -> the value sets (directories) it failed in; one checkov run."""
    from .conftest import VALUE_SETS

    base = tmp_path_factory.mktemp("checkov")
    for name, values in VALUE_SETS.items():
        folder = base / name
        folder.mkdir()
        for i, doc in enumerate(render_chart(values)):
            (folder / f"{i:02d}-{doc['kind']}.yaml").write_text(yaml.safe_dump(doc))
    # A hand-broken Deployment, to show the run checks anything at all.
    broken = next(d for d in render_chart({}) if d["kind"] == "Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    (base / BROKEN).mkdir()
    (base / BROKEN / "deployment.yaml").write_text(yaml.safe_dump(broken))
    by_check: dict[str, set[str]] = {}
    for check in run_checkov(base):
        value_set = Path(check["file_path"]).parts[-2] if "file_path" in check else "?"
        by_check.setdefault(check["check_id"], set()).add(value_set)
    return by_check


def test_checkov_finds_nothing_unexplained(checkov_failures: dict[str, set[str]]) -> None:
    skips = yaml.safe_load(SKIPS_FILE.read_text(encoding="utf-8"))["skips"]
    explained = {s["id"] for s in skips if len(s.get("reason", "")) > 40}
    unexplained = {
        k: sorted(v - {BROKEN})
        for k, v in checkov_failures.items()
        if k not in explained and v - {BROKEN}
    }
    assert unexplained == {}


def test_checkov_skip_list_holds_no_stale_entry(checkov_failures: dict[str, set[str]]) -> None:
    skips = yaml.safe_load(SKIPS_FILE.read_text(encoding="utf-8"))["skips"]
    chart_failures = {k for k, v in checkov_failures.items() if v - {BROKEN}}
    assert {s["id"] for s in skips} <= chart_failures


def test_image_digest_satisfies_checkov(checkov_failures: dict[str, set[str]]) -> None:
    # The skip of CKV_K8S_43 says a digest fixes it: the value set with a digest passes.
    assert "servicemonitor-tls-ws-digest" not in checkov_failures["CKV_K8S_43"]
    assert "default" in checkov_failures["CKV_K8S_43"]


def test_checkov_flags_a_privileged_container(checkov_failures: dict[str, set[str]]) -> None:
    for check in ("CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_22"):  # privileged, escalation, RO root
        assert BROKEN in checkov_failures.get(check, set()), check


def test_render_script_output_is_current() -> None:
    # deploy/k8s/rendered/sipmesh.yaml is what kubectl users apply.
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "k8s" / "render.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
