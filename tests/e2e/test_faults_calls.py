# ruff: noqa: F811 - the fixtures imported from the fixture modules are parameters here
"""Faults under SIPp call load, with real processes (issue 8, "Faults survived").

SIPp UAC (``fault_call_uac.xml``: INVITE, 200, ACK, 1 s, BYE, 200) -> edge ->
router -> SIPp UAS, at 20 calls/s (10 when anchored: see MEDIA_RATE). Each call
logs its outcome with wall-clock times, so a test places every call against the
moment it broke something:

- a router replica SIGKILLed: only what it held at that instant fails; the
  dialogs it set up are ended through the survivor (the router keeps no dialog
  state: its Record-Route token carries what a BYE needs);
- the media service SIGKILLed and restarted under anchored calls: no call
  fails; calls during the outage go on unanchored (their attempt event says
  why), later ones are anchored again;
- an RTPEngine instance SIGKILLed under load: no call fails, new calls go to the
  other instance;
- a hung registrar (SIGSTOP): REGISTERs get 503 with Retry-After after the edge's
  bus timeout, while OPTIONS to the edge and calls through the router keep their
  normal latency; after SIGCONT registrations succeed again.

There is one edge in a single-host test, so killing the edge is not tested here.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from sipmesh_edge.app import EdgeConfig
from tests.e2e.fault_fixtures import CallLog, Replica, micros, start_load
from tests.e2e.harness import Stack
from tests.e2e.media_fixtures import PING_INTERVAL, MediaStack, media_stack  # noqa: F401
from tests.e2e.router_fixtures import RouterStack, Uas, uas  # noqa: F401
from tests.e2e.sipp import write_users

pytestmark = pytest.mark.e2e

_numbers = itertools.count(1)
_defaults = EdgeConfig()
BUS_TIMEOUT: Final = _defaults.request_timeout
#: The edge's wait for a service before it answers 503 (the e2e edge keeps the default).
RETRY_AFTER: Final = _defaults.retry_after
RATE: Final = 20.0
#: Calls per second; each call holds 1 s, so about 20 dialogs are up at any time.
FAILED_AT_KILL: Final = 6
#: Calls a router crash may fail: the messages the dead replica had read and not
#: answered. A message takes the router a millisecond or two, and the kernel
#: closes its NATS connection at once, so at 20 calls/s (about 120 messages/s
#: through the routers) that is one or two; the margin is for a loaded machine.
MEDIA_RATE: Final = 10.0
#: Anchored calls per second: each RTPEngine of the e2e stack has 100 ports, 25
#: calls (RTP and RTCP for both sides), and one must take all of them alone.
OPTIONS_MAX_SECONDS: Final = BUS_TIMEOUT / 4
#: Worst latency allowed for traffic that does not wait on the hung service.


def _now_ms() -> float:
    return time.time() * 1000.0


def _callee(rs: RouterStack, phone: Uas, prefix: str) -> str:
    user = f"{prefix}{next(_numbers)}"
    rs.bind(user, phone.port)
    return user


def _calls(stack: Stack, tmp_path: Path, callee: str, count: int, rate: float = RATE) -> CallLog:
    """Run ``count`` calls to ``callee`` to their end (blocking)."""
    run = start_load(
        stack, tmp_path, "fault_call_uac.xml", calls=count, rate=rate, keys={"callee": callee}
    )
    return CallLog(run.wait())


# -- a router replica dies --------------------------------------------------------------------


def test_router_replica_killed_under_call_load_fails_only_calls_in_flight(
    private_stack: Stack, uas: Callable[..., Uas], tmp_path: Path
) -> None:
    stack = private_stack
    stack.start_edge()
    doomed = Replica(stack, "router-a")
    Replica(stack, "router-b")
    rs = RouterStack(stack)
    phone = uas(calls=10_000, timeout=90.0)
    callee = _callee(rs, phone, "survive")
    warmup = _calls(stack, tmp_path, callee, 4, rate=10)
    assert len(warmup.of("ended")) == 4, f"{warmup.describe()}\n{stack.logs()}"

    total = int(RATE * 7)
    run = start_load(
        stack, tmp_path, "fault_call_uac.xml", calls=total, rate=RATE, keys={"callee": callee}
    )
    time.sleep(3.0)
    invites = doomed.sample("sipmesh_router_handling_seconds_count", {"method": "INVITE"})
    killed_at = _now_ms()
    doomed.proc.kill()  # SIGKILL: no drain, whatever it held is lost
    log = CallLog(run.wait())

    # Every call is accounted for, and only the few in flight at the kill failed.
    assert len(log.calls) + log.result.failed == total, log.describe()
    assert log.failed <= FAILED_AT_KILL, f"{log.describe()}\n{stack.logs()}"
    # The dead replica was taking its share of the INVITEs (queue group) up to the end ...
    assert invites >= RATE * 3 / 4, invites
    # ... so about half of the dialogs up at the kill were set up by it: their BYEs,
    # sent after the kill, went through the survivor and got their 200.
    straddling = [
        c
        for c in log.of("ended")
        if c.answered_at is not None
        and c.bye_at is not None
        and c.answered_at < killed_at < c.bye_at
    ]
    assert len(straddling) >= RATE / 2, log.describe()
    # Calls placed after the kill all completed, through the survivor alone.
    after = [c for c in log.calls if (c.answered_at or c.invite_at or 0) > killed_at + 500]
    assert len(after) >= RATE * 3, log.describe()
    assert all(c.outcome == "ended" for c in after), log.describe()


# -- the media service dies and comes back ------------------------------------------------------


def _answered_media(ms: MediaStack, callee: str) -> list[tuple[float, str | None, str | None]]:
    """(answer time in ms, media instance, media error) of each answered call to ``callee``.

    The error is on the call's attempt event (the offer failed at the INVITE; the
    200 of an unanchored call is not sent to the media service at all).
    """
    events = ms.call_events(f"{callee}@")
    errors = {e.call_id: e.media_error for e in events if e.media_error}
    return [
        (e.at * 1000.0, e.media_instance, errors.get(e.call_id))
        for e in events
        if e.kind == "answered"
    ]


def test_media_service_killed_and_restarted_under_anchored_load_fails_no_call(
    media_stack: MediaStack, uas: Callable[..., Uas], tmp_path: Path
) -> None:
    ms = media_stack
    assert ms.media is not None
    phone = uas(calls=10_000, timeout=90.0)
    callee = _callee(ms, phone, "anchored")
    total = int(MEDIA_RATE * 10)
    run = start_load(
        ms.stack,
        tmp_path,
        "fault_call_uac.xml",
        calls=total,
        rate=MEDIA_RATE,
        keys={"callee": callee},
    )
    time.sleep(2.0)
    killed_at = _now_ms()
    ms.media.kill()
    time.sleep(2.0)
    restarted_at = _now_ms()
    ms.start_media()  # returns once /readyz answers
    back_at = _now_ms()
    log = CallLog(run.wait())

    # Router policy: a media failure never fails the call.
    assert log.failed == 0, f"{log.describe()}\n{ms.logs()}"
    assert len(log.of("ended")) == total, log.describe()
    answered = _answered_media(ms, callee)
    assert len(answered) == total, answered
    timeline = [(round(a[0] - killed_at), a[1], a[2]) for a in answered]
    timeline_note = (
        f"killed at 0 ms, restarted at {restarted_at - killed_at:.0f}, "
        f"ready at {back_at - killed_at:.0f}; answered: {timeline}"
    )
    before = [a for a in answered if a[0] < killed_at - 200]
    during = [a for a in answered if killed_at + 200 < a[0] < restarted_at]
    later = [a for a in answered if a[0] > back_at + 1000]
    assert len(before) >= MEDIA_RATE, timeline_note
    assert all(a[1] is not None for a in before), timeline_note
    # Unanchored while the media service is gone, with the reason recorded.
    assert len(during) >= MEDIA_RATE, timeline_note
    assert all(a[1] is None and a[2] for a in during), timeline_note
    # Anchored again once it is back, without anything restarted but itself.
    assert len(later) >= MEDIA_RATE, timeline_note
    assert all(a[1] is not None for a in later), timeline_note


def test_rtpengine_killed_under_load_moves_new_calls_to_the_other(
    media_stack: MediaStack, uas: Callable[..., Uas], tmp_path: Path
) -> None:
    ms = media_stack
    dead, alive = ms.rtp["rtp-a"], ms.rtp["rtp-b"]
    assert dead.proc.alive()
    assert alive.proc.alive()
    phone = uas(calls=10_000, timeout=90.0)
    callee = _callee(ms, phone, "moved")
    total = int(MEDIA_RATE * 6)
    run = start_load(
        ms.stack,
        tmp_path,
        "fault_call_uac.xml",
        calls=total,
        rate=MEDIA_RATE,
        keys={"callee": callee},
    )
    time.sleep(2.5)
    killed_at = _now_ms()
    dead.proc.kill()
    log = CallLog(run.wait())

    assert log.failed == 0, f"{log.describe()}\n{ms.logs()}"
    answered = _answered_media(ms, callee)
    before = [a[1] for a in answered if a[0] < killed_at - 200]
    # The media service marks it down after one failed ping; then no new call goes there.
    later = [a[1] for a in answered if a[0] > killed_at + 1000 * (PING_INTERVAL * 3 + 0.5)]
    assert "rtp-a" in before, before
    assert len(later) >= MEDIA_RATE * 2, later
    assert set(later) == {"rtp-b"}, [(a[0] - killed_at, a[1], a[2]) for a in answered]


# -- a hung registrar -----------------------------------------------------------------------------


def test_hung_registrar_gets_503_while_other_traffic_keeps_its_latency(
    private_stack: Stack, uas: Callable[..., Uas], tmp_path: Path
) -> None:
    stack = private_stack
    users = [(f"hung{i}", f"secret-hung-{i}") for i in range(10)]
    stack.cli(
        "user", "import", str(write_users(tmp_path / "users.csv", users)), "--domain", stack.domain
    )
    registrar = stack.start_registrar()
    stack.start_edge()
    Replica(stack, "router")
    stack.wait_registering()
    rs = RouterStack(stack)
    phone = uas(calls=10_000, timeout=90.0)
    callee = _callee(rs, phone, "busy")

    os.killpg(registrar.pid, signal.SIGSTOP)  # hung: its NATS subscription stays
    try:
        regs = start_load(stack, tmp_path, "fault_reg_stalled.xml", calls=10, rate=4)
        options = start_load(stack, tmp_path, "fault_options.xml", calls=200, rate=50)
        calls = start_load(
            stack, tmp_path, "fault_call_uac.xml", calls=40, rate=10, keys={"callee": callee}
        )
        reg_result, options_result, call_log = regs.wait(), options.wait(), CallLog(calls.wait())
    finally:
        os.killpg(registrar.pid, signal.SIGCONT)

    # Every REGISTER got a 503 with Retry-After once the bus timeout ran out.
    assert reg_result.returncode == 0, f"{reg_result.describe()}\n{stack.logs()}"
    waits = micros(reg_result, "unavailable")
    assert len(waits) == 10, reg_result.log_lines
    assert all(BUS_TIMEOUT * 0.9e6 <= w <= (BUS_TIMEOUT + 1.5) * 1e6 for w in waits), waits
    assert {line.split()[2] for line in reg_result.log_lines} == {str(RETRY_AFTER)}
    # Meanwhile the edge answered every OPTIONS itself, at its normal speed ...
    assert options_result.returncode == 0, options_result.describe()
    latencies = micros(options_result, "options")
    assert len(latencies) == 200, options_result.describe()
    assert max(latencies) < OPTIONS_MAX_SECONDS * 1e6, sorted(latencies)[-10:]
    # ... and calls through the router went on: all complete, set up quickly.
    assert len(call_log.of("ended")) == 40, f"{call_log.describe()}\n{stack.logs()}"
    setups = [c.setup_ms or 0.0 for c in call_log.of("ended")]
    assert max(setups) < OPTIONS_MAX_SECONDS * 1000, sorted(setups)[-10:]

    # Resumed, the registrar serves again by itself: real registrations get their 200.
    again = start_load(
        stack,
        tmp_path,
        "reg_load.xml",
        calls=len(users),
        rate=10,
        keys={"expires": "600"},
        users=write_users(tmp_path / "load.csv", users),
    )
    result = again.wait()
    ok = [line.split()[1] for line in result.log_lines if line.startswith("ok ")]
    assert ok == [u for u, _ in users], f"{result.describe()}\n{stack.logs()}"
