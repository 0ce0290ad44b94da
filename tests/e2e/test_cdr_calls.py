# ruff: noqa: F811 - the fixtures imported from cdr_fixtures are parameters here
"""CDRs of real calls: SIPp UAC -> edge -> router (LCR) -> SIPp gateway, events -> CDR -> SQLite.

Everything is a real process (nats-server, edge, router, ``python -m sipmesh_cdr``,
SIPp) and every record is read back with ``sipmesh cdr export --format json``:

- answered calls under 1/1 and 60/60 increments: one record each, rated;
- busy (486), cancelled (CANCEL after the 180: 487) and failed (the gateway's 404);
- a number no route matches: the router answers 404 itself and publishes no
  event (``core._route_initial``: ``no_route`` before ``_forward``), so there is
  no CDR: it was never a call attempt;
- a stream of calls while the CDR service is SIGKILLed twice and restarted:
  exactly one complete, correctly rated record per call.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cdr_fixtures import (  # noqa: F401 - fixtures
    CURRENCY,
    HOLD,
    ROUTES,
    CdrStack,
    Route,
    cdr_stack,
    sipp_call_ids,
)
from tests.e2e.harness import LOOPBACK

pytestmark = pytest.mark.e2e

_SLACK = 1.5
#: Seconds a hold may overrun on a loaded machine (BYE through edge and NATS).


def _rated(route: Route, duration: float) -> tuple[int, float]:
    """Billable seconds and cost, computed here from the route's terms (not the CDR code)."""
    seconds = math.ceil(round(duration, 3))
    if seconds <= route.first:
        billable = route.first
    else:
        billable = route.first + math.ceil((seconds - route.first) / route.step) * route.step
    return billable, round(route.rate * billable / 60, 6)


def _assert_answered(row: dict[str, Any], route: Route, number: str, began: float) -> None:
    """One answered, caller-ended call through ``route``'s gateway, rated by its terms."""
    assert row["complete"] is True
    assert row["disposition"] == "answered"
    assert row["status_code"] == 200
    assert row["hangup_side"] == "caller"
    assert row["caller"].startswith("caller-")
    assert row["caller"].endswith("@uac.example.net")
    assert row["callee"].startswith(f"sip:{number}@")
    assert row["callee_number"] == number
    assert row["source"].startswith(f"{LOOPBACK}:")
    assert row["destination_kind"] == "gateway"
    assert row["carrier"] == route.carrier
    assert row["gateway"] == route.gateway
    assert row["rate_prefix"] == route.prefix
    assert row["rate_per_minute"] == pytest.approx(route.rate)
    assert row["currency"] == CURRENCY
    assert (row["billing_first"], row["billing_step"]) == (route.first, route.step)
    assert began <= row["start_at"] <= row["answer_at"] <= row["end_at"] <= time.time()
    assert row["duration"] == pytest.approx(row["end_at"] - row["answer_at"], abs=0.002)
    assert HOLD <= row["duration"] <= HOLD + _SLACK
    billable, cost = _rated(route, row["duration"])
    assert row["billable"] == billable
    assert row["cost"] == pytest.approx(cost, abs=1e-6)


# -- answered -------------------------------------------------------------------


@pytest.mark.parametrize("route_name", ["answer_1_1", "answer_60_60"])
def test_cdr_answered_call_is_rated_by_the_route_increments(
    cdr_stack: CdrStack, tmp_path: Path, route_name: str
) -> None:
    route = ROUTES[route_name]
    number = cdr_stack.number(route_name)
    began = time.time()
    result = cdr_stack.call(tmp_path, number).wait()
    assert result.successful == 1, f"{result.describe()}\n{cdr_stack.stack.logs()}"
    [row] = cdr_stack.records(number, 1, settle=0.5)
    assert row["call_id"] == sipp_call_ids(result, "bye")[0]
    _assert_answered(row, route, number, began)
    if route.first == 60:
        assert (row["billable"], row["cost"]) == (60, pytest.approx(route.rate))


def test_cdr_answered_call_has_its_ring_time(cdr_stack: CdrStack, tmp_path: Path) -> None:
    """The gateway rings (180 without SDP) 200 ms before it answers."""
    number = cdr_stack.number("answer_1_1")
    result = cdr_stack.call(tmp_path, number).wait()
    assert result.successful == 1, result.describe()
    [row] = cdr_stack.records(number, 1)
    assert row["ring_at"] is not None, row
    assert row["start_at"] <= row["ring_at"] <= row["answer_at"]
    assert row["answer_at"] - row["ring_at"] >= 0.15


# -- unanswered -----------------------------------------------------------------


def test_cdr_busy_gateway_gives_busy_486(cdr_stack: CdrStack, tmp_path: Path) -> None:
    route = ROUTES["busy"]
    number = cdr_stack.number("busy")
    result = cdr_stack.call(tmp_path, number, scenario="cdr_uac_rejected.xml").wait()
    assert result.successful == 1, result.describe()
    [row] = cdr_stack.records(number, 1, settle=0.5)
    assert (row["disposition"], row["status_code"]) == ("busy", 486)
    assert (row["carrier"], row["gateway"]) == (route.carrier, route.gateway)
    assert row["answer_at"] is None
    assert (row["duration"], row["billable"], row["cost"]) == (0.0, 0, 0.0)
    assert row["start_at"] <= row["end_at"]


def test_cdr_caller_cancel_after_ringing_gives_cancelled_487(
    cdr_stack: CdrStack, tmp_path: Path
) -> None:
    number = cdr_stack.number("ring")
    result = cdr_stack.call(tmp_path, number, scenario="cdr_uac_cancel.xml").wait()
    assert result.successful == 1, f"{result.describe()}\n{cdr_stack.stack.logs()}"
    [row] = cdr_stack.records(number, 1, settle=0.5)
    assert row["call_id"] == sipp_call_ids(result, "cancelled")[0]
    assert (row["disposition"], row["status_code"]) == ("cancelled", 487)
    assert row["hangup_side"] == "caller"  # the caller's CANCEL ended it
    assert row["gateway"] == ROUTES["ring"].gateway
    assert row["answer_at"] is None
    assert (row["billable"], row["cost"]) == (0, 0.0)
    # The caller waited for the 180 and 300 ms more before its CANCEL.
    assert row["end_at"] - row["start_at"] >= 0.25


def test_cdr_gateway_404_gives_failed(cdr_stack: CdrStack, tmp_path: Path) -> None:
    number = cdr_stack.number("gone")
    result = cdr_stack.call(tmp_path, number, scenario="cdr_uac_rejected.xml").wait()
    assert result.successful == 1, result.describe()
    [row] = cdr_stack.records(number, 1, settle=0.5)
    assert (row["disposition"], row["status_code"]) == ("failed", 404)
    assert row["reason"] == "Not Found"
    assert row["carrier"] == ROUTES["gone"].carrier
    assert (row["billable"], row["cost"]) == (0, 0.0)


def test_cdr_unrouted_number_gets_404_and_no_record(cdr_stack: CdrStack, tmp_path: Path) -> None:
    """The router refuses it before any attempt (no event): not a call, so no CDR.

    A control call right after it proves the CDR service was keeping up.
    """
    unrouted = "4990" + cdr_stack.number("gone")[4:]
    refused = cdr_stack.call(tmp_path, unrouted, scenario="cdr_uac_rejected.xml").wait()
    assert refused.successful == 1, refused.describe()
    assert "404 No Route" in refused.messages
    control = cdr_stack.number("gone")
    assert cdr_stack.call(tmp_path, control, scenario="cdr_uac_rejected.xml").wait().successful == 1
    cdr_stack.records(control, 1)
    assert [r for r in cdr_stack.export() if r["callee_number"] == unrouted] == []


# -- crashes --------------------------------------------------------------------


def test_cdr_killed_twice_mid_stream_keeps_one_record_per_call(
    cdr_stack: CdrStack, tmp_path: Path
) -> None:
    route = ROUTES["answer_30_6"]
    number = cdr_stack.number("answer_30_6")
    calls = 30
    began = time.time()
    run = cdr_stack.call(tmp_path, number, calls=calls, rate=5.0, timeout=40.0)
    for _ in range(2):
        time.sleep(2.0)
        cdr_stack.kill_cdr()
        time.sleep(1.0)  # events pile up in CALLS meanwhile
        cdr_stack.start_cdr()
    result = run.wait()
    assert result.successful == calls, f"{result.describe()}\n{cdr_stack.stack.logs()}"
    call_ids = sipp_call_ids(result, "bye")
    assert len(set(call_ids)) == calls
    rows = cdr_stack.records(number, calls, timeout=30.0, settle=1.0)
    assert sorted(r["call_id"] for r in rows) == sorted(call_ids)
    for row in rows:
        _assert_answered(row, route, number, began)
        assert (row["billable"], row["cost"]) == (30, pytest.approx(0.45))
