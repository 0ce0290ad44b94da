"""Plot call setup time (SIPp RTD1, INVITE to 200) against the offered rate.

    python bench/call/plot.py OUT.png RESULTS.jsonl [RESULTS.jsonl ...]

Two panels: plain proxying and media anchored through RTPEngine. One colour per
server, p50 solid and p99 dashed; every point is a marker (hollow: it failed the
pass criterion), the line joins the medians of the runs at each rate. Points
with a call hold are left out (setup time only). The y axis is symlog: SIPp
reports whole milliseconds and Kamailio's p50 is often 0.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def main() -> None:
    out = Path(sys.argv[1])
    rows: list[dict[str, Any]] = []
    for results in sys.argv[2:]:
        with Path(results).open(encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in rows:
        if d["hold_ms"] == 0 and (d.get("rtd") or {}).get("1"):
            series[d["label"]].append(d)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    panels = (("proxy only", False), ("media anchored (RTPEngine)", True))
    for ax, (title, media) in zip(axes, panels, strict=True):
        # the media labels end in "+rtpengine" (Kamailio) or "+media" (sipmesh)
        labels = [s for s in series if ("+" in s) == media]
        for colour, label in zip(COLOURS, labels, strict=False):
            points = sorted(series[label], key=lambda d: d["rate"])
            for pct, style in (("p50_ms", "-"), ("p99_ms", "--")):
                xs = sorted({d["rate"] for d in points})
                ys = [
                    statistics.median(d["rtd"]["1"][pct] for d in points if d["rate"] == x)
                    for x in xs
                ]
                ax.plot(xs, ys, style, color=colour, label=f"{label} {pct[:3]}")
                for d in points:
                    y = d["rtd"]["1"][pct]
                    ax.plot(
                        d["rate"],
                        y,
                        "o",
                        color=colour,
                        markerfacecolor=colour if d["pass"] else "white",
                    )
        ax.set_title(title)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1)
        ax.set_xlabel("offered calls/s (log)")
        ax.grid(True, which="both", alpha=0.3)
        if labels:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("setup time INVITE→200, ms (symlog)")
    fig.suptitle("SIPp CALL, loopback UDP, 2 shared vCPU; hollow marker = point failed")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
