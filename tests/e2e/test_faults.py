"""Faults under load: a registrar replica crashes, nats-server goes away and comes back.

SIPp runs ``reg_load.xml`` (REGISTER, 401, REGISTER with credentials, 200) at a
steady rate; a 503 at either step is an accepted outcome there, anything else
(timeouts, 500s) fails the call and so the run. Each call logs ``ok <user>`` or
``unavailable <user> <step>``, in order, so the tests know which AoRs must exist.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sipmesh_bus.natsserver import NatsServer
from tests.e2e.harness import LOOPBACK, Stack
from tests.e2e.sipp import SippResult, SippRun, write_users

pytestmark = pytest.mark.e2e

_UNAVAILABLE_AT_KILL = 20
#: 503s allowed for a registrar crash: the REGISTERs it held when it died (about a
#: millisecond's worth at this rate), with a wide margin for a loaded machine.


def _users(prefix: str, n: int) -> list[tuple[str, str]]:
    return [(f"{prefix}{i}", f"secret-{prefix}-{i}") for i in range(n)]


def _provision(stack: Stack, tmp_path: Path, users: list[tuple[str, str]]) -> None:
    path = write_users(tmp_path / "provision.csv", users)
    stack.cli("user", "import", str(path), "--domain", stack.domain)


def _load(stack: Stack, tmp_path: Path, users: list[tuple[str, str]], *, rate: float) -> SippRun:
    return SippRun(
        "reg_load.xml",
        target=(LOOPBACK, stack.sip_port),
        workdir=tmp_path,
        users=write_users(tmp_path / f"load-{users[0][0]}.csv", users),
        keys={"domain": stack.domain, "expires": "3600"},
        calls=len(users),
        rate=rate,
        timeout=60.0,
        trace_messages=False,
    )


def _outcomes(result: SippResult) -> tuple[list[str], list[str]]:
    """The users that got a 200, and those that got a 503, from the scenario's log."""
    ok = [line.split()[1] for line in result.log_lines if line.startswith("ok ")]
    unavailable = [line.split()[1] for line in result.log_lines if line.startswith("unavailable ")]
    return ok, unavailable


def _completed(result: SippResult, calls: int, stack: Stack) -> tuple[list[str], list[str]]:
    assert result.returncode == 0, f"{result.describe()}\n{stack.logs()}"
    assert result.failed == 0, result.describe()
    ok, unavailable = _outcomes(result)
    assert len(ok) + len(unavailable) == calls, result.log_lines[-20:]
    return ok, unavailable


def test_registrar_crash_under_load_loses_no_binding(private_stack: Stack, tmp_path: Path) -> None:
    stack = private_stack
    before, during = _users("pre", 100), _users("load", 600)
    _provision(stack, tmp_path, before + during)
    doomed = stack.start_registrar()
    stack.start_registrar()
    stack.start_edge()
    stack.wait_registering()
    warmup = _load(stack, tmp_path, before, rate=200).wait()
    registered_before, _ = _completed(warmup, len(before), stack)
    assert len(registered_before) == len(before)
    contacts_before = {u: b[0].contact for u, b in stack.all_bindings(registered_before).items()}

    # 100 calls/s is 200 REGISTERs/s (each call is challenged once), for 6 s.
    load = _load(stack, tmp_path, during, rate=100)
    time.sleep(2.0)
    doomed.kill()  # SIGKILL: whatever it was handling is lost
    ok, unavailable = _completed(load.wait(), len(during), stack)

    # Only what the dead replica held failed, and it failed with a 503, not silence.
    assert len(unavailable) <= _UNAVAILABLE_AT_KILL, unavailable
    after = stack.all_bindings([u for u, _ in before + during])
    # Every AoR registered before the crash is still there, untouched ...
    assert {u: [b.contact for b in after[u]] for u in registered_before} == {
        u: [c] for u, c in contacts_before.items()
    }
    # ... and every REGISTER that got its 200 during the load is stored.
    assert [u for u in ok if len(after[u]) != 1] == []
    assert all(len(after[u]) <= 1 for u in unavailable)
    # A replacement replica, once ready, serves the AoRs the dead one wrote.
    stack.registrars[1].kill()
    stack.start_registrar()
    again = _load(stack, tmp_path, before[:20], rate=50).wait()
    assert _completed(again, 20, stack)[1] == []


def test_registrar_joining_under_load_refuses_nobody(private_stack: Stack, tmp_path: Path) -> None:
    stack = private_stack
    users = _users("join", 400)
    # Many subscribers, so that loading the cache takes a while (20k: ~20 early 401s).
    _provision(stack, tmp_path, users + _users("idle", 20000))
    stack.start_registrar()
    stack.start_edge()
    stack.wait_registering()

    load = _load(stack, tmp_path, users, rate=100)
    time.sleep(1.5)
    stack.start_registrar()  # joins the queue group while REGISTERs flow
    result = load.wait()

    # A replica must not serve before it knows the subscribers: it would refuse
    # right credentials with 401.
    assert "401 Unauthorized" not in result.errors
    ok, unavailable = _completed(result, len(users), stack)
    assert unavailable == []
    assert len(ok) == len(users)


def test_nats_outage_answers_503_never_silence(
    private_stack: Stack, nats_server: NatsServer, tmp_path: Path
) -> None:
    stack = private_stack
    users = _users("out", 300)
    _provision(stack, tmp_path, users)
    stack.start_registrar()
    stack.start_edge()
    stack.wait_registering()

    # 50 calls/s for 6 s; NATS is gone from t=2 s to t=4 s.
    load = _load(stack, tmp_path, users, rate=50)
    time.sleep(2.0)
    nats_server.stop()
    time.sleep(2.0)
    nats_server.start()
    result = load.wait()

    # Every call ended with a 200 or a 503: no timeout, no other error.
    ok, unavailable = _completed(result, len(users), stack)
    assert len(unavailable) >= 50, "too few 503s for 2 s without NATS"
    assert len(ok) >= 50, "too few 200s before the outage"
    assert result.log_lines[0].startswith("ok ")
    # Bindings written before the outage survived the nats-server restart.
    found = stack.all_bindings(ok)
    assert [u for u in ok if len(found[u]) != 1] == []


def test_nats_restart_registrations_recover_by_themselves(
    private_stack: Stack, nats_server: NatsServer, tmp_path: Path
) -> None:
    stack = private_stack
    users = _users("back", 10)
    _provision(stack, tmp_path, users)
    stack.start_registrar()
    stack.start_edge()
    stack.wait_registering()
    assert _completed(_load(stack, tmp_path, users[:5], rate=50).wait(), 5, stack)[1] == []

    nats_server.stop()
    time.sleep(1.0)
    nats_server.start()

    # Nobody restarts anything: within a few seconds REGISTERs succeed again.
    deadline = time.monotonic() + 6.0
    unavailable = ["not tried"]
    while unavailable and time.monotonic() < deadline:
        time.sleep(0.5)
        result = _load(stack, tmp_path, users[5:], rate=50).wait()
        unavailable = _completed(result, 5, stack)[1]
    assert unavailable == [], stack.logs()
    assert all(len(b) == 1 for b in stack.all_bindings(u for u, _ in users).values())
