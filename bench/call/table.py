"""The Calls and Media anchoring tables of docs/benchmarks.md from bench/call's results.

    python bench/call/table.py RESULTS.jsonl

One row per point, in run order: server, hold, target and achieved rate, failed %,
retransmissions, RTD1 (INVITE to 200) p50/p99 in ms (SIPp rounds down to whole
ms), the most calls SIPp's caller had open at once, CPU in % of one core (server
total, then per process in microseconds of CPU per call), SIPp, other tenants,
pass/fail. Then per server and hold the highest rate at which every run, and
every run at a lower rate, passed.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

#: Server process groups, in the order they are shown.
GROUPS = ("kamailio", "edge", "router", "registrar", "nats", "media", "rtpengine")


def cpu(d: dict[str, Any], key: str) -> float | None:
    value: float | None = d.get("cpu", {}).get(key)
    return value


def per_call(d: dict[str, Any]) -> str:
    """CPU microseconds per call of each server process group."""
    rate = d.get("achieved_rate") or 0
    parts = []
    for g in GROUPS:
        pct = cpu(d, f"{g}_pct")
        if pct is not None and rate:
            parts.append(f"{g} {pct / 100 * 1e6 / rate:.0f}")
    return ", ".join(parts) or "-"


def peak_open_calls(results: Path, d: dict[str, Any]) -> str:
    """The largest CurrentCall of the caller's SIPp statistics file."""
    stat = results.parent / d["run_dir"] / "uac_stat.csv"
    try:
        with stat.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter=";"))
    except OSError:
        return "-"
    values = [int(r["CurrentCall"]) for r in rows if r.get("CurrentCall", "").isdigit()]
    return str(max(values)) if values else "-"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    results = Path(sys.argv[1])
    with results.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    print(
        "| server | hold s | target/s | achieved/s | failed % | retrans | setup p50 / p99 ms "
        "| open calls (max) | server CPU % | CPU µs per call | SIPp CPU % (UAC + UAS) "
        "| other tenants % | result |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|---|")
    runs: dict[tuple[str, int], list[tuple[int, bool]]] = {}
    for d in rows:
        rtd = d.get("rtd", {}).get("1") or {}
        hold = d["hold_ms"] // 1000
        runs.setdefault((d["label"], hold), []).append((d["rate"], d["pass"]))
        print(
            f"| {d['label']} | {hold} | {d['rate']} | {d['achieved_rate']} "
            f"| {d['fail_pct']:.3f} | {d['retransmissions']} "
            f"| {fmt(rtd.get('p50_ms'))} / {fmt(rtd.get('p99_ms'))} "
            f"| {peak_open_calls(results, d)} | {fmt(cpu(d, 'server_pct'))} | {per_call(d)} "
            f"| {fmt(cpu(d, 'sipp_uac_pct'))} + {fmt(cpu(d, 'sipp_uas_pct'))} "
            f"| {fmt(cpu(d, 'foreign_pct'))} | {'pass' if d['pass'] else 'FAIL'} |"
        )
    print()
    for (label, hold), points in runs.items():
        # sustained: every run at this rate and at every lower rate passed
        failed = [rate for rate, ok in points if not ok]
        ok = [rate for rate, _ in points if not failed or rate < min(failed)]
        best = max(ok, default=None)
        print(f"- {label}, hold {hold} s: highest rate sustained in every run {best}/s")


if __name__ == "__main__":
    main()
