"""``sipmesh up`` as a whole: one command, then a user, then a phone registers through it.

Nothing is wired by hand here: ``up`` starts its embedded nats-server and every
service; the ``user`` and ``registrations`` commands find NATS and the domain
through the data directory, exactly as a person following the README would.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

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
