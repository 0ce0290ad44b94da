"""ensure_jetstream and KV expiry against a real nats-server."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from sipmesh_bus import kv, subjects
from sipmesh_bus.natsserver import NatsServer, NatsServerError

pytestmark = pytest.mark.integration


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        await client.close()


async def test_ensure_jetstream_creates_everything_idempotently(nc: NatsClient) -> None:
    js = nc.jetstream()
    await kv.ensure_jetstream(js)
    await kv.ensure_jetstream(js)  # a second replica starting: no error, no change

    for bucket in kv.BUCKETS:
        status = await (await js.key_value(bucket.bucket)).status()
        assert status.bucket == bucket.bucket
        assert status.history == bucket.history
        info = await js.stream_info(f"KV_{bucket.bucket}")
        assert info.config.allow_msg_ttl is True
    calls = await js.stream_info(kv.STREAM_CALLS)
    assert calls.config.subjects == [subjects.CALL_EVENTS]
    dead = await js.stream_info(kv.STREAM_CDR_DEAD)
    assert dead.config.subjects == [subjects.CDR_DEAD_LETTER]


async def test_ensure_jetstream_concurrent_replicas(nc: NatsClient) -> None:
    js = nc.jetstream()
    await asyncio.gather(*(kv.ensure_jetstream(js) for _ in range(3)))
    assert (await js.stream_info(kv.STREAM_CALLS)).config.name == kv.STREAM_CALLS


async def test_ensure_jetstream_updates_an_outdated_bucket(nc: NatsClient) -> None:
    js = nc.jetstream()
    await kv.ensure_jetstream(js)
    # Someone created "health" with an older config (no TTL, history 3).
    await js.delete_key_value(kv.BUCKET_HEALTH)
    await js.create_key_value(KeyValueConfig(bucket=kv.BUCKET_HEALTH, history=3))
    await kv.ensure_jetstream(js)
    info = await js.stream_info(f"KV_{kv.BUCKET_HEALTH}")
    assert info.config.max_msgs_per_subject == 1
    assert info.config.max_age == 300.0


async def test_per_key_ttl_expires_a_location_binding(nc: NatsClient) -> None:
    js = nc.jetstream()
    await kv.ensure_jetstream(js)
    location = await js.key_value(kv.BUCKET_LOCATION)
    short, long = f"aor.{uuid.uuid4().hex}", f"aor.{uuid.uuid4().hex}"
    await location.create(short, b"binding", msg_ttl=1)
    await location.create(long, b"binding", msg_ttl=60)
    assert (await location.get(short)).value == b"binding"

    deadline = asyncio.get_running_loop().time() + 8
    while True:
        try:
            await location.get(short)
        except KeyNotFoundError:
            break
        assert asyncio.get_running_loop().time() < deadline, "per-key TTL did not expire"
        await asyncio.sleep(0.2)
    assert (await location.get(long)).value == b"binding"


async def test_nonce_replay_detection_uses_create(nc: NatsClient) -> None:
    # The registrar records "nonce/nc" with create(): a second create of the
    # same key fails, which is how a replayed nonce-count is detected.
    js = nc.jetstream()
    await kv.ensure_jetstream(js)
    nonces = await js.key_value(kv.BUCKET_NONCES)
    key = f"n{uuid.uuid4().hex}.00000001"
    await nonces.create(key, b"1", msg_ttl=30)
    with pytest.raises(KeyWrongLastSequenceError):
        await nonces.create(key, b"1", msg_ttl=30)


def test_nats_server_restarts_on_the_same_port_with_its_store(nats_server: NatsServer) -> None:
    url = nats_server.url
    nats_server.stop()
    assert not nats_server.is_running()
    assert nats_server.start() == url


def test_nats_server_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(NatsServerError) as exc_info:
            NatsServer(store_dir=tmp_path, port=port).start()
    assert str(exc_info.value) == f"cannot start nats-server: 127.0.0.1:{port} is already in use"
