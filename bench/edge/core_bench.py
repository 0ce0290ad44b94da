"""Per-function CPU of the edge's own per-message steps (core, stamp, branch), on the CALL messages.

Run with ``.venv/bin/python bench/edge/core_bench.py``; ``--against OTHER``
runs the same in a subprocess on another checkout's sources (its compiled
modules: ``OTHER/libs/*/src`` and ``OTHER/services/*/src`` first on the path),
alternating rounds, and prints both side by side.

Each step runs on freshly parsed messages (sipmsg caches what its accessors
read, so a message is used once per round): the parse happens before the
timer starts, and what a step reads of the message for the first time counts
as the step's. Messages are those of ``bench/edge/call.py`` (the caller's
INVITE, ACK and BYE; the callee's 180, 200 and the BYE's 200). Times are
microseconds per message, best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sipmesh_edge import core
from sipmesh_edge.branch import BranchMaker
from sipmsg import Request, Response, parse

sys.path.insert(0, str(Path(__file__).resolve().parent))
cb = importlib.import_module("call")  # the bench next to this file
CALLER, EDGE, EDGE_ID, PLACEHOLDER, Call = cb.CALLER, cb.EDGE, cb.EDGE_ID, cb.PLACEHOLDER, cb.Call
COUNT = 400
MARK = "RESULT "
Step = tuple[Callable[[], list[Any]], Callable[[Any], object]]


def measure(rounds: int) -> dict[str, float]:
    me = core.EdgeIdentity(
        edge_id=EDGE_ID, hosts=frozenset({EDGE[0].encode()}), ports=frozenset({EDGE[1]})
    )
    calls = [Call(n) for n in range(COUNT)]
    branch = b"z9hG4bK.bench.aaaaaaaaaaaaaaaa.1"
    raw = {
        "invite": [c.invite for c in calls],
        "ack": [c.ack for c in calls],
        "bye": [c.bye for c in calls],
        "180": [c.ringing.replace(PLACEHOLDER, branch) for c in calls],
        "200": [c.ok.replace(PLACEHOLDER, branch) for c in calls],
        "bye200": [c.bye_ok.replace(PLACEHOLDER, branch) for c in calls],
    }
    maker = BranchMaker(EDGE_ID)

    def requests(kind: str) -> list[Request]:
        out = []
        for data in raw[kind]:
            msg = parse(data)
            assert isinstance(msg, Request)
            out.append(msg)
        return out

    def admitted(kind: str) -> list[Request]:
        out = []
        for data in raw[kind]:
            peeked = core.triage(data)
            assert isinstance(peeked, core.Peeked)
            req = core.admit(peeked)
            assert isinstance(req, Request)
            out.append(req)
        return out

    def responses(kind: str) -> list[Response]:
        out = []
        for data in raw[kind]:
            msg = parse(data)
            assert isinstance(msg, Response)
            out.append(msg)
        return out

    def peeks(kind: str) -> list[core.Peeked]:
        out = []
        for data in raw[kind]:
            peeked = core.triage(data)
            assert isinstance(peeked, core.Peeked)
            out.append(peeked)
        return out

    host, port = CALLER
    steps: dict[str, Step] = {}

    def answer(req: Request) -> object:
        return core.answer_locally(req, me)

    def stamp(req: Request) -> object:
        return core.stamp_via(req, host, port)

    for kind in ("invite", "ack", "bye"):
        steps[f"parse {kind}"] = (partial(list, raw[kind]), parse)
        steps[f"triage {kind}"] = (partial(list, raw[kind]), core.triage)
        steps[f"admit {kind}"] = (partial(peeks, kind), core.admit)
        steps[f"make branch {kind}"] = (partial(admitted, kind), maker.make)
    for kind in ("invite", "bye"):
        steps[f"answer_locally {kind}"] = (partial(admitted, kind), answer)
        steps[f"stamp_via {kind}"] = (partial(admitted, kind), stamp)
    for kind in ("180", "200", "bye200"):
        steps[f"triage {kind}"] = (partial(list, raw[kind]), core.triage)
        steps[f"carries_sdp {kind}"] = (partial(responses, kind), core.carries_sdp)
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, (prepare, step) in steps.items():
            items = prepare()
            t0 = time.perf_counter()
            for item in items:
                step(item)
            best[name] = min(best[name], (time.perf_counter() - t0) / len(items) * 1e6)
    return best


def _other_env(other: str) -> dict[str, str]:
    paths = sorted(glob.glob(f"{other}/libs/*/src")) + sorted(glob.glob(f"{other}/services/*/src"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--against", help="another checkout (compiled) to compare with")
    parser.add_argument("--alternate", type=int, default=3, help="subprocess runs per side")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(MARK + json.dumps(measure(args.rounds)))
        return
    if not args.against:
        for name, us in measure(args.rounds).items():
            print(f"{name:24} {us:7.2f} us")
        return
    sides = {"this": dict(os.environ), "other": _other_env(args.against)}
    best: dict[str, dict[str, float]] = {side: {} for side in sides}
    for _ in range(args.alternate):
        for side, env in sides.items():
            out = subprocess.run(
                [sys.executable, __file__, "--json", "--rounds", str(args.rounds)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd="/",
            ).stdout
            result = json.loads(out.split(MARK, 1)[1])
            for name, us in result.items():
                best[side][name] = min(best[side].get(name, float("inf")), us)
    print(f"{'step':24} {'other':>8} {'this':>8}  (us per message, best)")
    for name in best["this"]:
        print(f"{name:24} {best['other'][name]:8.2f} {best['this'][name]:8.2f}")


if __name__ == "__main__":
    main()
