"""``sipmesh up`` as a whole: one command, then a user, then a phone registers through it.

Nothing is wired by hand here: ``up`` starts its embedded nats-server and every
service; the ``user`` and ``registrations`` commands find NATS and the domain
through the data directory, exactly as a person following the README would.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sipmesh.up import prometheus_file
from tests.e2e.harness import (
    DOMAIN,
    LOOPBACK,
    Proc,
    clean_env,
    free_port_run,
    probe_register,
    registrar_algorithms_setting,
    run_cli,
)
from tests.e2e.sipp import SippRun, write_users

pytestmark = pytest.mark.e2e


def _wait_up(up: Proc, sip_port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert up.alive(), f"sipmesh up exited:\n{up.log()}"
        if "sipmesh is up" in up.log() and probe_register(sip_port) in (200, 401):
            return
        time.sleep(0.1)
    raise AssertionError(f"sipmesh up did not serve REGISTER in {timeout} s:\n{up.log()}")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_up_then_user_add_then_sipp_registers(transport: str, tmp_path: Path) -> None:
    if not registrar_algorithms_setting():
        pytest.fail("the registrar cannot offer MD5 alone, which SIPp needs", pytrace=False)
    data = tmp_path / "data"
    # `up` may also listen on the next ports (TLS on SIP+1, WebSocket on SIP+2).
    sip_port = free_port_run(3)
    argv = [sys.executable, "-m", "sipmesh", "up", "--data-dir", str(data)]
    argv += ["--sip-port", str(sip_port), "--nats-port", "0", "--domain", DOMAIN]
    # SIPp answers only the first challenge and knows only MD5.
    env = clean_env({"SIPMESH_REGISTRAR_ALGORITHMS": "MD5"})
    up = Proc("sipmesh-up", argv, env=env, log=tmp_path / "up.log").start()
    try:
        _wait_up(up, sip_port)
        cli_env = {"SIPMESH_DATA_DIR": str(data)}  # no NATS URL, no domain: from `up`
        run_cli("user", "add", "alice", "--password", "wonderland", env=cli_env)

        result = SippRun(
            "reg_auth.xml",
            target=(LOOPBACK, sip_port),
            workdir=tmp_path,
            transport=transport,
            users=write_users(tmp_path / "users.csv", [("alice", "wonderland")]),
            keys={"domain": DOMAIN, "expires": "300"},
        ).wait()

        assert result.returncode == 0, f"{result.describe()}\n{up.log()}"
        [line] = result.log_lines
        assert line.startswith("ok alice ")
        assert "<sip:alice@127.0.0.1:" in line
        listed = run_cli("registrations", env=cli_env)
        assert f"sip:alice@{DOMAIN}" in listed
        assert f"/{transport}" in listed
    finally:
        # SIGTERM: up stops the services, then NATS, and exits 0.
        assert up.stop(timeout=30.0) == 0, up.log()


def _edge_requests(endpoint: str, method: str) -> float:
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sipmesh_edge_requests_total" and sample.labels == {"method": method}:
                return sample.value
    return 0.0


def test_up_with_two_edges_shares_the_sip_port_and_both_serve(tmp_path: Path) -> None:
    if not registrar_algorithms_setting():
        pytest.fail("the registrar cannot offer MD5 alone, which SIPp needs", pytrace=False)
    data = tmp_path / "data"
    sip_port = free_port_run(3)
    argv = [sys.executable, "-m", "sipmesh", "up", "--data-dir", str(data), "--edges", "2"]
    argv += ["--sip-port", str(sip_port), "--nats-port", "0", "--domain", DOMAIN]
    env = clean_env({"SIPMESH_REGISTRAR_ALGORITHMS": "MD5"})
    up = Proc("sipmesh-up", argv, env=env, log=tmp_path / "up.log").start()
    try:
        _wait_up(up, sip_port)
        assert "edge#0: started" in up.log(), up.log()
        assert "edge#1: started" in up.log(), up.log()
        users = [(f"multi{n}", f"secret{n}") for n in range(24)]
        users_file = write_users(tmp_path / "users.csv", users)
        cli_env = {"SIPMESH_DATA_DIR": str(data)}
        run_cli("user", "import", str(users_file), env=cli_env)
        # SIPp over UDP opens a socket per registration ("-t un"): 24 source
        # ports, which the kernel's SO_REUSEPORT hash spreads over both edges.
        result = SippRun(
            "reg_auth.xml",
            target=(LOOPBACK, sip_port),
            workdir=tmp_path,
            users=users_file,
            keys={"domain": DOMAIN, "expires": "300"},
            calls=len(users),
            rate=24,
        ).wait()
        assert result.returncode == 0, f"{result.describe()}\n{up.log()}"
        assert len(result.log_lines) == len(users)
        config = yaml.safe_load(prometheus_file(data).read_text(encoding="utf-8"))
        [edges] = [
            job["static_configs"][0]["targets"]
            for job in config["scrape_configs"]
            if job["job_name"] == "sipmesh-edge"
        ]
        counts = [_edge_requests(endpoint, "REGISTER") for endpoint in edges]
        # Each registration is two REGISTERs (challenged, then answered), plus
        # _wait_up's probes; every edge took a share.
        assert len(counts) == 2, counts
        assert all(counts), counts
        assert sum(counts) >= 2 * len(users), counts
        listed = run_cli("registrations", env=cli_env)
        assert all(f"sip:{user}@{DOMAIN}" in listed for user, _ in users), listed
    finally:
        assert up.stop(timeout=30.0) == 0, up.log()
