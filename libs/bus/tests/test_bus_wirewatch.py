"""KvWatch against a real nats-server: load, changes, gaps, stalls, reconnects."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.wire import WireClient
from sipmesh_bus.wirewatch import KvWatch, WatchError, _removed

pytestmark = pytest.mark.integration

Entry = tuple[str, bytes | None, int]


class Seen:
    """What a watch delivered."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.loaded = 0

    def entry(self, key: str, value: bytes | None, revision: int) -> None:
        self.entries.append((key, value, revision))

    def on_loaded(self) -> None:
        self.loaded += 1

    async def wait(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.01)

    async def wait_for(self, key: str, value: bytes | None) -> int:
        """The revision of the first entry ``(key, value)``, once it came."""
        await self.wait(lambda: any(e[:2] == (key, value) for e in self.entries))
        return next(r for k, v, r in self.entries if (k, v) == (key, value))


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture
async def wire(nats_url: str) -> AsyncIterator[WireClient]:
    client = WireClient(NatsConfig(url=nats_url), name="wirewatch-test")
    await client.connect()
    yield client
    await client.close()


async def new_bucket(nc: NatsClient) -> tuple[str, KeyValue]:
    name = "w" + secrets.token_hex(4)
    return name, await nc.jetstream().create_key_value(KeyValueConfig(bucket=name, history=5))


async def test_wirewatch_loads_last_values_then_follows_changes(
    nc: NatsClient, wire: WireClient
) -> None:
    name, bucket = await new_bucket(nc)
    await bucket.put("a", b"1")
    await bucket.put("a", b"2")
    rev_b = await bucket.put("b", b"x")
    await bucket.put("c", b"gone")
    await bucket.delete("c")
    rev_c = 5  # the delete marker, after four puts
    seen = Seen()
    watch = KvWatch(wire, name, seen.entry, on_loaded=seen.on_loaded)
    await watch.start()
    try:
        await seen.wait(lambda: seen.loaded == 1)
        # The last entry of each key; a delete marker comes as None.
        assert sorted(seen.entries, key=str) == [
            ("a", b"2", 2),
            ("b", b"x", rev_b),
            ("c", None, rev_c),
        ]
        rev = await bucket.put("b", b"y")
        assert await seen.wait_for("b", b"y") == rev
        await bucket.purge("a")
        # The purge marker, after the put of b=y.
        assert await seen.wait_for("a", None) == rev + 1
        assert watch.revision == rev + 1
        assert seen.loaded == 1
        assert watch.consumers_created == 1
    finally:
        await watch.close()


async def test_wirewatch_empty_bucket_is_loaded_at_once(nc: NatsClient, wire: WireClient) -> None:
    name, bucket = await new_bucket(nc)
    seen = Seen()
    watch = KvWatch(wire, name, seen.entry, on_loaded=seen.on_loaded)
    await watch.start()
    try:
        assert watch.loaded
        assert seen.loaded == 1
        rev = await bucket.put("k", b"v")
        assert await seen.wait_for("k", b"v") == rev
    finally:
        await watch.close()


async def test_wirewatch_tells_deletes_from_empty_puts(nc: NatsClient, wire: WireClient) -> None:
    name, bucket = await new_bucket(nc)
    seen = Seen()
    watch = KvWatch(wire, name, seen.entry)
    await watch.start()
    try:
        subject = f"$KV.{name}."
        js = nc.jetstream()
        # An empty put (with and without headers) is a value, not a delete.
        r1 = await bucket.put("empty", b"")
        r2 = (await js.publish(subject + "hdr", b"", headers={"Nats-Msg-Id": "m1"})).seq
        # Markers as other clients or the server write them: any case, any reason.
        r3 = (await js.publish(subject + "del", b"", headers={"kv-operation": " DEL"})).seq
        r4 = (await js.publish(subject + "sdm", b"", headers={"Nats-Marker-Reason": "MaxAge"})).seq
        r5 = await bucket.put("v", b"x")
        await seen.wait_for("v", b"x")
        assert seen.entries == [
            ("empty", b"", r1),
            ("hdr", b"", r2),
            ("del", None, r3),
            ("sdm", None, r4),
            ("v", b"x", r5),
        ]
    finally:
        await watch.close()


def test__removed_reads_the_operation_header() -> None:
    assert _removed(b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n")
    assert _removed(b"NATS/1.0\r\nNats-TTL: 60\r\nKV-Operation: PURGE\r\n\r\n")
    assert not _removed(b"NATS/1.0\r\nNats-TTL: 60\r\n\r\n")
    assert not _removed(b"NATS/1.0\r\nKV-Operation: PUT\r\n\r\n")
    # The name in a value is not the header.
    assert not _removed(b"NATS/1.0\r\nX-Note: KV-Operation: DEL\r\n\r\n")


async def test_wirewatch_missing_bucket_raises(wire: WireClient) -> None:
    watch = KvWatch(wire, "no" + secrets.token_hex(4), lambda *_: None)
    with pytest.raises(WatchError):
        await watch.start()
    await watch.close()


async def test_wirewatch_gap_recreates_from_last_revision(nc: NatsClient, wire: WireClient) -> None:
    name, bucket = await new_bucket(nc)
    seen = Seen()
    watch = KvWatch(wire, name, seen.entry)
    await watch.start()
    try:
        rev1 = await bucket.put("k", b"1")
        await seen.wait_for("k", b"1")
        rev2 = await bucket.put("k", b"2")
        await seen.wait_for("k", b"2")
        # Pretend the second message never came: the consumer sequence the
        # next message carries skips one.
        watch._dseq -= 1
        watch.revision = rev1
        seen.entries.clear()
        rev3 = await bucket.put("k", b"3")
        await seen.wait(lambda: len(seen.entries) == 2)
        # Made again from revision 1 + 1: the missed entry, then the new one.
        assert seen.entries == [("k", b"2", rev2), ("k", b"3", rev3)]
        # Its entries may come before the reply to the create.
        await seen.wait(lambda: watch.consumers_created == 2)
    finally:
        await watch.close()


async def test_wirewatch_lost_tail_is_found_by_idle_heartbeat(
    nc: NatsClient, wire: WireClient
) -> None:
    name, bucket = await new_bucket(nc)
    seen = Seen()
    watch = KvWatch(wire, name, seen.entry, idle_heartbeat=0.2)
    await watch.start()
    try:
        rev1 = await bucket.put("k", b"1")
        rev2 = await bucket.put("k", b"2")
        await seen.wait_for("k", b"2")
        # The last message lost and nothing after it: only the server's
        # delivered count (asked on an idle heartbeat) tells.
        watch._dseq -= 1
        watch.revision = rev1
        seen.entries.clear()
        await seen.wait(lambda: bool(seen.entries))
        assert seen.entries == [("k", b"2", rev2)]
        # Its entries may come before the reply to the create.
        await seen.wait(lambda: watch.consumers_created == 2)
    finally:
        await watch.close()


async def test_wirewatch_survives_server_restart(nats_server: NatsServer) -> None:
    config = NatsConfig(url=nats_server.url, reconnect_wait=0.05)
    wire = WireClient(config, name="wirewatch-restart")
    await wire.connect()
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.05)
    seen = Seen()
    name, bucket = await new_bucket(nc)
    watch = KvWatch(wire, name, seen.entry, idle_heartbeat=0.5)
    try:
        await watch.start()
        rev1 = await bucket.put("k", b"before")
        await seen.wait_for("k", b"before")
        nats_server.stop()
        await seen.wait(lambda: not wire.connected)
        nats_server.start()
        await seen.wait(lambda: wire.connected and nc.is_connected, timeout=10)
        await seen.wait(lambda: watch.consumers_created == 2, timeout=10)
        rev2 = await bucket.put("k", b"after")
        assert await seen.wait_for("k", b"after") == rev2
        # Made again from the last revision seen: nothing twice.
        assert seen.entries == [("k", b"before", rev1), ("k", b"after", rev2)]
    finally:
        await watch.close()
        await nc.close()
        await wire.close()
