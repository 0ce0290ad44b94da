"""The router's wire helpers against a real nats-server: requests, errors, nonce claims."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from sipmesh_bus import kv
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.wire import WireClient
from sipmesh_router.app import Router
from sipmesh_router.config import RouterConfig, RouterSettings
from sipmesh_router.wiring import Fold, WireRequests

pytestmark = pytest.mark.integration

SECRET = b"shared-secret-of-every-replica!!"


async def flushed(nc: NatsClient) -> None:
    # nats-py writes flush()'s PING straight to the socket, ahead of a SUB
    # still queued for its flusher task: the second PING follows the SUB.
    await nc.flush()
    await nc.flush()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = NatsClient()
    await client.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture
async def wire(nats_url: str) -> AsyncIterator[WireClient]:
    client = WireClient(NatsConfig(url=nats_url), name="wiring-test")
    await client.connect()
    yield client
    await client.close()


async def test_wire_requests_ask_gets_the_reply(nc: NatsClient, wire: WireClient) -> None:
    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data[::-1])

    await nc.subscribe("wiring.echo", cb=echo)
    await flushed(nc)
    requests = WireRequests(wire, nc)
    reply = await requests.ask("wiring.echo", b"abc", 2.0)
    assert reply is not None
    assert reply.payload == b"cba"
    assert (await requests.request("wiring.echo", b"xy", timeout=2.0)).data == b"yx"


async def test_wire_requests_fail_as_nats_py_does(nc: NatsClient, wire: WireClient) -> None:
    async def silent(msg: Msg) -> None:
        pass

    await nc.subscribe("wiring.silent", cb=silent)
    await flushed(nc)
    requests = WireRequests(wire, nc)
    with pytest.raises(nats.errors.NoRespondersError):
        await requests.ask("wiring.nobody", b"x", 2.0)
    with pytest.raises(nats.errors.TimeoutError):
        await requests.ask("wiring.silent", b"x", 0.05)
    with pytest.raises(nats.errors.MaxPayloadError):
        await requests.ask("wiring.silent", b"x" * (wire.max_payload + 1), 1.0)


async def test_wire_requests_go_through_nats_py_while_the_wire_is_down(
    nats_url: str, nc: NatsClient
) -> None:
    async def echo(msg: Msg) -> None:
        await msg.respond(b"via nats-py")

    await nc.subscribe("wiring.down", cb=echo)
    await flushed(nc)
    down = WireClient(NatsConfig(url=nats_url), name="never-connected")
    requests = WireRequests(down, nc)
    assert await requests.ask("wiring.down", b"x", 1.0) is None
    assert (await requests.request("wiring.down", b"x", timeout=2.0)).data == b"via nats-py"
    with pytest.raises(nats.errors.ConnectionClosedError):
        await WireRequests(down, None).request("wiring.down", b"x", timeout=1.0)


@pytest.mark.parametrize("use_wire", [False, True], ids=["nats-py", "wire"])
async def test_claim_once_then_refused(
    nats_url: str, nc: NatsClient, wire: WireClient, use_wire: bool
) -> None:
    js: JetStreamContext = nc.jetstream()
    await kv.ensure_jetstream(js)
    config = RouterConfig(
        nats=NatsConfig(url=nats_url), router=RouterSettings(domain="example.com", probe=False)
    )
    r = Router(
        config, js, secret=SECRET, registry=CollectorRegistry(), wire=wire if use_wire else None
    )
    await r.start()
    try:
        key = f"claim{id(r):x}.{int(use_wire):08x}"
        assert await r._claim(key, 30.4)
        assert not await r._claim(key, 30.4)
        # Stored as KeyValue.create(msg_ttl=) stores it: the same headers.
        bucket = await js.key_value(kv.BUCKET_NONCES)
        await bucket.create(key + "py", b"1", msg_ttl=31)
        stream = f"KV_{kv.BUCKET_NONCES}"
        ours = await js.get_last_msg(stream, f"$KV.{kv.BUCKET_NONCES}.{key}")
        theirs = await js.get_last_msg(stream, f"$KV.{kv.BUCKET_NONCES}.{key}py")
        assert ours.data == theirs.data == b"1"
        assert ours.headers == theirs.headers
        assert ours.headers is not None
        assert ours.headers.get("Nats-TTL") == "31"
        # A key nats-py refuses is refused on the wire too (through nats-py).
        with pytest.raises(nats.js.errors.InvalidKeyError):
            await r._claim("bad key", 30.0)
    finally:
        await r.close()


def test_fold_is_initial_until_loaded() -> None:
    got: list[tuple[str, bytes | None, bool]] = []
    loaded: list[bool] = []
    fold = Fold(lambda k, v, i: got.append((k, v, i)), lambda: loaded.append(True))
    fold.entry("a", b"1", 1)
    fold.entry("b", None, 2)
    fold.loaded()
    fold.entry("c", b"", 3)  # empty: deleted, as the nats-py watch reads it
    assert got == [("a", b"1", True), ("b", None, True), ("", None, True), ("c", None, False)]
    assert loaded == [True]
