"""sipmesh_edge.guard: metrics without NATS, and bans shared by two guards on a real NATS."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable

import nats
import pytest
from nats.aio.client import Client as NatsClient
from prometheus_client import CollectorRegistry

from sipmesh_bus import bans, kv
from sipmesh_edge.guard import Guard
from sipmesh_edge.protection import ProtectionConfig
from sipmsg import Request, make_response, parse

OPTIONS = (
    b"OPTIONS sip:edge@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-1\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=a\r\nTo: <sip:edge@192.0.2.10>\r\n"
    b"Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
SCANNER = OPTIONS.replace(b"Content-Length: 0", b"User-Agent: sipvicious\r\nContent-Length: 0")


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_guard_counts_drops_and_bans_by_reason() -> None:
    registry = CollectorRegistry()
    guard = Guard(ProtectionConfig(rate_limit=3, rate_window=10.0), registry, edge_id="e1")
    assert guard.check("203.0.113.1", SCANNER) is False
    assert [guard.check("203.0.113.2", OPTIONS) for _ in range(5)] == [True] * 3 + [False] * 2
    assert _sample(registry, "sipmesh_edge_protection_dropped_total", reason="scanner") == 1
    assert _sample(registry, "sipmesh_edge_protection_dropped_total", reason="rate") == 1
    assert _sample(registry, "sipmesh_edge_protection_dropped_total", reason="banned") == 1
    assert _sample(registry, "sipmesh_edge_bans_issued_total", reason="scanner") == 1
    assert _sample(registry, "sipmesh_edge_bans_issued_total", reason="rate") == 1
    guard.tick()
    assert _sample(registry, "sipmesh_edge_bans_active") == 2


def test_guard_on_response_bans_after_failed_authentications() -> None:
    registry = CollectorRegistry()
    guard = Guard(ProtectionConfig(auth_fail_limit=2), registry, edge_id="e1")
    req = parse(
        OPTIONS.replace(
            b"Content-Length: 0", b'Authorization: Digest username="a"\r\nContent-Length: 0'
        )
    )
    assert isinstance(req, Request)
    challenge = make_response(
        req, 401, headers=[(b"WWW-Authenticate", b'Digest realm="x", nonce="n"')]
    )
    guard.on_response(req, make_response(req, 200), "203.0.113.3")
    guard.on_response(req, challenge, "203.0.113.3")
    assert guard.check("203.0.113.3", OPTIONS)
    guard.on_response(req, challenge, "203.0.113.3")
    assert not guard.check("203.0.113.3", OPTIONS)
    assert _sample(registry, "sipmesh_edge_bans_issued_total", reason="auth_failures") == 1


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    await kv.ensure_jetstream(client.jetstream())
    try:
        yield client
    finally:
        await client.close()


def _address() -> str:
    # Shared session NATS: a fresh benchmarking-range (RFC 2544) address per run.
    return f"198.18.{random.randrange(256)}.{random.randrange(1, 255)}"


async def _until(predicate: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.005)
    raise AssertionError(f"not within {timeout} s")


@pytest.mark.integration
async def test_guard_ban_reaches_the_other_edge_within_a_second(nc: NatsClient) -> None:
    attacker = _address()
    config = ProtectionConfig(rate_limit=20, rate_window=1.0, rate_ban_time=30.0)
    one = Guard(config, CollectorRegistry(), edge_id="one")
    two = Guard(config, CollectorRegistry(), edge_id="two")
    await one.start(nc.jetstream())
    await two.start(nc.jetstream())
    try:
        assert all(one.check(attacker, OPTIONS) for _ in range(20))
        assert not one.check(attacker, OPTIONS)
        took = await _until(lambda: not two.check(attacker, OPTIONS), 1.0)
        assert took < 1.0
        assert two.check("198.18.255.254", OPTIONS)
        bucket = await nc.jetstream().key_value(kv.BUCKET_BANS)
        stored = [b for b in await bans.read_bans(bucket, time.time()) if b.target == attacker]
        assert [(b.reason, b.source) for b in stored] == [("rate", "one")]
        # Lifted by hand (sipmesh ban del): both edges let it in again.
        assert await bans.delete_ban(bucket, attacker)
        await _until(lambda: one.check(attacker, OPTIONS) and two.check(attacker, OPTIONS), 1.0)
    finally:
        await one.close()
        await two.close()


@pytest.mark.integration
async def test_guard_loads_existing_bans_at_start(nc: NatsClient) -> None:
    network = f"198.19.{random.randrange(256)}.0/24"
    now = time.time()
    ban = bans.Ban(target=network, reason="manual", created_at=now, expires_at=now + 60)
    await bans.put_ban(await nc.jetstream().key_value(kv.BUCKET_BANS), ban, now=now)
    guard = Guard(ProtectionConfig(), CollectorRegistry(), edge_id="late")
    await guard.start(nc.jetstream())
    try:
        assert not guard.check(network.replace("0/24", "77"), OPTIONS)
    finally:
        await guard.close()
        bucket = await nc.jetstream().key_value(kv.BUCKET_BANS)
        await bans.delete_ban(bucket, network)
