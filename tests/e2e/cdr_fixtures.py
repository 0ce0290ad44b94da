"""Fixtures for the CDR end-to-end tests: rated calls through real processes into real SQLite.

``cdr_stack`` (one per module): nats-server, an edge, a router and the CDR
service (``python -m sipmesh_cdr``, its SQLite file in the stack's data dir),
plus four SIPp "carrier gateways" on loopback ports, each provisioned with the
real CLI (``sipmesh peer|gateway|route add``) behind its own prefix:

=========  ===========  ==========  =====================  ==========
prefix     carrier      gateway     rate / increments      answers
=========  ===========  ==========  =====================  ==========
``4930``   ``acme``     ``gw-acme``   0.6 EUR/min, 1/1     200 after 180
``4940``   ``acme``     ``gw-acme``   1.2 EUR/min, 60/60   200 after 180
``4950``   ``acme``     ``gw-acme``   0.9 EUR/min, 30/6    200 after 180
``4960``   ``busyco``   ``gw-busy``   0.5 EUR/min, 60/60   486 after 180
``4970``   ``gone``     ``gw-gone``   0.5 EUR/min, 60/60   404 after 180
``4980``   ``ringco``   ``gw-ring``   0.5 EUR/min, 60/60   180, then 487 on CANCEL
=========  ===========  ==========  =====================  ==========

The SIPp UAC is a trusted peer (``127.0.0.1/32``), as a PBX or carrier would be.
The CDR service runs with ``ack_wait`` 2 s so that events a killed replica held
come back in seconds (the default, 30 s, only makes the kill test slower).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from sipmesh_bus.natsserver import NatsServer
from tests.e2e.harness import LOOPBACK, Proc, Stack, clean_env, free_port, wait_ready
from tests.e2e.router_fixtures import RouterStack, Uas
from tests.e2e.sipp import SippResult, SippRun

__all__ = ["ROUTES", "CdrStack", "Route", "cdr_stack"]

HOLD: Final = 2.0
#: Seconds ``cdr_uac.xml`` holds an answered call before its BYE.
CURRENCY: Final = "EUR"
_numbers = itertools.count(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One provisioned prefix and what its gateway does."""

    prefix: str
    carrier: str
    gateway: str
    rate: float
    first: int
    step: int


ROUTES: Final = {
    "answer_1_1": Route(
        prefix="4930", carrier="acme", gateway="gw-acme", rate=0.6, first=1, step=1
    ),
    "answer_60_60": Route(
        prefix="4940", carrier="acme", gateway="gw-acme", rate=1.2, first=60, step=60
    ),
    "answer_30_6": Route(
        prefix="4950", carrier="acme", gateway="gw-acme", rate=0.9, first=30, step=6
    ),
    "busy": Route(prefix="4960", carrier="busyco", gateway="gw-busy", rate=0.5, first=60, step=60),
    "gone": Route(prefix="4970", carrier="gone", gateway="gw-gone", rate=0.5, first=60, step=60),
    "ring": Route(prefix="4980", carrier="ringco", gateway="gw-ring", rate=0.5, first=60, step=60),
}
_GATEWAY_SCENARIOS: Final = {
    "gw-acme": "cdr_uas.xml",
    "gw-busy": "cdr_uas_486.xml",
    "gw-gone": "cdr_uas_404.xml",
    "gw-ring": "cdr_uas_ring.xml",
}


class CdrStack:
    """A :class:`RouterStack` with the CDR service and the provisioned gateways."""

    def __init__(self, rs: RouterStack) -> None:
        self.rs = rs
        self.stack: Stack = rs.stack
        self.cdr: Proc | None = None
        self.cdr_http_port = 0
        self.gateways: dict[str, Uas] = {}

    # -- the CDR service -----------------------------------------------------------

    def start_cdr(self) -> Proc:
        """Start ``python -m sipmesh_cdr`` (again, after a kill) and wait until ready."""
        st = self.stack
        self.cdr_http_port = free_port(udp=False)
        env = clean_env(
            {
                "SIPMESH_NATS_URL": st.nats_url,
                "SIPMESH_NATS_RECONNECT_WAIT": "0.2",
                "SIPMESH_HTTP_PORT": str(self.cdr_http_port),
                "SIPMESH_DATA_DIR": str(st.workdir),
                "SIPMESH_CDR_ACK_WAIT": "2",
                "SIPMESH_CDR_BATCH": "16",
            }
        )
        if self.cdr is None:
            self.cdr = Proc(
                "cdr", [sys.executable, "-m", "sipmesh_cdr"], env=env, log=st.workdir / "cdr.log"
            )
            st._procs.append(self.cdr)
        else:
            self.cdr.env = env
        self.cdr.start()
        wait_ready(self.cdr, self.cdr_http_port)
        return self.cdr

    def kill_cdr(self) -> None:
        """SIGKILL the CDR service: nothing is flushed, acked or closed."""
        assert self.cdr is not None
        self.cdr.kill()

    def cdr_metrics(self) -> str:
        """The ``sipmesh_cdr_*`` lines of the CDR service's ``/metrics`` (for failure messages)."""
        url = f"http://{LOOPBACK}:{self.cdr_http_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                text: str = answer.read().decode()
        except OSError as exc:
            return f"unreadable: {exc!r}"
        return "\n".join(line for line in text.splitlines() if line.startswith("sipmesh_cdr_"))

    def metric(self, name: str) -> float | None:
        """One unlabelled sample of the CDR service's ``/metrics``, or None."""
        url = f"http://{LOOPBACK}:{self.cdr_http_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as answer:
            text: str = answer.read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    # -- provisioning with the real CLI ---------------------------------------------

    def provision(self, workdir: Path) -> None:
        """Start the SIPp gateways and add the peer, gateways and routes with ``sipmesh``."""
        st = self.stack
        st.cli("peer", "add", "loopback-uac", "--cidr", f"{LOOPBACK}/32")
        for gw, scenario in _GATEWAY_SCENARIOS.items():
            uas = Uas(workdir, scenario, calls=1000, timeout=600.0)
            self.gateways[gw] = uas
            carrier = next(r.carrier for r in ROUTES.values() if r.gateway == gw)
            st.cli(
                "gateway", "add", gw, "--carrier", carrier, "--host", LOOPBACK,
                "--port", str(uas.port), "--no-probe",
            )  # fmt: skip
        for r in ROUTES.values():
            st.cli(
                "route", "add", r.prefix, "--carrier", r.carrier, "--rate", f"{r.rate:g}",
                "--increments", f"{r.first}/{r.step}", "--currency", CURRENCY,
            )  # fmt: skip

    # -- calls and records ----------------------------------------------------------

    def number(self, route: str) -> str:
        """A fresh number under ``route``'s prefix (each test's calls stay apart)."""
        return f"{ROUTES[route].prefix}{next(_numbers):07d}"

    def call(
        self,
        workdir: Path,
        callee: str,
        *,
        scenario: str = "cdr_uac.xml",
        calls: int = 1,
        rate: float = 5.0,
        timeout: float = 30.0,
    ) -> SippRun:
        """Start a SIPp UAC to ``callee@domain`` through the edge (wait with ``.wait()``)."""
        return SippRun(
            scenario,
            target=(LOOPBACK, self.stack.sip_port),
            workdir=workdir,
            keys={"callee": callee, "domain": self.stack.domain},
            calls=calls,
            rate=rate,
            timeout=timeout,
        )

    def export(self) -> list[dict[str, Any]]:
        """Every CDR, as ``sipmesh cdr export --format json`` prints them."""
        rows: list[dict[str, Any]] = json.loads(self.stack.cli("cdr", "export", "--format", "json"))
        return rows

    def records(
        self,
        number: str,
        count: int,
        *,
        timeout: float = 20.0,
        settle: float = 0.0,
    ) -> list[dict[str, Any]]:
        """The complete CDRs dialled to ``number``, once there are ``count`` of them.

        Args:
            number: the dialled number (``callee_number``).
            count: how many complete rows to wait for.
            timeout: seconds to wait for them.
            settle: seconds to wait after that, then read again (a duplicate
                or a late extra row would show by then).

        Raises:
            AssertionError: fewer than ``count`` complete rows in time.
        """
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = [r for r in self.export() if r["callee_number"] == number]
            if sum(1 for r in rows if r["complete"]) >= count:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(
                f"{sum(1 for r in rows if r['complete'])} of {count} CDRs for {number}: "
                f"{rows}\n--- cdr metrics ---\n{self.cdr_metrics()}\n{self.stack.logs()}"
            )
        if settle:
            time.sleep(settle)
            rows = [r for r in self.export() if r["callee_number"] == number]
        return rows


@pytest.fixture(scope="module")
def cdr_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdrStack]:
    """NATS, an edge, a router, the CDR service and the provisioned SIPp gateways."""
    workdir = tmp_path_factory.mktemp("cdr")
    server = NatsServer(store_dir=workdir / "nats")
    server.start()
    st = Stack(workdir, server)
    cs = CdrStack(RouterStack(st))
    try:
        st.start_edge()
        cs.rs.start_router()
        cs.start_cdr()
        cs.provision(workdir)
        time.sleep(0.5)  # the router's routing watch picks the records up
        yield cs
    finally:
        for uas in cs.gateways.values():
            uas.kill()
        st.close()
        server.stop()


def sipp_call_ids(result: SippResult, word: str) -> list[str]:
    """The Call-IDs of the scenario's ``<log message="<word> [call_id]">`` lines."""
    return [
        line.split(" ", 1)[1].strip() for line in result.log_lines if line.startswith(word + " ")
    ]
