"""The Outbox: background writes with retries, per-key order, back-pressure and drain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import nats.errors

from sipmesh_router.outbox import Outbox


class Log:
    def __init__(self) -> None:
        self.done: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def ok(self, name: str) -> Callable[[], None]:
        return lambda: self.done.append(name)

    def bad(self, name: str) -> Callable[[BaseException], None]:
        return lambda exc: self.failed.append((name, type(exc).__name__))


async def test_submit_returns_before_the_write_finishes() -> None:
    box, log = Outbox(), Log()
    gate = asyncio.Event()

    async def write() -> None:
        await gate.wait()

    await box.submit("k", write, on_done=log.ok("w"), on_failure=log.bad("w"))
    assert len(box) == 1
    assert log.done == []
    gate.set()
    await box.flush()
    assert log.done == ["w"]
    assert len(box) == 0


async def test_a_failed_write_is_retried_then_reported() -> None:
    box, log = Outbox(backoff=(0.0, 0.0)), Log()
    calls = {"flaky": 0, "dead": 0}

    async def flaky() -> None:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise nats.errors.TimeoutError

    async def dead() -> None:
        calls["dead"] += 1
        raise nats.errors.NoRespondersError

    await box.submit("a", flaky, on_done=log.ok("flaky"), on_failure=log.bad("flaky"))
    await box.submit("b", dead, on_done=log.ok("dead"), on_failure=log.bad("dead"))
    await box.flush()
    assert calls == {"flaky": 3, "dead": 3}
    assert log.done == ["flaky"]
    assert log.failed == [("dead", "NoRespondersError")]
    assert box.retries == 4


async def test_writes_of_one_key_keep_their_order_even_when_retried() -> None:
    box, log = Outbox(backoff=(0.01,)), Log()
    order: list[str] = []
    first_tries = 0

    async def first() -> None:
        nonlocal first_tries
        first_tries += 1
        if first_tries == 1:
            raise nats.errors.TimeoutError
        order.append("put")

    async def second() -> None:
        order.append("delete")

    async def other() -> None:
        order.append("other")

    await box.submit("call", first, on_done=log.ok("1"), on_failure=log.bad("1"))
    await box.submit("call", second, on_done=log.ok("2"), on_failure=log.bad("2"))
    await box.submit("x", other, on_done=log.ok("3"), on_failure=log.bad("3"))
    await box.flush()
    assert order == ["other", "put", "delete"]  # another key does not wait


async def test_submit_waits_for_room_when_full() -> None:
    box, log = Outbox(max_pending=1), Log()
    gate = asyncio.Event()

    async def write() -> None:
        await gate.wait()

    await box.submit("a", write, on_done=log.ok("a"), on_failure=log.bad("a"))
    second = asyncio.create_task(
        box.submit("b", write, on_done=log.ok("b"), on_failure=log.bad("b"))
    )
    await asyncio.sleep(0.02)
    assert not second.done()
    assert len(box) == 1
    gate.set()
    await second
    await box.flush()
    assert sorted(log.done) == ["a", "b"]


async def test_drain_waits_then_cancels_what_is_left() -> None:
    box, log = Outbox(), Log()

    async def quick() -> None:
        await asyncio.sleep(0.01)

    async def stuck() -> None:
        await asyncio.Event().wait()

    await box.submit("a", quick, on_done=log.ok("quick"), on_failure=log.bad("quick"))
    await box.submit("b", stuck, on_done=log.ok("stuck"), on_failure=log.bad("stuck"))
    assert await box.drain(0.2) == 1
    assert log.done == ["quick"]
    assert log.failed == [("stuck", "CancelledError")]
    assert len(box) == 0
    assert await box.drain(0.2) == 0
