"""The edge in-process against a real nats-server, driven by a real UDP socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from sipmesh_bus import schema, subjects
from sipmesh_bus.natsserver import NatsServer
from sipmesh_edge.app import Edge
from sipmsg import Response, make_response, parse

pytestmark = pytest.mark.integration


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def settle(nc: NatsClient) -> None:
    """Make sure the server has our subscriptions.

    nats-py 2.16 writes flush()'s PING straight to the socket, ahead of the SUB
    still queued for its flusher task, so one flush() can return before the
    server knows the subscription (the edge then rightly answers 503 "no
    responders"). The second PING goes out after the SUB.
    """
    await nc.flush()
    await nc.flush()


@pytest.fixture
async def edge(start_udp_edge: Callable[..., Awaitable[Edge]]) -> Edge:
    return await start_udp_edge(edge_id="t1", request_timeout=0.5, shutdown_grace=0.5)


class Phone:
    """A UDP client socket, read without blocking the loop."""

    def __init__(self, edge: Edge) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.edge_addr = edge.udp[0].local

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.edge_addr)

    async def recv(self, timeout: float = 2.0) -> Response:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout)
        msg = parse(data)
        assert isinstance(msg, Response)
        return msg

    async def silent(self, wait: float = 0.3) -> bool:
        try:
            await self.recv(wait)
        except TimeoutError:
            return True
        return False


@pytest.fixture
def phone(edge: Edge) -> Iterator[Phone]:
    p = Phone(edge)
    try:
        yield p
    finally:
        p.sock.close()


def message(
    phone: Phone, method: str = "REGISTER", uri: str = "sip:example.com", n: int = 1
) -> bytes:
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{phone.port};branch=z9hG4bK-{method}-{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:alice@example.com>\r\n"
        f"Call-ID: call-{n}@127.0.0.1\r\n"
        f"CSeq: {n} {method}\r\n"
        "Contact: <sip:alice@127.0.0.1>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def registrar(nc: NatsClient, seen: list[schema.Envelope]) -> None:
    async def on_msg(msg: Msg) -> None:
        env = schema.decode_envelope(msg.data)
        seen.append(env)
        req = parse(env.data)
        assert not isinstance(req, Response)
        ok = make_response(req, 200, headers=[(b"Expires", b"60")])
        await msg.respond(schema.encode(schema.SendResponse(data=bytes(ok))))

    await nc.subscribe(subjects.SIP_REGISTER, queue=subjects.QUEUE_REGISTRAR, cb=on_msg)
    await settle(nc)


def sample(edge: Edge, name: str, labels: dict[str, str] | None = None) -> float:
    value = edge.service.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def test_edge_register_round_trip_and_retransmission_absorbed(
    edge: Edge, phone: Phone, nc: NatsClient
) -> None:
    seen: list[schema.Envelope] = []
    await registrar(nc, seen)
    phone.send(message(phone))
    first = await phone.recv()
    assert first.status == 200
    assert first.header("expires") == b"60"
    # RFC 3581: the registrar saw the source in the top Via.
    top = parse(seen[0].data).via[0]
    assert top.received == b"127.0.0.1"
    assert top.rport == phone.port
    assert (seen[0].edge_id, seen[0].transport, seen[0].source_port) == ("t1", "udp", phone.port)
    phone.send(message(phone))  # a retransmission
    again = await phone.recv()
    assert bytes(again) == bytes(first)
    await asyncio.sleep(0.1)
    assert len(seen) == 1
    assert sample(edge, "sipmesh_edge_retransmissions_absorbed_total") == 1


async def test_edge_no_responder_answers_503_with_retry_after(edge: Edge, phone: Phone) -> None:
    phone.send(message(phone, "INVITE", "sip:bob@example.com"))
    trying = await phone.recv()
    assert trying.status == 100  # §17.2.1: at once
    resp = await phone.recv(1.5)
    assert resp.status == 503
    assert resp.header("retry-after") == b"5"


async def test_edge_silent_service_times_out_to_503(
    edge: Edge, phone: Phone, nc: NatsClient
) -> None:
    async def black_hole(msg: Msg) -> None:
        return None

    await nc.subscribe(subjects.SIP_REGISTER, cb=black_hole)
    await settle(nc)
    loop = asyncio.get_running_loop()
    started = loop.time()
    phone.send(message(phone))
    resp = await phone.recv(2.0)
    assert resp.status == 503
    assert resp.header("retry-after") is not None
    assert 0.4 <= loop.time() - started < 1.5  # request_timeout is 0.5 s
    assert sample(edge, "sipmesh_edge_unavailable_total", {"reason": "timeout"}) == 1


async def test_edge_options_to_itself_needs_no_bus(
    edge: Edge, phone: Phone, nc: NatsClient
) -> None:
    seen: list[Msg] = []

    async def spy(msg: Msg) -> None:
        seen.append(msg)

    await nc.subscribe("sip.>", cb=spy)
    await settle(nc)
    host, port = edge.udp[0].local
    phone.send(message(phone, "OPTIONS", f"sip:{host}:{port}"))
    resp = await phone.recv()
    assert resp.status == 200
    assert b"INVITE" in resp.allow
    assert resp.header("accept") == b"application/sdp"
    await asyncio.sleep(0.1)
    assert seen == []


async def test_edge_garbage_gets_400_or_silence_and_the_edge_keeps_serving(
    edge: Edge, phone: Phone, nc: NatsClient
) -> None:
    phone.send(b"\x00\x01garbage\xff")
    assert await phone.silent()
    phone.send(b"\r\n\r\n")  # keep-alive
    assert await phone.silent(0.1)
    bad = message(phone).replace(b"Max-Forwards: 70", b"Max-Forwards: many")
    phone.send(bad)
    resp = await phone.recv()
    assert resp.status == 400
    assert b"Max-Forwards" in resp.reason
    await registrar(nc, [])
    phone.send(message(phone, n=2))
    resp = await phone.recv()
    assert resp.status == 200
    assert sample(edge, "sipmesh_edge_parse_errors_total") == 2


async def test_edge_nats_outage_answers_503_at_once_then_recovers(
    edge: Edge, phone: Phone, nats_server: NatsServer
) -> None:
    nats_server.stop()
    loop = asyncio.get_running_loop()
    for _ in range(100):
        if edge.bus is not None and not edge.bus.connected:
            break
        await asyncio.sleep(0.02)
    started = loop.time()
    phone.send(message(phone, n=3))
    resp = await phone.recv()
    assert resp.status == 503
    assert loop.time() - started < 0.3  # not the 0.5 s request timeout
    nats_server.start()
    for _ in range(200):
        if edge.bus is not None and edge.bus.connected:
            break
        await asyncio.sleep(0.02)
    async with _client(nats_server.url) as nc:
        await registrar(nc, [])
        phone.send(message(phone, n=4))
        assert (await phone.recv()).status == 200


class _client:  # noqa: N801 - an async context manager used like a function
    def __init__(self, url: str) -> None:
        self.url = url
        self.nc: NatsClient | None = None

    async def __aenter__(self) -> NatsClient:
        self.nc = await nats.connect(self.url)
        return self.nc

    async def __aexit__(self, *_: object) -> None:
        if self.nc is not None:
            await self.nc.close()
