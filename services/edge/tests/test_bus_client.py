"""The edge's BusClient on a real nats-server: replies, no responders, timeouts, outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.wire import WireClient
from sipmesh_edge.bus import BusClient, BusFailure, ReplyCallback

pytestmark = pytest.mark.integration

Result = bytes | BusFailure


async def _open(url: str) -> tuple[WireClient, BusClient]:
    wire = WireClient(NatsConfig(url=url, reconnect_wait=0.05), name="edge-test")
    await wire.connect()
    loop = asyncio.get_running_loop()
    bus = BusClient(wire, timeout=0.3, clock=loop.time)
    await bus.start()
    return wire, bus


async def _flushed(nc: NatsClient) -> None:
    # nats-py writes flush()'s PING straight to the socket, ahead of a SUB
    # still queued for its flusher task: the second PING follows the SUB.
    await nc.flush()
    await nc.flush()


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[BusClient]:
    wire, client = await _open(nats_url)
    yield client
    await client.close()
    await wire.close()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def _ignore(_msg: Msg) -> None:
    pass  # a responder that never answers


def _waiter() -> tuple[asyncio.Future[Result], ReplyCallback]:
    fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()

    def callback(value: Result) -> None:
        assert not fut.done(), "called twice"
        fut.set_result(value)

    return fut, callback


async def test_bus_request_gets_the_nats_py_reply(bus: BusClient, nc: NatsClient) -> None:
    async def respond(msg: Msg) -> None:
        await msg.respond(b"re:" + msg.data)

    await nc.subscribe("edge.test.echo", cb=respond)
    await _flushed(nc)
    fut, callback = _waiter()
    assert bus.request("edge.test.echo", b"hi", callback)
    assert bus.pending == 1
    assert await asyncio.wait_for(fut, 2) == b"re:hi"
    assert bus.pending == 0


async def test_bus_request_without_responders_fails_at_once(bus: BusClient) -> None:
    fut, callback = _waiter()
    assert bus.request("edge.test.nobody", b"x", callback)
    assert await asyncio.wait_for(fut, 2) is BusFailure.NO_RESPONDERS


async def test_bus_reply_callback_that_raises_spares_the_next_replies(
    bus: BusClient, nc: NatsClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def respond(msg: Msg) -> None:
        await msg.respond(b"re:" + msg.data)

    await nc.subscribe("edge.test.echo2", cb=respond)
    await _flushed(nc)

    def broken(_value: Result) -> None:
        raise RuntimeError("bug in the edge")

    fut, callback = _waiter()
    assert bus.request("edge.test.echo2", b"first", broken)
    assert bus.request("edge.test.echo2", b"second", callback)
    assert await asyncio.wait_for(fut, 2) == b"re:second"
    assert "reply callback failed" in caplog.text
    assert bus.pending == 0


async def test_bus_expire_fails_late_requests_with_timeout(bus: BusClient, nc: NatsClient) -> None:
    await nc.subscribe("edge.test.silent", cb=_ignore)
    await _flushed(nc)
    fut, callback = _waiter()
    assert bus.request("edge.test.silent", b"x", callback)
    now = asyncio.get_running_loop().time()
    bus.expire(now)
    assert not fut.done()
    bus.expire(now + 0.31)
    assert fut.result() is BusFailure.TIMEOUT
    assert bus.pending == 0


async def test_bus_publish_reaches_a_subscriber(bus: BusClient, nc: NatsClient) -> None:
    sub = await nc.subscribe("edge.test.pub")
    await _flushed(nc)
    assert bus.publish("edge.test.pub", b"fire-and-forget")
    msg = await sub.next_msg(timeout=2)
    assert msg.data == b"fire-and-forget"


async def test_bus_outage_fails_pending_and_refuses_new_requests(
    nats_server: NatsServer,
) -> None:
    wire, bus = await _open(nats_server.url)
    try:
        fut, callback = _waiter()
        nc = await nats.connect(nats_server.url)
        await nc.subscribe("edge.test.slow", cb=_ignore)
        await _flushed(nc)
        assert bus.request("edge.test.slow", b"x", callback)
        await wire.flush()  # delivered to the silent responder before it goes
        await nc.close()
        nats_server.stop()
        assert await asyncio.wait_for(fut, 5) is BusFailure.UNAVAILABLE
        assert not bus.connected
        never, callback2 = _waiter()
        assert not bus.request("edge.test.slow", b"x", callback2)
        assert not bus.publish("edge.test.slow", b"x")
        nats_server.start()
        for _ in range(250):
            if bus.connected:
                break
            await asyncio.sleep(0.02)
        assert bus.connected
        fut3, callback3 = _waiter()
        assert bus.request("edge.test.nobody", b"x", callback3)
        assert await asyncio.wait_for(fut3, 2) is BusFailure.NO_RESPONDERS  # inbox is back
        assert not never.done()
    finally:
        await bus.close()
        await wire.close()


async def test_bus_close_fails_pending_with_unavailable(nats_url: str) -> None:
    wire, bus = await _open(nats_url)
    fut, callback = _waiter()
    nc = await nats.connect(nats_url)
    try:
        await nc.subscribe("edge.test.hold", cb=_ignore)
        await _flushed(nc)
        assert bus.request("edge.test.hold", b"x", callback)
        await bus.close()
        assert fut.result() is BusFailure.UNAVAILABLE
        assert bus.pending == 0
    finally:
        await nc.close()
        await wire.close()
