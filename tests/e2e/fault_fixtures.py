"""Helpers for the fault tests under call load (:mod:`tests.e2e.test_faults_calls`).

- :class:`Replica`: a router replica started under its own name and log, with
  its HTTP port, so that a test can read its ``/metrics`` and SIGKILL exactly it.
- :func:`start_load`: a SIPp run of one of the ``fault_*.xml`` scenarios through
  the edge, started and not waited for.
- :class:`CallLog`: the per-call outcome lines of ``fault_call_uac.xml`` (wall
  clock milliseconds), so that a test can place each call against the moment it
  killed or stopped something.
- :func:`micros`: the latencies that ``fault_options.xml`` and
  ``fault_reg_stalled.xml`` log.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import LOOPBACK, NONCE_SECRET, Proc, Stack, clean_env, free_port, wait_ready
from tests.e2e.sipp import SippResult, SippRun

__all__ = ["Call", "CallLog", "Replica", "micros", "start_load"]


class Replica:
    """One ``python -m sipmesh_router`` process, named, with its metrics port.

    Args:
        stack: the stack whose NATS it joins (its finalizer stops the replica).
        name: the process and log name (``router-a``).
        settings: extra ``SIPMESH_ROUTER_*`` settings.
    """

    def __init__(self, stack: Stack, name: str, settings: Mapping[str, str] = {}) -> None:
        self.http_port = free_port(udp=False)
        values = {
            "DOMAIN": stack.domain,
            "NONCE_SECRET": NONCE_SECRET,
            "PROBE_BIND": LOOPBACK,
            "PROBE": "false",
            **settings,
        }
        env = clean_env(
            {
                "SIPMESH_NATS_URL": stack.nats_url,
                "SIPMESH_NATS_RECONNECT_WAIT": "0.2",
                "SIPMESH_HTTP_PORT": str(self.http_port),
                **{f"SIPMESH_ROUTER_{k}": v for k, v in values.items()},
            }
        )
        argv = [sys.executable, "-m", "sipmesh_router"]
        self.proc = Proc(name, argv, env=env, log=stack.workdir / f"{name}.log")
        stack._procs.append(self.proc.start())
        wait_ready(self.proc, self.http_port)

    def sample(self, name: str, labels: Mapping[str, str] = {}) -> float:
        """The value of one sample of its ``/metrics`` now (0.0 when absent)."""
        url = f"http://{LOOPBACK}:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as answer:
            text = answer.read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0


def start_load(
    stack: Stack,
    workdir: Path,
    scenario: str,
    *,
    calls: int,
    rate: float,
    keys: Mapping[str, str] = {},
    users: Path | None = None,
    timeout: float = 40.0,
) -> SippRun:
    """Start ``scenario`` against the edge of ``stack``; :meth:`SippRun.wait` ends it."""
    return SippRun(
        scenario,
        target=(LOOPBACK, stack.sip_port),
        workdir=workdir,
        users=users,
        keys={"domain": stack.domain, **keys},
        calls=calls,
        rate=rate,
        timeout=timeout,
        trace_messages=False,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """One call of ``fault_call_uac.xml``: times are epoch milliseconds."""

    call_id: str
    outcome: str
    #: ``ended``, ``rejected`` (the INVITE got ``status``) or ``bye_failed``.
    answered_at: float | None = None
    setup_ms: float | None = None
    bye_at: float | None = None
    status: int | None = None
    invite_at: float | None = None


class CallLog:
    """The outcome lines of a ``fault_call_uac.xml`` run, one :class:`Call` each."""

    def __init__(self, result: SippResult) -> None:
        self.result = result
        self.calls: list[Call] = []
        for line in result.log_lines:
            kind, call_id, *rest = line.split()
            v = [float(x) for x in rest]
            if kind == "ended":
                self.calls.append(
                    Call(
                        call_id=call_id,
                        outcome=kind,
                        answered_at=v[0],
                        setup_ms=v[1],
                        bye_at=v[2],
                    )
                )
            elif kind == "rejected":
                self.calls.append(
                    Call(call_id=call_id, outcome=kind, status=int(v[0]), invite_at=v[1])
                )
            elif kind == "bye_failed":
                self.calls.append(
                    Call(
                        call_id=call_id,
                        outcome=kind,
                        answered_at=v[0],
                        setup_ms=v[1],
                        bye_at=v[2],
                        status=int(v[3]),
                    )
                )

    def of(self, outcome: str) -> list[Call]:
        return [c for c in self.calls if c.outcome == outcome]

    @property
    def failed(self) -> int:
        """Calls that did not end normally: rejected, BYE refused, or failed in SIPp."""
        return len(self.of("rejected")) + len(self.of("bye_failed")) + self.result.failed

    def describe(self) -> str:
        counts = {k: len(self.of(k)) for k in ("ended", "rejected", "bye_failed")}
        bad = [c for c in self.calls if c.outcome != "ended"]
        return f"{counts}, not ended: {bad[:10]}\n{self.result.describe()}"


def micros(result: SippResult, kind: str) -> list[float]:
    """The microsecond latencies of the ``<kind> <us> ...`` lines of a run."""
    return [float(line.split()[1]) for line in result.log_lines if line.startswith(f"{kind} ")]
