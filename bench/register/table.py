"""The Registration table of docs/benchmarks.md from bench/register's results.jsonl.

    python bench/register/table.py RESULTS.jsonl

One row per point, in run order: label, target and achieved rate, failed %,
retransmissions, RTD1 p50/p99 (first REGISTER to final 200, ms; SIPp rounds
down to whole ms), CPU in % of one core (server total; for sipmesh the edge,
registrar(s) and nats-server; SIPp), other tenants' CPU, pass/fail.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def cpu(d: dict[str, Any], key: str) -> str:
    value = d.get("cpu", {}).get(key)
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    print(
        "| server | target/s | achieved/s | failed % | retrans | p50 / p99 ms "
        "| server CPU % (edge + registrar + nats) | SIPp CPU % | other tenants % | result |"
    )
    print("|---|--:|--:|--:|--:|--:|---|--:|--:|---|")
    for d in rows:
        rtd = d.get("rtd", {}).get("1") or {}
        split = ""
        if d.get("cpu", {}).get("edge_pct") is not None:
            split = f" ({cpu(d, 'edge_pct')} + {cpu(d, 'registrar_pct')} + {cpu(d, 'nats_pct')})"
        print(
            f"| {d['label']} | {d['rate']} | {d['achieved_rate']} | {d['fail_pct']:.3f} "
            f"| {d['retransmissions']} | {rtd.get('p50_ms', '-')} / {rtd.get('p99_ms', '-')} "
            f"| {cpu(d, 'server_pct')}{split} | {cpu(d, 'sipp_uac_pct')} | {cpu(d, 'foreign_pct')} "
            f"| {'pass' if d['pass'] else 'FAIL'} |"
        )


if __name__ == "__main__":
    main()
