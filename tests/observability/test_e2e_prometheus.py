"""Every dashboard expression against a real Prometheus scraping a real ``sipmesh up``.

``sipmesh up`` runs on free ports (its media service with a local RTPEngine) and
writes ``DATA_DIR/prometheus.yml``; a real Prometheus (Debian package
``prometheus``) scrapes the services from that very file, only the interval
lowered to 1 s. Traffic: SIPp registers users with digest auth, a wrong password
is tried, a MESSAGE, a stray response and a garbage datagram reach the edge, and
SIPp calls go through a dispatcher set (made with ``sipmesh peer``/``dispatcher``)
to a SIPp UAS, and an LCR gateway is added (``sipmesh gateway``) without calls.
Then each dashboard query is evaluated through the HTTP API:

- queries of the :data:`REQUIRED` traffic kinds must return at least one series,
  except those reading a metric listed in :data:`PENDING` (with the reason), and
  every label their legend names must be on each series;
- for every query, each metric name it reads must be known to Prometheus
  (``/api/v1/label/__name__/values``) or declared (``# TYPE``) on a scraped
  ``/metrics`` page, so no panel points at a metric that no service exports
  (this is all that can be shown for ANCHORED and FAILURE queries today).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from sipmesh.up import prometheus_file
from tests.e2e.harness import (
    DOMAIN,
    LOOPBACK,
    Proc,
    clean_env,
    free_port,
    free_port_run,
    probe_register,
    run_cli,
)
from tests.e2e.router_fixtures import Uas
from tests.e2e.sipp import SippRun, sipp_binary, write_users
from tests.observability._support import (
    legend_labels,
    load_dashboards,
    metric_names,
    promtool,
    series_name,
)

pytestmark = pytest.mark.e2e

dashboards = load_dashboards()
Traffic = dashboards.Traffic

QUERY_BUDGET: Final = 30.0
#: Prometheus' first scrape comes ~5.7 s after start (TOOLING.md); rate() needs two.
USERS: Final = 6
CALLS: Final = 3
REQUIRED: Final = (Traffic.IDLE, Traffic.SIP, Traffic.CALLS, Traffic.ROUTING, Traffic.MEDIA)
#: What this test makes happen. ANCHORED and FAILURE queries get the weaker check
#: (their metrics must exist): no call here has its media anchored (the dispatcher
#: set does not ask for it), and nothing fails on purpose, so e.g. no dispatcher
#: destination is down and no call event publish fails.
PENDING: Final[dict[str, str]] = {}
#: Metrics that should have series after this traffic but do not yet, and why.
EXPECTED_JOBS: Final = {"sipmesh-up", "sipmesh-registrar", "sipmesh-router", "sipmesh-media"}
EXPECTED_JOBS_ALL: Final = EXPECTED_JOBS | {"sipmesh-cdr", "sipmesh-edge"}


def _prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus is not installed: apt-get install prometheus", pytrace=False)
    return path


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body: bytes = answer.read()
        return body


def _api(base: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    answer = json.loads(_get(f"{base}{path}{query}"))
    assert answer["status"] == "success", answer
    return answer["data"]


class _Platform:
    """``sipmesh up`` on free ports, with a data directory of its own."""

    def __init__(self, workdir: Path) -> None:
        self.data = workdir / "data"
        self.sip_port = free_port_run(3)
        argv = [sys.executable, "-m", "sipmesh", "up", "--data-dir", str(self.data)]
        argv += ["--sip-port", str(self.sip_port), "--nats-port", "0", "--domain", DOMAIN]
        # SIPp answers only the first challenge and knows only MD5.
        env = clean_env(
            {"SIPMESH_REGISTRAR_ALGORITHMS": "MD5", "SIPMESH_MEDIA_LOCAL_RTPENGINE": "true"}
        )
        self.proc = Proc("sipmesh-up", argv, env=env, log=workdir / "up.log")

    def start(self, timeout: float = 30.0) -> None:
        self.proc.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.alive(), f"sipmesh up exited:\n{self.proc.log()}"
            if "sipmesh is up" in self.proc.log() and probe_register(self.sip_port) in (200, 401):
                return
            time.sleep(0.1)
        raise AssertionError(
            f"sipmesh up did not serve REGISTER in {timeout} s:\n{self.proc.log()}"
        )

    def cli(self, *args: str) -> str:
        return run_cli(*args, env={"SIPMESH_DATA_DIR": str(self.data)})


class _Prometheus:
    """A real Prometheus on a free port and a temporary TSDB, from ``up``'s file."""

    def __init__(self, workdir: Path, source: Path) -> None:
        config = yaml.safe_load(source.read_text(encoding="utf-8"))
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        self.config = config
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        port = free_port(udp=False)
        self.base = f"http://{LOOPBACK}:{port}"
        argv = [
            _prometheus_binary(),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address={LOOPBACK}:{port}",
        ]
        self.proc = Proc("prometheus", argv, env=clean_env(), log=workdir / "prometheus.log")

    def targets(self) -> list[str]:
        return [
            t
            for job in self.config["scrape_configs"]
            for c in job["static_configs"]
            for t in c["targets"]
        ]

    def start(self, timeout: float = 10.0) -> None:
        self.proc.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.alive(), f"prometheus exited:\n{self.proc.log()}"
            try:
                _get(f"{self.base}/-/ready", timeout=0.5)
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
                continue
            return
        raise AssertionError(f"prometheus not ready in {timeout} s:\n{self.proc.log()}")

    def query(self, expr: str) -> list[Any]:
        data = _api(self.base, "/api/v1/query", query=dashboards.concrete(expr, "1m"))
        result: list[Any] = data["result"]
        return result if data["resultType"] == "vector" else [data["result"]]


@pytest.fixture(scope="module")
def platform() -> Iterator[tuple[_Platform, _Prometheus]]:
    if sipp_binary() is None:
        pytest.fail("sipp is not installed: apt-get install sip-tester", pytrace=False)
    if shutil.which("rtpengine") is None:
        pytest.fail("rtpengine is not installed: apt-get install rtpengine", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="sipmesh-obs-") as tmp:
        workdir = Path(tmp)
        up = _Platform(workdir)
        prom: _Prometheus | None = None
        try:
            up.start()
            prom = _Prometheus(workdir, prometheus_file(up.data))
            prom.start()
            _drive_traffic(up, workdir)
            yield up, prom
        finally:
            if prom is not None:
                prom.proc.stop(timeout=10.0)
            assert up.proc.stop(timeout=30.0) == 0, up.proc.log()


def _drive_traffic(up: _Platform, workdir: Path) -> None:
    """What :attr:`Traffic.SIP` promises: REGISTER with auth, a wrong password, odd datagrams."""
    users = [(f"obs{i}", f"pw-obs{i}-secret") for i in range(USERS)]
    up.cli("user", "import", str(write_users(workdir / "import.csv", users)))
    target = (LOOPBACK, up.sip_port)
    good = SippRun(
        "reg_auth.xml",
        target=target,
        workdir=workdir,
        users=write_users(workdir / "users.csv", users),
        keys={"domain": DOMAIN, "expires": "300"},
        calls=USERS,
        trace_messages=False,
    )
    wrong = SippRun(
        "reg_wrong_password.xml",
        target=target,
        workdir=workdir,
        users=write_users(workdir / "wrong.csv", [("obs0", "not-the-password")]),
        keys={"domain": DOMAIN, "expires": "300"},
        trace_messages=False,
    )
    for run in (good, wrong):
        result = run.wait()
        assert result.returncode == 0, f"{result.describe()}\n{up.proc.log()[-3000:]}"
    _send_datagrams(up.sip_port)
    _drive_calls(up, workdir)


def _drive_calls(up: _Platform, workdir: Path) -> None:
    """SIPp UAC -> edge -> router (a dispatcher set, set up with the CLI) -> SIPp UAS."""
    pbx = Uas(workdir, "call_uas.xml", calls=CALLS, timeout=30.0)
    try:
        up.cli("peer", "add", "loopback", "--cidr", f"{LOOPBACK}/32")
        up.cli("dispatcher", "add", "pbx", "--dest", f"sip:{LOOPBACK}:{pbx.port}", "--no-probe")
        up.cli("dispatcher", "add", "pbx", "--prefix", "77")
        # An LCR gateway that no call goes to: its carrier-use series exists at 0
        # (Traffic.ROUTING); the calls here are routed by the dispatcher set.
        up.cli(
            "gateway", "add", "obs-gw", "--carrier", "obs-carrier",
            "--host", f"{LOOPBACK}:{free_port()}", "--no-probe",
        )  # fmt: skip
        # The router's routing snapshot follows KV; give its watch a moment.
        time.sleep(0.5)
        result = SippRun(
            "call_uac.xml",
            target=(LOOPBACK, up.sip_port),
            workdir=workdir,
            keys={"callee": "771000", "domain": DOMAIN},
            calls=CALLS,
            trace_messages=False,
        ).wait()
        assert result.successful == CALLS, f"{result.describe()}\n{pbx.messages()}"
    finally:
        pbx.kill()


def _send_datagrams(port: int) -> None:
    """A MESSAGE (the router decides), a stray response (dropped), garbage (parse error)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        local = s.getsockname()[1]
        branch = f"z9hG4bK-obs-{time.monotonic_ns()}"
        via = f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch={branch};rport\r\n"
        common = (
            f"From: <sip:obs1@{DOMAIN}>;tag=o1\r\nTo: <sip:nobody@{DOMAIN}>\r\n"
            f"Call-ID: obs-{time.monotonic_ns()}@{LOOPBACK}\r\n"
        )
        message = (
            f"MESSAGE sip:nobody@{DOMAIN} SIP/2.0\r\n{via}Max-Forwards: 70\r\n{common}"
            "CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
        )
        stray = f"SIP/2.0 200 OK\r\n{via}{common}CSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        for datagram in (message, stray, "\x00\x01 not SIP at all\r\n\r\n"):
            s.sendto(datagram.encode(), (LOOPBACK, port))


def _declared_families(prom: _Prometheus) -> set[str]:
    """Every ``# TYPE`` family on the scraped ``/metrics`` pages (with ``_total``)."""
    names: set[str] = set()
    for target in prom.targets():
        for line in _get(f"http://{target}/metrics").decode().splitlines():
            if line.startswith("# TYPE "):
                names.add(line.split()[2])
    return names


def _all_queries() -> list[tuple[str, Any]]:
    return [(spec.name, q) for spec in dashboards.DASHBOARDS for q in spec.queries()]


def test_up_writes_a_scrape_config_promtool_accepts(
    platform: tuple[_Platform, _Prometheus],
) -> None:
    up, _prom = platform
    written = yaml.safe_load(prometheus_file(up.data).read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in written["scrape_configs"]}
    assert EXPECTED_JOBS <= jobs <= EXPECTED_JOBS_ALL
    done = subprocess.run(
        [promtool(), "check", "config", str(prometheus_file(up.data))],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_scrapes_every_service_up_writes(
    platform: tuple[_Platform, _Prometheus],
) -> None:
    _, prom = platform
    deadline = time.monotonic() + QUERY_BUDGET
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        active = _api(prom.base, "/api/v1/targets")["activeTargets"]
        health = {t["scrapeUrl"]: t["health"] for t in active}
        if len(health) == len(prom.targets()) and set(health.values()) == {"up"}:
            return
        time.sleep(0.25)
    raise AssertionError(f"targets not all up in {QUERY_BUDGET} s: {health}")


def test_every_dashboard_expression_returns_series(platform: tuple[_Platform, _Prometheus]) -> None:
    _, prom = platform
    wanted = [
        (n, q)
        for n, q in _all_queries()
        if q.traffic in REQUIRED and not metric_names(q.expr) & PENDING.keys()
    ]
    assert len(wanted) > 40
    deadline = time.monotonic() + QUERY_BUDGET
    empty = wanted
    results: dict[str, list[Any]] = {}
    while empty and time.monotonic() < deadline:
        results |= {q.expr: prom.query(q.expr) for _, q in empty}
        empty = [(n, q) for n, q in empty if not results[q.expr]]
        if empty:
            time.sleep(0.5)
    report = "\n".join(f"{n}: {q.expr}" for n, q in empty)
    assert not empty, f"dashboard queries without any series after {QUERY_BUDGET} s:\n{report}"
    # A legend naming a label the series lack shows blank names (a renamed label).
    blank = [
        (n, q.expr, q.legend)
        for n, q in wanted
        for series in results[q.expr]
        if isinstance(series, dict) and not legend_labels(q.legend) <= series["metric"].keys()
    ]
    assert blank == []


def test_every_dashboard_metric_exists(platform: tuple[_Platform, _Prometheus]) -> None:
    _, prom = platform
    used = {n for _, q in _all_queries() for n in metric_names(q.expr)}
    declared = _declared_families(prom)
    known: set[str] = set()
    deadline = time.monotonic() + QUERY_BUDGET
    while time.monotonic() < deadline:
        known = set(_api(prom.base, "/api/v1/label/__name__/values"))
        if "up" in known and "sipmesh_edge_requests_total" in known:
            break
        time.sleep(0.5)
    missing = sorted(n for n in used if n not in known and series_name(n) not in declared)
    assert not missing, f"dashboards read metrics no service exports: {missing}"


def _value(prom: _Prometheus, expr: str) -> float | None:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else None


def test_call_panels_read_the_calls_this_test_placed(
    platform: tuple[_Platform, _Prometheus],
) -> None:
    # Every route's series exists at 0 from start-up, so "returns a series" says
    # little for the call panels: their inputs must count the calls placed here.
    _, prom = platform
    expected = {
        'sum(sipmesh_router_call_attempts_total{route="dispatcher"})': float(CALLS),
        'sum(sipmesh_router_call_answers_total{route="dispatcher"})': float(CALLS),
        'sum(sipmesh_router_call_setup_seconds_count{route="dispatcher"})': float(CALLS),
        'sum(sipmesh_router_call_attempts_total{route!="dispatcher"})': 0.0,
        'sum(sipmesh_router_lcr_carrier_attempts_total{carrier="obs-carrier"})': 0.0,
        'max(sipmesh_router_dispatcher_destination_up{set="pbx"})': 1.0,
        "max(sipmesh_router_calls_active)": 0.0,
        "count(" + dashboards._DESTINATION_UP + ")": 1.0,
    }
    deadline = time.monotonic() + QUERY_BUDGET
    seen: dict[str, float | None] = {}
    while time.monotonic() < deadline:
        seen = {expr: _value(prom, expr) for expr in expected}
        if seen == expected:
            break
        time.sleep(0.5)
    assert seen == expected


def test_protection_panels_have_every_reason_from_start_up(
    platform: tuple[_Platform, _Prometheus],
) -> None:
    # The edge's Guard creates each known reason at 0, so the Protection row shows
    # every reason before the first drop or ban (one edge: one series per reason).
    _, prom = platform
    expected = {
        "count(sipmesh_edge_protection_dropped_total)": 4.0,
        "count(sipmesh_edge_bans_issued_total)": 3.0,
        "count(sipmesh_edge_bans_active)": 1.0,
        "count(sipmesh_edge_ban_publish_errors_total)": 1.0,
    }
    deadline = time.monotonic() + QUERY_BUDGET
    seen: dict[str, float | None] = {}
    while time.monotonic() < deadline:
        seen = {expr: _value(prom, expr) for expr in expected}
        if seen == expected:
            break
        time.sleep(0.5)
    assert seen == expected
