"""sipmesh_bus.kvlist: listing the live keys of a KV bucket on a real NATS."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerInfo, KeyValueConfig, StorageType
from nats.js.kv import KeyValue
from nats.js.manager import JetStreamManager

from sipmesh_bus import kvlist
from sipmesh_bus.kvlist import ListTimeoutError, LiveEntry, live_entries


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param("never", None, id="never"),
        pytest.param("30", 30.0, id="whole-seconds"),
        pytest.param("1h30m", 5400.0, id="go-duration"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("5x", None, id="unknown-unit"),
        pytest.param("s", None, id="no-number"),
        pytest.param("1s junk", None, id="trailing-junk"),
    ],
)
def test__ttl_seconds(header: str | None, seconds: float | None) -> None:
    assert kvlist._ttl_seconds(header) == seconds


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        await client.close()


async def _bucket(nc: NatsClient, *, history: int = 1, marker_ttl: float | None = None) -> KeyValue:
    return await nc.jetstream().create_key_value(
        KeyValueConfig(
            bucket=f"list_{uuid.uuid4().hex[:8]}",
            history=history,
            storage=StorageType.MEMORY,
            limit_marker_ttl=marker_ttl,
        )
    )


async def _consumers(nc: NatsClient, bucket: KeyValue) -> int:
    info = await nc.jetstream().stream_info(bucket._stream)
    return info.state.consumer_count


async def _wait_gone(nc: NatsClient, bucket: KeyValue, key: str) -> None:
    """Until the server itself has removed ``key`` (its TTL is over).

    Not ``bucket.get``: nats-py returns a subject delete marker as an entry
    whose value is None.
    """
    js = nc.jetstream()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            msg = await js.get_last_msg(bucket._stream, f"{bucket._pre}{key}")
        except nats.js.errors.NotFoundError:
            return
        if msg.headers and "Nats-Marker-Reason" in msg.headers:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{key} outlived its TTL")


@pytest.mark.integration
async def test_live_entries_lists_only_live_keys(nc: NatsClient) -> None:
    bucket = await _bucket(nc)
    await bucket.put("live", b"1")
    await bucket.put("deleted", b"2")
    await bucket.delete("deleted")
    await bucket.put("purged", b"3")
    await bucket.purge("purged")
    await bucket.create("expired", b"4", msg_ttl=1)
    lasting = await bucket.create("lasting", b"5", msg_ttl=3600)
    empty = await bucket.put("empty", b"")
    await _wait_gone(nc, bucket, "expired")

    listed = await live_entries(bucket)

    assert listed == {
        "live": LiveEntry(key="live", value=b"1", revision=1),
        "lasting": LiveEntry(key="lasting", value=b"5", revision=lasting),
        "empty": LiveEntry(key="empty", value=b"", revision=empty),
    }
    assert await _consumers(nc, bucket) == 0  # the listing's consumer is gone


@pytest.mark.integration
async def test_live_entries_skips_a_key_whose_ttl_is_over_but_still_stored(nc: NatsClient) -> None:
    # The server removes expired messages on a timer: judged by the header
    # (stored time + Nats-TTL), a key past its TTL is not listed even while
    # it is still stored.
    bucket = await _bucket(nc)
    await bucket.create("short", b"1", msg_ttl=60)
    await bucket.create("long", b"2", msg_ttl=3600)
    await bucket.put("forever", b"3")

    assert set(await live_entries(bucket)) == {"short", "long", "forever"}
    assert set(await live_entries(bucket, now=time.time() + 120)) == {"long", "forever"}
    assert set(await live_entries(bucket, now=time.time() + 7200)) == {"forever"}


@pytest.mark.integration
async def test_live_entries_skips_subject_delete_markers(nc: NatsClient) -> None:
    # With a marker TTL, nats-server leaves a Nats-Marker-Reason marker where
    # a per-key TTL removed a key (it is the key's last message then).
    bucket = await _bucket(nc, marker_ttl=60)
    await bucket.create("expired", b"1", msg_ttl=1)
    await bucket.put("live", b"2")
    await _wait_gone(nc, bucket, "expired")

    assert set(await live_entries(bucket)) == {"live"}


@pytest.mark.integration
async def test_live_entries_of_an_empty_bucket_returns_at_once(nc: NatsClient) -> None:
    bucket = await _bucket(nc)
    started = time.perf_counter()
    assert await live_entries(bucket) == {}
    # No fetch at all: a fetch that finds nothing would linger a second.
    assert time.perf_counter() - started < 0.5
    assert await _consumers(nc, bucket) == 0


@pytest.mark.integration
async def test_live_entries_of_a_bucket_of_removed_keys_is_empty(nc: NatsClient) -> None:
    bucket = await _bucket(nc)
    for n in range(5):
        await bucket.put(f"k{n}", b"x")
    for n in range(5):
        await (bucket.delete if n % 2 else bucket.purge)(f"k{n}")

    assert await live_entries(bucket) == {}


@pytest.mark.integration
async def test_live_entries_gives_the_latest_revision_only(nc: NatsClient) -> None:
    bucket = await _bucket(nc, history=5)
    await bucket.put("k", b"old")
    newest = await bucket.put("k", b"new")
    await bucket.put("gone", b"x")
    await bucket.delete("gone")

    assert await live_entries(bucket) == {"k": LiveEntry(key="k", value=b"new", revision=newest)}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        pytest.param(">", ["a.1", "a.2", "a.b.3", "b.1"], id="all"),
        pytest.param("a.*", ["a.1", "a.2"], id="one-token"),
        pytest.param("a.>", ["a.1", "a.2", "a.b.3"], id="rest"),
        pytest.param("b.1", ["b.1"], id="exact"),
        pytest.param("c.*", [], id="no-match"),
    ],
)
async def test_live_entries_key_filter(nc: NatsClient, keys: str, expected: list[str]) -> None:
    bucket = await _bucket(nc)
    for key in ("a.1", "a.2", "a.b.3", "b.1"):
        await bucket.put(key, key.encode())

    listed = await live_entries(bucket, keys)

    assert sorted(listed) == expected
    assert all(entry.value == key.encode() for key, entry in listed.items())


@pytest.mark.integration
async def test_live_entries_lists_ten_thousand_keys(nc: NatsClient) -> None:
    bucket = await _bucket(nc)
    js = nc.jetstream()
    count = 10_000
    for start in range(0, count, 1000):
        await asyncio.gather(
            *(
                js.publish(f"{bucket._pre}user{n:05d}.example", b"v%d" % n)
                for n in range(start, start + 1000)
            )
        )
    await bucket.delete("user00000.example")

    started = time.perf_counter()
    listed = await live_entries(bucket)
    elapsed = time.perf_counter() - started

    assert len(listed) == count - 1
    assert "user00000.example" not in listed
    assert listed["user09999.example"].value == b"v9999"
    print(f"listed {len(listed)} keys in {elapsed:.3f} s")
    assert elapsed < 5.0  # about 0.3 s on the 2-core box; generous for a loaded one


@pytest.mark.integration
async def test_live_entries_times_out_rather_than_hang(
    nc: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = await _bucket(nc)
    await bucket.put("k", b"v")
    publish = nc.publish

    async def lose_pulls(subject: str, payload: bytes = b"", **kwargs: Any) -> None:
        if ".CONSUMER.MSG.NEXT." not in subject:  # the pull requests never arrive
            await publish(subject, payload, **kwargs)

    monkeypatch.setattr(nc, "publish", lose_pulls)
    started = time.perf_counter()
    with pytest.raises(ListTimeoutError):
        await live_entries(bucket, timeout=0.5)
    assert 0.5 <= time.perf_counter() - started < 2.0
    assert await _consumers(nc, bucket) == 0


@pytest.mark.integration
async def test_live_entries_ends_when_a_key_expires_before_it_is_pulled(
    nc: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One message per pull. After "stays" the consumer has one left, but
    # "goes" expires before the second pull: that pull gets a 404, and the
    # consumer's info says nothing is left.
    monkeypatch.setattr(kvlist, "_BATCH", 1)
    bucket = await _bucket(nc)
    await bucket.put("stays", b"1")
    await bucket.create("goes", b"2", msg_ttl=1)
    publish = nc.publish
    pulls = 0

    async def late_pull(subject: str, payload: bytes = b"", **kwargs: Any) -> None:
        nonlocal pulls
        if ".CONSUMER.MSG.NEXT." in subject:
            pulls += 1
            if pulls == 2:
                await _wait_gone(nc, bucket, "goes")
        await publish(subject, payload, **kwargs)

    consumer_info = JetStreamManager.consumer_info
    infos = 0

    async def counted_info(self: JetStreamManager, stream: str, consumer: str) -> ConsumerInfo:
        nonlocal infos
        infos += 1
        info: ConsumerInfo = await consumer_info(self, stream, consumer)
        return info

    monkeypatch.setattr(nc, "publish", late_pull)
    monkeypatch.setattr(JetStreamManager, "consumer_info", counted_info)
    started = time.perf_counter()
    listed = await live_entries(bucket, now=0.0)  # now=0.0: only the server's removal counts

    assert list(listed) == ["stays"]
    assert (pulls, infos) == (2, 1)
    assert time.perf_counter() - started < 5.0


@pytest.mark.integration
async def test_live_entries_loses_nothing_while_keys_are_written(nc: NatsClient) -> None:
    bucket = await _bucket(nc)
    js = nc.jetstream()
    before = [f"old.{n}" for n in range(3000)]
    await asyncio.gather(*(js.publish(f"{bucket._pre}{key}", b"o") for key in before))

    async def write() -> None:
        for n in range(300):
            await bucket.put(f"new.{n}", b"n")
            await bucket.put(f"old.{n}", b"changed")

    writer = asyncio.create_task(write())
    listed = await live_entries(bucket)
    await writer

    assert set(before) <= set(listed)
    assert all(entry.value in {b"o", b"changed"} for key, entry in listed.items() if key in before)
