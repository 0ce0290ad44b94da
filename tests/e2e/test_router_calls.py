# ruff: noqa: F811 - the fixtures imported from router_fixtures are parameters here
"""Calls through sipmesh with real processes: SIPp UAC -> edge -> router -> SIPp UAS.

- to a registered user (a binding in KV, as the registrar writes it): the whole
  INVITE/100/180/200/ACK/BYE/200 exchange, and the call events in stream CALLS;
- through a dispatcher set of two UAS: both get calls (round robin); one is
  killed, the prober marks it down and the calls go to the other;
- failover: the set's first destination answers 503, the call goes on to the
  next one and succeeds.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.router_fixtures import (  # noqa: F401 - fixtures
    RouterStack,
    Uas,
    call_stack,
    run_uac,
    uas,
)

pytestmark = pytest.mark.e2e

_numbers = itertools.count(1)


def _wait(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


def test_router_call_to_registered_user_completes_with_events(
    call_stack: RouterStack, uas: Callable[..., Uas], tmp_path: Path
) -> None:
    phone = uas()
    user = f"callee{next(_numbers)}"
    call_stack.bind(user, phone.port)
    result = run_uac(call_stack, tmp_path, user)
    assert result.successful == 1, f"{result.describe()}\n{phone.messages()}\n{call_stack.logs()}"
    assert phone.invites() == [f"sip:{user}@127.0.0.1:{phone.port}"]
    kinds = [e.kind for e in call_stack.call_events(f"{user}@")]
    assert kinds == ["attempt", "ringing", "answered", "ended"], kinds
    ended = call_stack.call_events(f"{user}@")[-1]
    assert ended.hangup_side == "caller"


def test_router_dispatcher_spreads_calls_and_skips_a_dead_pbx(
    call_stack: RouterStack, uas: Callable[..., Uas], tmp_path: Path
) -> None:
    one, two = uas(), uas()
    prefix = f"5{next(_numbers):02d}"
    call_stack.pool(f"pool{prefix}", prefix, [one.port, two.port], algorithm="round_robin")
    _wait(
        lambda: all((h := call_stack.health(u.port)) is not None and h.up for u in (one, two)),
        "both PBXs probed up",
    )
    result = run_uac(call_stack, tmp_path, f"{prefix}1000", calls=4)
    assert result.successful == 4, f"{result.describe()}\n{call_stack.logs()}"
    assert len(one.invites()) >= 1
    assert len(two.invites()) >= 1
    assert len(one.invites()) + len(two.invites()) == 4
    two.kill()
    _wait(
        lambda: (h := call_stack.health(two.port)) is not None and not h.up,
        "the dead PBX probed down",
    )
    before = len(one.invites())
    result = run_uac(call_stack, tmp_path, f"{prefix}2000", calls=4)
    assert result.successful == 4, f"{result.describe()}\n{call_stack.logs()}"
    assert len(one.invites()) == before + 4


def test_router_dispatcher_fails_over_on_503(
    call_stack: RouterStack, uas: Callable[..., Uas], tmp_path: Path
) -> None:
    busy, good = uas("call_uas_503.xml"), uas()
    prefix = f"6{next(_numbers):02d}"
    call_stack.pool(f"pool{prefix}", prefix, [busy.port, good.port], algorithm="priority")
    _wait(
        lambda: all((h := call_stack.health(u.port)) is not None and h.up for u in (busy, good)),
        "both PBXs probed up",
    )
    result = run_uac(call_stack, tmp_path, f"{prefix}1000", calls=2)
    assert result.successful == 2, f"{result.describe()}\n{call_stack.logs()}"
    assert len(busy.invites()) == 2
    assert len(good.invites()) == 2
    attempts = [e for e in call_stack.call_events(f"{prefix}1000@") if e.kind == "attempt"]
    assert len(attempts) == 4  # each call: the busy PBX, then the good one
