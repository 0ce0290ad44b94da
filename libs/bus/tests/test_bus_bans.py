"""sipmesh_bus.bans: keys, records, and per-key TTL writes on a real NATS."""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from sipmesh_bus import bans
from sipmesh_bus.bans import Ban, ban_key, canonical_target, parse_ban_key
from sipmesh_bus.kvlist import live_entries


@pytest.mark.parametrize(
    ("target", "key", "canonical"),
    [
        pytest.param("203.0.113.9", "v4.203-0-113-9.32", "203.0.113.9", id="v4-address"),
        pytest.param("203.0.113.9/32", "v4.203-0-113-9.32", "203.0.113.9", id="v4-slash-32"),
        pytest.param("203.0.113.77/24", "v4.203-0-113-0.24", "203.0.113.0/24", id="v4-host-bits"),
        pytest.param("2001:DB8::1", "v6.2001-db8--1.128", "2001:db8::1", id="v6-address"),
        pytest.param("[2001:db8::1]", "v6.2001-db8--1.128", "2001:db8::1", id="v6-brackets"),
        pytest.param("2001:db8::/32", "v6.2001-db8--.32", "2001:db8::/32", id="v6-network"),
        pytest.param("::1", "v6.--1.128", "::1", id="v6-loopback"),
        pytest.param("0.0.0.0/0", "v4.0-0-0-0.0", "0.0.0.0/0", id="v4-everything"),
    ],
)
def test_bans_key_round_trip(target: str, key: str, canonical: str) -> None:
    assert canonical_target(target) == canonical
    assert ban_key(target) == key
    assert parse_ban_key(key) == canonical


@pytest.mark.parametrize("key", ["v4.1-2-3.32", "v5.1-2-3-4.32", "x", "v4.1-2-3-4.33", "v6.zz.1"])
def test_bans_parse_ban_key_rejects_foreign_keys(key: str) -> None:
    with pytest.raises(ValueError, match="not a") as exc_info:
        parse_ban_key(key)
    assert key in str(exc_info.value) or "not an IP" in str(exc_info.value)


@pytest.mark.parametrize("text", ["example.com", "1.2.3.4/40", "", "1.2.3"])
def test_bans_canonical_target_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        canonical_target(text)


def test_bans_record_round_trip_and_remaining() -> None:
    ban = Ban(target="203.0.113.9", reason="rate", created_at=100.0, expires_at=160.5, source="e1")
    assert bans.decode_ban(bans.encode_ban(ban)) == ban
    assert ban.remaining(100.0) == 61
    assert ban.remaining(160.4) == 1
    assert ban.remaining(160.5) == 0


def test_bans_decode_rejects_garbage() -> None:
    with pytest.raises(msgspec.DecodeError):
        bans.decode_ban(b"\xc1")


async def _bucket(url: str) -> tuple[NatsClient, KeyValue]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = f"bans_{uuid.uuid4().hex[:8]}"
    bucket = await js.create_key_value(
        KeyValueConfig(bucket=name, history=1, ttl=86_400.0, storage=StorageType.MEMORY)
    )
    return nc, bucket


@pytest.mark.integration
async def test_bans_put_read_delete_on_nats(nats_url: str) -> None:
    nc, bucket = await _bucket(nats_url)
    try:
        now = time.time()
        long = Ban(target="203.0.113.0/24", reason="manual", created_at=now, expires_at=now + 600)
        short = Ban(target="2001:db8::1", reason="rate", created_at=now, expires_at=now + 2)
        await bans.put_ban(bucket, long, now=now)
        await bans.put_ban(bucket, short, now=now)
        # Banned again: replaced, not an error.
        await bans.put_ban(bucket, short, now=now)
        assert await bans.read_bans(bucket, now) == [long, short]
        assert await bans.read_bans(bucket, now + 3) == [long]  # expires_at read locally
        # The server itself removes the key once its TTL is over.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            keys = await _keys(bucket)
            if ban_key(short.target) not in keys:
                break
            await asyncio.sleep(0.25)
        assert await _keys(bucket) == [ban_key(long.target)]
        assert await bans.delete_ban(bucket, "203.0.113.5/24")
        assert not await bans.delete_ban(bucket, "203.0.113.0/24")
        assert await bans.read_bans(bucket, now) == []
    finally:
        await nc.close()


async def test_bans_put_refuses_a_ban_that_is_over() -> None:
    ban = Ban(target="203.0.113.9", reason="rate", created_at=0.0, expires_at=10.0)
    with pytest.raises(ValueError, match="already over"):
        await bans.put_ban(None, ban, now=10.0)  # type: ignore[arg-type]


async def _keys(bucket: KeyValue) -> list[str]:
    """The keys the server still stores as live, sorted.

    ``now=0.0``: no key is judged expired by its Nats-TTL header here, so a
    key drops out only once the server has removed it.
    """
    return sorted(await live_entries(bucket, now=0.0))
