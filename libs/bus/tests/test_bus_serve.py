"""Service.serve without a NATS server: inline answers, tasks, cap, errors, drain, metrics.

A fake stands for the wire connection (:class:`sipmesh_bus.wire.WireClient`);
``fake.cb`` delivers one message the way ``data_received`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from sipmesh_bus import schema
from sipmesh_bus.config import NatsConfig, ServiceConfig
from sipmesh_bus.runtime import Service, parse_service_config, serve_envelopes_until_stopped
from sipmesh_bus.schema import Envelope
from sipmesh_bus.wire import MsgCallback

SUBJECT = "test.serve"
OnMsg = Callable[[Msg], Awaitable[None]]


class FakeWire:
    """Stands for the wire connection: records the callback and what is published."""

    def __init__(self) -> None:
        self.wire_cb: MsgCallback | None = None
        self.published: list[tuple[str, bytes]] = []
        self.paused = False
        self.subscribed: list[str] = []
        self.connected = True

    def subscribe(self, subject: str, callback: MsgCallback, queue: str | None = None) -> int:
        self.wire_cb = callback
        self.subscribed.append(f"{subject}/{queue}")
        return len(self.subscribed)

    @property
    def cb(self) -> OnMsg | None:
        if self.wire_cb is None:
            return None
        wire_cb = self.wire_cb

        async def deliver(msg: Msg) -> None:
            wire_cb(msg.subject.encode(), msg.reply.encode(), msg.data, None)

        return deliver

    def unsubscribe(self, sid: int) -> None:
        pass

    def publish(self, subject: bytes | str, payload: bytes, reply: bytes | None = None) -> bool:
        name = subject.decode() if isinstance(subject, bytes) else subject
        self.published.append((name, payload))
        return True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    async def flush(self, timeout: float = 2.0) -> None:
        pass

    async def close(self, timeout: float = 1.0) -> None:
        pass


def _service(
    drain_timeout: float = 5.0, request_timeout: float = 2.0
) -> tuple[Service, FakeWire, CollectorRegistry]:
    registry = CollectorRegistry()
    config = ServiceConfig(
        nats=NatsConfig(drain_timeout=drain_timeout, request_timeout=request_timeout)
    )
    svc = Service("test", config, registry=registry, install_signal_handlers=False)
    fake = FakeWire()
    svc._wire = fake  # type: ignore[assignment]
    return svc, fake, registry


def _msg(fake: FakeWire, data: bytes, reply: str = "inbox.1") -> Msg:
    return Msg(fake, subject=SUBJECT, reply=reply, data=data)  # type: ignore[arg-type]


def _decode(data: bytes) -> bytes:
    if data == b"bad":
        raise msgspec.DecodeError("bad")
    return data


def _on_error(exc: Exception, raw: bytes) -> bytes:
    return b"error:" + type(exc).__name__.encode() + b":" + raw


async def _serve(svc: Service, fake: FakeWire, handler: Any, **kw: Any) -> OnMsg:
    await svc.serve(
        SUBJECT, handler, queue="q", decode=_decode, encode=bytes, on_error=_on_error, **kw
    )
    assert fake.cb is not None
    return fake.cb


def _count(registry: CollectorRegistry, outcome: str) -> float | None:
    return registry.get_sample_value(
        "sipmesh_bus_requests_total", {"subject": SUBJECT, "outcome": outcome}
    )


async def test_a_handler_that_does_not_suspend_is_answered_inline() -> None:
    svc, fake, registry = _service()

    async def handler(data: bytes) -> bytes:
        return data.upper()

    cb = await _serve(svc, fake, handler)
    for n in range(3):
        await cb(_msg(fake, b"ping%d" % n))
        # Answered before the callback returned, without a task.
        assert fake.published[-1] == ("inbox.1", b"PING%d" % n)
        assert not svc._inflight
    assert _count(registry, "ok") == 3
    assert (
        registry.get_sample_value(
            "sipmesh_bus_request_duration_seconds_count", {"subject": SUBJECT}
        )
        == 3
    )


async def test_a_handler_that_suspends_goes_on_in_a_task() -> None:
    svc, fake, registry = _service()
    gate = asyncio.Event()
    woken: list[object] = []

    async def handler(data: bytes) -> bytes:
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, "value")
        woken.append(await fut)  # the result comes back through the wrapper
        await gate.wait()
        await asyncio.sleep(0)  # a bare yield, passed through as well
        return data + b"!"

    cb = await _serve(svc, fake, handler)
    await cb(_msg(fake, b"slow"))
    assert fake.published == []
    assert len(svc._inflight) == 1
    (task,) = svc._inflight
    gate.set()
    await task
    assert woken == ["value"]
    assert fake.published == [("inbox.1", b"slow!")]
    assert _count(registry, "ok") == 1
    assert not svc._inflight


async def test_requests_started_together_may_wait_for_the_same_future() -> None:
    # Both first steps run inline, before either task takes the future: the
    # second task must still accept it (a shared event, lock or cache fill).
    svc, fake, registry = _service()
    shared: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(data: bytes) -> bytes:
        return data + await shared

    cb = await _serve(svc, fake, handler)
    await cb(_msg(fake, b"one", reply="inbox.1"))
    await cb(_msg(fake, b"two", reply="inbox.2"))
    assert len(svc._inflight) == 2
    shared.set_result(b"!")
    await asyncio.wait(set(svc._inflight))
    assert sorted(fake.published) == [("inbox.1", b"one!"), ("inbox.2", b"two!")]
    assert _count(registry, "ok") == 2
    assert _count(registry, "error") is None


async def test_a_handler_returning_another_awaitable_is_awaited() -> None:
    svc, fake, registry = _service()
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[bytes]] = []

    def handler(data: bytes) -> asyncio.Future[bytes]:
        fut = loop.create_future()
        if data == b"now":
            fut.set_result(b"done")
        futures.append(fut)
        return fut

    cb = await _serve(svc, fake, handler)
    await cb(_msg(fake, b"now", reply="inbox.1"))
    await cb(_msg(fake, b"later", reply="inbox.2"))
    futures[1].set_result(b"late")
    await asyncio.wait(set(svc._inflight))
    assert sorted(fake.published) == [("inbox.1", b"done"), ("inbox.2", b"late")]
    assert _count(registry, "ok") == 2


async def test_a_handler_raising_before_returning_an_awaitable_goes_to_on_error() -> None:
    svc, fake, registry = _service()

    def handler(data: bytes) -> asyncio.Future[bytes]:
        raise ValueError(data.decode())

    cb = await _serve(svc, fake, handler)
    await cb(_msg(fake, b"boom"))
    assert fake.published == [("inbox.1", b"error:ValueError:boom")]
    assert _count(registry, "error") == 1


@pytest.mark.parametrize("suspend", [False, True])
async def test_errors_go_to_on_error_before_and_after_suspending(suspend: bool) -> None:
    svc, fake, registry = _service()

    async def handler(data: bytes) -> bytes:
        if suspend:
            await asyncio.sleep(0)
        raise ValueError(data.decode())

    cb = await _serve(svc, fake, handler)
    await cb(_msg(fake, b"bad"))
    await cb(_msg(fake, b"boom"))
    if svc._inflight:
        await asyncio.wait(set(svc._inflight))
    assert sorted(fake.published) == [
        ("inbox.1", b"error:DecodeError:bad"),
        ("inbox.1", b"error:ValueError:boom"),
    ]
    assert _count(registry, "bad_request") == 1
    assert _count(registry, "error") == 1


async def test_max_concurrency_holds_requests_back_without_pausing_reading() -> None:
    # Reading must go on at the cap: the replies suspended handlers wait for
    # (the registrar's compare-and-set writes) come on this same connection.
    svc, fake, _ = _service()
    release = asyncio.Event()

    async def handler(data: bytes) -> bytes:
        await release.wait()
        return data

    cb = await _serve(svc, fake, handler, max_concurrency=2)
    await cb(_msg(fake, b"1"))
    await cb(_msg(fake, b"2"))
    await cb(_msg(fake, b"3"))  # at the cap: held back
    await cb(_msg(fake, b"4"))
    await asyncio.sleep(0.01)
    assert not fake.paused
    assert len(svc._inflight) == 2
    release.set()
    for _ in range(100):
        if len(fake.published) == 4:
            break
        await asyncio.sleep(0.01)
    assert [d for _, d in fake.published] == [b"1", b"2", b"3", b"4"]
    assert not svc._inflight


async def test_a_handler_at_the_cap_still_gets_the_reply_it_waits_for() -> None:
    # The deadlock this guards against: every slot taken by handlers awaiting
    # a reply delivered on the serving connection itself.
    svc, fake, _ = _service()
    waiting: list[asyncio.Future[bytes]] = []

    async def handler(data: bytes) -> bytes:
        if data.startswith(b"ack"):
            return data
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiting.append(fut)
        return await fut

    cb = await _serve(svc, fake, handler, max_concurrency=2)
    await cb(_msg(fake, b"1"))
    await cb(_msg(fake, b"2"))
    await cb(_msg(fake, b"ack-3"))  # held back behind the two
    assert not fake.paused
    for fut in waiting:  # their replies arrive: nothing blocked their reading
        fut.set_result(b"done")
    for _ in range(100):
        if len(fake.published) == 3:
            break
        await asyncio.sleep(0.01)
    assert sorted(d for _, d in fake.published) == [b"ack-3", b"done", b"done"]


async def test_the_backlog_sheds_its_oldest_past_max_backlog() -> None:
    svc, fake, registry = _service()
    release = asyncio.Event()

    async def handler(data: bytes) -> bytes:
        await release.wait()
        return data

    cb = await _serve(svc, fake, handler, max_concurrency=1, max_backlog=2)
    for n in range(5):  # 0 runs, 1..4 queue: 1 and 2 are shed
        await cb(_msg(fake, b"%d" % n))
    assert _count(registry, "shed") == 2
    release.set()
    for _ in range(100):
        if len(fake.published) == 3:
            break
        await asyncio.sleep(0.01)
    assert [d for _, d in fake.published] == [b"0", b"3", b"4"]
    # Shed requests got no reply: they are counted, not timed.
    duration = "sipmesh_bus_request_duration_seconds_count"
    assert registry.get_sample_value(duration, {"subject": SUBJECT}) == 3


async def test_held_back_requests_older_than_the_request_timeout_are_shed() -> None:
    svc, fake, registry = _service(request_timeout=0.05)
    release = asyncio.Event()

    async def handler(data: bytes) -> bytes:
        await release.wait()
        return data

    cb = await _serve(svc, fake, handler, max_concurrency=1)
    await cb(_msg(fake, b"0"))
    await cb(_msg(fake, b"stale"))
    await asyncio.sleep(0.1)  # its requester has answered 503 by now
    release.set()
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert [d for _, d in fake.published] == [b"0"]
    assert _count(registry, "shed") == 1


async def test_close_waits_for_suspended_requests() -> None:
    svc, fake, _ = _service()

    async def handler(data: bytes) -> bytes:
        await asyncio.sleep(0.05)
        return data

    cb = await _serve(svc, fake, handler)
    await cb(_msg(fake, b"late"))
    assert fake.published == []
    await svc.close()
    assert fake.published == [("inbox.1", b"late")]


async def test_close_cancels_past_the_deadline_into_the_handler() -> None:
    svc, fake, _ = _service(drain_timeout=0.05)
    seen: list[str] = []

    async def handler(data: bytes) -> bytes:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return data

    cb = await _serve(svc, fake, handler)
    await cb(_msg(fake, b"stuck"))
    await asyncio.wait_for(svc.close(), 2.0)
    assert seen == ["cancelled"]
    assert fake.published == []
    assert not svc._inflight


class _App:
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    async def handle(self, env: Envelope) -> bytes:
        self.seen.append(env.data)
        return b"ok"

    def on_error(self, exc: Exception, raw: bytes) -> bytes:
        return b"error"


async def test_serve_envelopes_until_stopped_serves_each_subject_until_stop() -> None:
    svc, fake, _ = _service()
    subscribed = fake.subscribed
    app = _App()
    running = asyncio.ensure_future(
        serve_envelopes_until_stopped(svc, app, ("a.1", "a.2"), queue="grp")
    )
    await asyncio.sleep(0.01)
    assert subscribed == ["a.1/grp", "a.2/grp"]
    assert fake.cb is not None
    env = Envelope(
        edge_id="e",
        transport="udp",
        source_host="127.0.0.1",
        source_port=5062,
        local_host="127.0.0.1",
        local_port=5060,
        received_at=0.0,
        data=b"REGISTER",
    )
    await fake.cb(_msg(fake, schema.encode(env)))
    await fake.cb(_msg(fake, b"not an envelope"))
    assert app.seen == [b"REGISTER"]
    assert len(fake.published) == 2
    assert not running.done()
    svc.stop()
    await asyncio.wait_for(running, 1.0)


def test_parse_service_config_reads_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("nats:\n  url: nats://127.0.0.1:1\n  drain_timeout: 3\n")
    config = parse_service_config(
        ServiceConfig, ["--config", str(path)], prog="x", description=None
    )
    assert (config.nats.url, config.nats.drain_timeout) == ("nats://127.0.0.1:1", 3.0)
    config = parse_service_config(
        ServiceConfig,
        ["--config", str(path), "--nats-url", "nats://127.0.0.1:2"],
        prog="x",
        description=None,
    )
    assert (config.nats.url, config.nats.drain_timeout) == ("nats://127.0.0.1:2", 3.0)
    with pytest.raises(SystemExit):
        parse_service_config(ServiceConfig, ["--bogus"], prog="x", description=None)


async def test_close_also_lets_held_back_requests_finish() -> None:
    svc, fake, _ = _service()

    async def handler(data: bytes) -> bytes:
        await asyncio.sleep(0.01)
        return data

    cb = await _serve(svc, fake, handler, max_concurrency=1)
    for n in range(3):
        await cb(_msg(fake, b"%d" % n))
    assert len(svc._inflight) == 1  # two held back
    await svc.close()
    assert [d for _, d in fake.published] == [b"0", b"1", b"2"]
    assert not svc._inflight


async def test_close_past_the_deadline_drops_held_back_requests() -> None:
    svc, fake, _ = _service(drain_timeout=0.05)

    async def handler(data: bytes) -> bytes:
        await asyncio.sleep(30)
        return data

    cb = await _serve(svc, fake, handler, max_concurrency=1)
    for n in range(3):
        await cb(_msg(fake, b"%d" % n))
    await asyncio.wait_for(svc.close(), 2.0)
    await asyncio.sleep(0)
    assert fake.published == []
    assert not svc._inflight  # the cancelled one did not start the held-back ones


def test_connected_gauge_is_1_only_while_both_connections_are_up() -> None:
    svc, _, registry = _service()
    svc._m_connected.set(1)  # as start() leaves it

    def connected() -> float | None:
        return registry.get_sample_value("sipmesh_nats_connected")

    svc._wire_changed(False)
    assert connected() == 0  # the hot path is down although nats-py is up
    svc._connection_changed(False)
    svc._wire_changed(True)
    assert connected() == 0  # nats-py still down
    svc._connection_changed(True)
    assert connected() == 1
    assert registry.get_sample_value("sipmesh_nats_reconnects_total") == 2
