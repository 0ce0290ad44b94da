"""WireClient HPUB and request() against a real nats-server, nats-py and JetStream answering."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.wire import (
    PayloadTooLargeError,
    Reply,
    ReplyCallback,
    RequestFailure,
    WireClient,
)

pytestmark = pytest.mark.integration

Outcome = Reply | RequestFailure


@pytest.fixture
async def wire(nats_url: str) -> AsyncIterator[WireClient]:
    client = WireClient(NatsConfig(url=nats_url), name="wire-req-test")
    await client.connect()
    yield client
    await client.close()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def _silent(_msg: Msg) -> None:
    pass


def _outcomes() -> tuple[list[Outcome], asyncio.Event, ReplyCallback]:
    got: list[Outcome] = []
    event = asyncio.Event()

    def cb(value: Outcome) -> None:
        got.append(value)
        event.set()

    return got, event, cb


async def _flushed(nc: NatsClient) -> None:
    # nats-py writes flush()'s PING straight to the socket, ahead of a SUB
    # still queued for its flusher task: the second PING follows the SUB.
    await nc.flush()
    await nc.flush()


async def _one(wire: WireClient, subject: str | bytes, payload: bytes, **kw: object) -> Outcome:
    got, event, cb = _outcomes()
    assert wire.request(subject, payload, cb, timeout=kw.pop("timeout", 5.0), **kw)  # type: ignore[arg-type]
    await asyncio.wait_for(event.wait(), 10)
    await asyncio.sleep(0.05)  # a second call would land here
    assert len(got) == 1
    return got[0]


async def test_wire_hpub_reaches_nats_py_with_its_headers(wire: WireClient, nc: NatsClient) -> None:
    got: asyncio.Queue[Msg] = asyncio.Queue()
    await nc.subscribe("wire.h", cb=got.put)
    await _flushed(nc)
    headers = {"Nats-Msg-Id": "m-1", "X-Empty": "", "X-Text": "a b: c"}
    assert wire.publish("wire.h", b"body", headers=headers)
    assert wire.publish("wire.h", b"", "wire.reply", headers={"K": "v"})
    assert wire.publish("wire.h", b"plain")
    first, second, third = [await asyncio.wait_for(got.get(), 5) for _ in range(3)]
    assert (first.data, first.headers) == (b"body", headers)
    assert (second.data, second.reply, second.headers) == (b"", "wire.reply", {"K": "v"})
    assert (third.data, third.headers) == (b"plain", None)


async def test_wire_hpub_refuses_a_forged_header_and_queues_nothing(wire: WireClient) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        wire.publish("wire.h", b"x", headers={"A": "1\r\nB: 2"})
    with pytest.raises(ValueError, match="name"):
        wire.request("wire.h", b"x", lambda _: None, timeout=1, headers={"A B": "1"})
    assert wire.pending == 0
    with pytest.raises(PayloadTooLargeError):
        wire.request(
            "wire.h", b"x" * wire.max_payload, lambda _: None, timeout=1, headers={"A": "1"}
        )
    assert wire.pending == 0
    await wire.flush()  # the connection is still good


async def test_wire_request_gets_payload_and_headers_of_the_reply(
    wire: WireClient, nc: NatsClient
) -> None:
    async def answer(msg: Msg) -> None:
        assert msg.headers == {"Q": "1"}
        await nc.publish(msg.reply, b"re:" + msg.data)
        await nc.publish(msg.reply, b"late duplicate")  # the request is over: ignored

    async def answer_with_headers(msg: Msg) -> None:
        await nc.publish(msg.reply, b"h", headers={"Nats-Sequence": "7"})

    await nc.subscribe("wire.q", cb=answer)
    await nc.subscribe("wire.qh", cb=answer_with_headers)
    await _flushed(nc)
    reply = await _one(wire, "wire.q", b"ping", headers={"Q": "1"})
    assert isinstance(reply, Reply)
    assert (reply.payload, reply.status, reply.headers) == (b"re:ping", None, b"")
    reply = await _one(wire, b"wire.qh", b"")
    assert isinstance(reply, Reply)
    assert (reply.payload, reply.status, reply.header("nats-sequence")) == (b"h", None, "7")
    assert wire.pending == 0


async def test_wire_request_no_responders_is_a_503_reply(wire: WireClient) -> None:
    reply = await _one(wire, "wire.nobody." + secrets.token_hex(4), b"x")
    assert isinstance(reply, Reply)
    assert (reply.status, reply.payload) == (503, b"")


async def test_wire_request_times_out_once_and_keeps_the_others(
    wire: WireClient, nc: NatsClient
) -> None:
    async def slow(msg: Msg) -> None:
        await asyncio.sleep(0.4)
        await msg.respond(b"slow")

    await nc.subscribe("wire.silent", cb=_silent)
    await nc.subscribe("wire.slow", cb=slow)
    await _flushed(nc)
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow_got, slow_done, slow_cb = _outcomes()
    assert wire.request("wire.slow", b"", slow_cb, timeout=5.0)
    # A shorter deadline after a longer one re-arms the timer earlier.
    assert await _one(wire, "wire.silent", b"", timeout=0.2) is RequestFailure.TIMEOUT
    assert 0.2 <= loop.time() - started < 0.39
    await asyncio.wait_for(slow_done.wait(), 5)
    [reply] = slow_got
    assert isinstance(reply, Reply)
    assert reply.payload == b"slow"
    assert wire.pending == 0


async def test_wire_jetstream_publish_dedup_and_expected_sequence(
    wire: WireClient, nc: NatsClient
) -> None:
    js = nc.jetstream()
    stream = "WIRE" + secrets.token_hex(4).upper()
    subject = stream.lower() + ".a"
    await js.add_stream(name=stream, subjects=[stream.lower() + ".>"])
    try:

        async def ack(payload: bytes, **headers: str) -> dict[str, object]:
            reply = await _one(wire, subject, payload, headers=headers)
            assert isinstance(reply, Reply)
            assert reply.status is None
            value = json.loads(reply.payload)
            assert isinstance(value, dict)
            return value

        first = await ack(b"one", **{"Nats-Msg-Id": "id-1"})
        assert first["seq"] == 1
        assert "duplicate" not in first
        again = await ack(b"one", **{"Nats-Msg-Id": "id-1"})
        assert (again["seq"], again["duplicate"]) == (1, True)
        ok = await ack(b"two", **{"Nats-Expected-Last-Subject-Sequence": "1"})
        assert ok["seq"] == 2
        wrong = await ack(b"three", **{"Nats-Expected-Last-Subject-Sequence": "1"})
        error = wrong["error"]
        assert isinstance(error, dict)
        assert error["err_code"] == 10071
        msg = await js.get_msg(stream, seq=2)
        assert msg.data == b"two"
        assert msg.headers == {"Nats-Expected-Last-Subject-Sequence": "1"}
    finally:
        await js.delete_stream(stream)


async def test_wire_request_while_down_and_pending_failed_on_reconnect(
    nats_server: NatsServer,
) -> None:
    changes: list[bool] = []
    client = WireClient(
        NatsConfig(url=nats_server.url, reconnect_wait=0.05),
        name="wire-req-r",
        on_change=changes.append,
    )
    await client.connect()
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.05)
    try:
        await nc.subscribe("wire.silent", cb=_silent)
        await _flushed(nc)
        got, event, cb = _outcomes()
        for _ in range(3):
            assert client.request("wire.silent", b"", cb, timeout=30.0)
        await client.flush()
        assert client.pending == 3
        nats_server.stop()
        await asyncio.wait_for(event.wait(), 5)
        assert got == [RequestFailure.UNAVAILABLE] * 3  # now, not at the timeout
        assert client.pending == 0
        never: list[Outcome] = []
        assert not client.request("wire.silent", b"", never.append, timeout=1.0)
        nats_server.start()
        for _ in range(250):
            if client.connected and nc.is_connected:
                break
            await asyncio.sleep(0.02)
        assert changes == [False, True]

        async def echo(msg: Msg) -> None:
            await msg.respond(b"back")

        await nc.subscribe("wire.echo", cb=echo)
        await _flushed(nc)
        reply = await _one(client, "wire.echo", b"")  # the inbox SUB went again
        assert isinstance(reply, Reply)
        assert reply.payload == b"back"
        assert never == []
    finally:
        await nc.close()
        await client.close()


async def test_wire_close_fails_pending_requests(nats_url: str, nc: NatsClient) -> None:
    client = WireClient(NatsConfig(url=nats_url), name="wire-req-c")
    await client.connect()
    await nc.subscribe("wire.silent", cb=_silent)
    await _flushed(nc)
    got, _, cb = _outcomes()
    assert client.request("wire.silent", b"", cb, timeout=30.0)
    await client.close()
    assert got == [RequestFailure.UNAVAILABLE]
    assert not client.request("wire.silent", b"", cb, timeout=1.0)


async def test_wire_ask_awaits_the_reply_the_timeout_or_nothing_sent(
    wire: WireClient, nc: NatsClient, nats_url: str
) -> None:
    async def echo(msg: Msg) -> None:
        await msg.respond(b"re:" + msg.data)

    await nc.subscribe("wire.ask", cb=echo)
    await _flushed(nc)
    reply = await wire.ask("wire.ask", b"hi", timeout=5.0)
    assert isinstance(reply, Reply)
    assert reply.payload == b"re:hi"
    # A cancelled caller leaves the late reply nowhere to go, and nothing breaks.
    asking = asyncio.ensure_future(wire.ask("wire.ask", b"late", timeout=5.0))
    await asyncio.sleep(0)
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
    await nc.subscribe("wire.ask.silent", cb=_silent)
    await _flushed(nc)
    assert await wire.ask("wire.ask.silent", b"", timeout=0.2) is RequestFailure.TIMEOUT
    never = WireClient(NatsConfig(url=nats_url), name="wire-ask-unconnected")
    assert await never.ask("wire.ask", b"", timeout=1.0) is None
