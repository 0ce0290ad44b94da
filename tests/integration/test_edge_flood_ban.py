"""A flood from one address is banned in every edge within a second; phones keep registering.

Two edges in-process on one nats-server, a fake registrar on ``sip.register``.
The attacker is 127.0.0.2 (a client socket bound to it; all of 127.0.0.0/8 is
loopback), the phone is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from sipmesh_bus import bans, kv, schema, subjects
from sipmesh_bus.config import HttpConfig, NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_edge.app import Edge, EdgeConfig
from sipmesh_edge.protection import ProtectionConfig
from sipmsg import Request, Response, make_response, parse

pytestmark = pytest.mark.integration

ATTACKER = "127.0.0.2"
PHONE = "127.0.0.1"
_seq = itertools.count(1)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def registrar(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    """Answers every REGISTER with 200 and creates the buckets."""
    nc = await nats.connect(nats_server.url)
    await kv.ensure_jetstream(nc.jetstream())

    async def on_register(msg: Msg) -> None:
        req = parse(schema.decode_envelope(msg.data).data)
        assert isinstance(req, Request)
        await msg.respond(schema.encode(schema.SendResponse(data=bytes(make_response(req, 200)))))

    await nc.subscribe(subjects.SIP_REGISTER, cb=on_register)
    await nc.flush()
    await nc.flush()
    try:
        yield nc
    finally:
        await nc.close()


def _config(url: str, edge_id: str) -> EdgeConfig:
    return EdgeConfig(
        edge_id=edge_id,
        udp=[f"{PHONE}:0"],
        request_timeout=1.0,
        nats=NatsConfig(url=url, reconnect_wait=0.1, drain_timeout=1.0),
        http=HttpConfig(port=0),
        shutdown_grace=0.5,
        # allow=[]: loopback is allowed by default, and the attacker is 127.0.0.2.
        protection=ProtectionConfig(allow=[], rate_limit=50, rate_window=1.0, rate_ban_time=60.0),
    )


@pytest.fixture
async def edges(nats_server: NatsServer, registrar: NatsClient) -> AsyncIterator[list[Edge]]:
    started = []
    try:
        for edge_id in ("flood-a", "flood-b"):
            edge = Edge(
                _config(nats_server.url, edge_id),
                registry=CollectorRegistry(),
                install_signal_handlers=False,
            )
            await edge.start()
            started.append(edge)
        yield started
    finally:
        for edge in started:
            await edge.close()


class Client(asyncio.DatagramProtocol):
    """A UDP client bound to one loopback address; keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[Response] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse(data)
        if isinstance(msg, Response):
            self.received.append(msg)

    def send(self, edge: Edge, method: bytes) -> bytes:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        target = edge.udp[0].local
        call_id = b"c%d" % next(_seq)
        data = (
            b"%s sip:%s:%d SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-%s;rport\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:phone@example.com>;tag=f\r\n"
            b"To: <sip:phone@example.com>\r\nCall-ID: %s\r\nCSeq: 1 %s\r\n"
            b"Contact: <sip:phone@%s:%d>\r\nContent-Length: 0\r\n\r\n"
        ) % (
            method, target[0].encode(), target[1], host.encode(), port, call_id,
            call_id, method, host.encode(), port,
        )  # fmt: skip
        self.transport.sendto(data, target)
        return call_id

    async def exchange(self, edge: Edge, method: bytes, timeout: float = 0.5) -> int | None:
        call_id = self.send(edge, method)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for resp in self.received:
                if resp.call_id == call_id and resp.status >= 200:
                    return resp.status
            await asyncio.sleep(0.005)
        return None


async def _client(address: str) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(Client, local_addr=(address, 0))
    return client


async def test_flood_is_banned_on_every_edge_within_a_second_phones_keep_registering(
    edges: list[Edge], registrar: NatsClient
) -> None:
    a, b = edges
    phone, attacker = await _client(PHONE), await _client(ATTACKER)
    try:
        for edge in edges:
            assert await phone.exchange(edge, b"REGISTER") == 200
            assert await attacker.exchange(edge, b"OPTIONS") == 200  # not banned yet

        # The flood goes to edge A only: 300 OPTIONS in a burst.
        for _ in range(300):
            attacker.send(a, b"OPTIONS")
        await asyncio.sleep(0)
        assert a.guard is not None
        assert b.guard is not None
        deadline = time.monotonic() + 2.0
        while not a.guard.protection.is_banned(ATTACKER, time.time()):
            assert time.monotonic() < deadline, "edge A never banned the flood"
            await asyncio.sleep(0.005)
        banned_at = time.monotonic()
        while not b.guard.protection.is_banned(ATTACKER, time.time()):
            assert time.monotonic() - banned_at < 1.0, "edge B did not learn the ban within 1 s"
            await asyncio.sleep(0.005)

        # Both edges now ignore the attacker (silence) and still serve the phone.
        for edge in edges:
            assert await attacker.exchange(edge, b"OPTIONS", timeout=0.3) is None
            assert await phone.exchange(edge, b"REGISTER") == 200
            assert await phone.exchange(edge, b"OPTIONS") == 200
        dropped = b.service.registry.get_sample_value(
            "sipmesh_edge_protection_dropped_total", {"reason": "banned"}
        )
        assert dropped is not None
        assert dropped >= 1

        # The ban is in the bucket, with its reason and the edge that decided.
        bucket = await registrar.jetstream().key_value(kv.BUCKET_BANS)
        stored = [x for x in await bans.read_bans(bucket, time.time()) if x.target == ATTACKER]
        assert [(x.reason, x.source) for x in stored] == [("rate", "flood-a")]

        # Lifted by hand (sipmesh ban del): both edges answer it again.
        assert await bans.delete_ban(bucket, ATTACKER)
        deadline = time.monotonic() + 1.0
        while a.guard.protection.is_banned(ATTACKER, time.time()) or (
            b.guard.protection.is_banned(ATTACKER, time.time())
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        assert await attacker.exchange(b, b"OPTIONS") == 200
    finally:
        for client in (phone, attacker):
            if client.transport is not None:
                client.transport.close()
