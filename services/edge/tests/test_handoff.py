"""Two edges on one real nats-server: outbound TCP, and handoffs to the owner of a connection."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from sipmesh_bus import schema, subjects
from sipmesh_bus.config import HttpConfig, NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_edge.app import Edge, EdgeConfig
from sipmesh_edge.branch import parse_branch
from sipmsg import Request, Response, make_response, parse
from sipmsg.framing import MessageFramed, StreamFramer

pytestmark = pytest.mark.integration


def edge_config(edge_id: str, url: str) -> EdgeConfig:
    return EdgeConfig(
        edge_id=edge_id,
        udp=["127.0.0.1:0"],
        streams={"tcp": ["127.0.0.1:0"]},
        request_timeout=1.0,
        nats=NatsConfig(url=url, reconnect_wait=0.1, drain_timeout=1.0),
        http=HttpConfig(port=0),
        shutdown_grace=0.2,
    )


@pytest.fixture
async def edges(nats_server: NatsServer) -> AsyncIterator[tuple[Edge, Edge]]:
    a = Edge(
        edge_config("ea", nats_server.url),
        registry=CollectorRegistry(),
        install_signal_handlers=False,
    )
    b = Edge(
        edge_config("eb", nats_server.url),
        registry=CollectorRegistry(),
        install_signal_handlers=False,
    )
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def tcp_address(edge: Edge) -> tuple[str, int]:
    assert edge.streams is not None
    return next((h, p) for t, h, p in edge.streams.addresses if t == "tcp")


class StreamPeer:
    """A SIP peer on one TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()

    async def recv(self, timeout: float = 3.0) -> Request | Response:
        async with asyncio.timeout(timeout):
            while True:
                event = self.framer.next_event()
                if isinstance(event, MessageFramed):
                    return parse(event.data)
                if event is None:
                    data = await self.reader.read(65536)
                    assert data, "connection closed"
                    self.framer.feed(data)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class UdpPhone:
    def __init__(self, edge: Edge) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.edge_addr = edge.udp[0].local

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.edge_addr)

    async def recv(self, timeout: float = 3.0) -> Response:
        loop = asyncio.get_running_loop()
        msg = parse(await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout))
        assert isinstance(msg, Response)
        return msg


def invite(port: int, n: int, transport: str = "UDP") -> bytes:
    return (
        f"INVITE sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK-c{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:carol@example.com>;tag=c{n}\r\n"
        f"To: <sip:bob@example.com>\r\nCall-ID: call-{n}@test\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:carol@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def register(port: int) -> bytes:
    return (
        f"REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK-r1\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=r1\r\n"
        f"To: <sip:bob@example.com>\r\nCall-ID: reg-1@test\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:bob@127.0.0.1:{port};transport=tcp>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Router:
    """Forwards every INVITE to ``target()``; passes every final response upstream."""

    def __init__(self, edge: Edge, target: Callable[[], schema.Target]) -> None:
        self.edge, self.target = edge, target
        self.invites: dict[bytes, Request] = {}
        self.responses: list[int] = []

    async def start(self, nc: NatsClient) -> None:
        await nc.subscribe(subjects.SIP_ROUTE, cb=self.on_route)
        await nc.subscribe(subjects.SIP_ROUTE_RESPONSE, cb=self.on_response)
        await nc.flush()
        await nc.flush()

    async def on_route(self, msg: Msg) -> None:
        env = schema.decode_envelope(msg.data)
        req = parse(env.data)
        assert isinstance(req, Request)
        if req.method != b"INVITE":
            return
        self.invites[req.call_id] = req
        host, port = self.edge.udp[0].local
        onward = req.prepend_header(b"Via", f"SIP/2.0/TCP {host}:{port};branch=z9hG4bK-r".encode())
        fwd = schema.Forward(data=bytes(onward), targets=[self.target()], context=b"c")
        await msg.respond(schema.encode(fwd))

    async def on_response(self, msg: Msg) -> None:
        env = schema.decode_envelope(msg.data)
        resp = parse(env.data)
        assert isinstance(resp, Response)
        self.responses.append(resp.status)
        upstream = make_response(self.invites[resp.call_id], resp.status)
        await msg.respond(schema.encode(schema.SendResponse(data=bytes(upstream))))


async def test_edge_forwards_over_a_new_tcp_connection(
    edges: tuple[Edge, Edge], nc: NatsClient
) -> None:
    a, _ = edges
    peers: asyncio.Queue[StreamPeer] = asyncio.Queue()

    async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await peers.put(StreamPeer(r, w))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    router = Router(
        a, lambda: schema.Target(uri="sip:bob@x", host="127.0.0.1", port=port, transport="tcp")
    )
    await router.start(nc)
    phone = UdpPhone(a)
    try:
        phone.send(invite(phone.port, 1))
        assert (await phone.recv()).status == 100
        callee = await asyncio.wait_for(peers.get(), 3)
        got = await callee.recv()
        assert isinstance(got, Request)
        assert got.uri == b"sip:bob@x"
        info = parse_branch(got.via[0].branch or b"")
        assert info is not None
        assert info.edge_id == "ea"
        callee.send(bytes(make_response(got, 486)))
        ack = await callee.recv()  # §17.1.1.3: the client transaction ACKs the 486
        assert isinstance(ack, Request)
        assert ack.method == b"ACK"
        assert (await phone.recv()).status == 486
        assert router.responses == [486]
        await callee.close()
    finally:
        phone.sock.close()
        server.close()
        await server.wait_closed()


async def test_edge_hands_off_to_the_owner_and_back(
    edges: tuple[Edge, Edge], nc: NatsClient
) -> None:
    a, b = edges
    bindings: list[schema.Envelope] = []

    async def registrar(msg: Msg) -> None:
        env = schema.decode_envelope(msg.data)
        bindings.append(env)
        req = parse(env.data)
        assert isinstance(req, Request)
        await msg.respond(schema.encode(schema.SendResponse(data=bytes(make_response(req, 200)))))

    await nc.subscribe(subjects.SIP_REGISTER, cb=registrar)

    def bob() -> schema.Target:
        env = bindings[-1]
        return schema.Target(
            uri="sip:bob@127.0.0.1",
            host=env.source_host,
            port=env.source_port,
            transport="tcp",
            connection_id=env.connection_id,
            edge_id=env.edge_id,
        )

    router = Router(a, bob)
    await router.start(nc)
    reader, writer = await asyncio.open_connection(*tcp_address(b))
    bob_phone = StreamPeer(reader, writer)
    carol = UdpPhone(a)
    try:
        bob_phone.send(register(writer.get_extra_info("sockname")[1]))
        assert (await bob_phone.recv()).status == 200  # type: ignore[union-attr]
        assert bindings[0].edge_id == "eb"

        carol.send(invite(carol.port, 2))
        assert (await carol.recv()).status == 100
        # Edge ea holds the transaction; edge eb holds bob's connection.
        got = await bob_phone.recv()
        assert isinstance(got, Request)
        assert got.method == b"INVITE"
        bob_phone.send(bytes(make_response(got, 486)))
        ack = await bob_phone.recv()  # from ea's client transaction, through eb
        assert isinstance(ack, Request)
        assert ack.method == b"ACK"
        assert (await carol.recv()).status == 486
        assert router.responses == [486]

        # Bob's connection is gone: ea's client transaction sees a transport
        # error at once, not Timer B 32 s later: a 503 (§16.9), which the
        # router hears as a 500 (§16.7 step 6: "If the only response that was
        # received is a 503, the proxy SHOULD generate a 500 response").
        await bob_phone.close()
        held = bindings[0].connection_id
        assert held is not None
        assert b.streams is not None
        for _ in range(100):
            if b.streams.connections.get(held) is None:
                break
            await asyncio.sleep(0.02)
        carol.send(invite(carol.port, 3))
        assert (await carol.recv()).status == 100
        assert (await carol.recv(3.0)).status == 500
        assert router.responses == [486, 500]
    finally:
        carol.sock.close()


async def test_edge_send_answers_ok_or_connection_gone(
    edges: tuple[Edge, Edge], nc: NatsClient
) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    try:
        udp = schema.EdgeSend(
            data=b"hello", transport="udp", host="127.0.0.1", port=receiver.getsockname()[1]
        )
        reply = await nc.request(subjects.edge_send("eb"), schema.encode(udp), timeout=2)
        assert schema.decode_edge_send_result(reply.data).ok
        receiver.settimeout(2)
        assert receiver.recv(100) == b"hello"
        # A plain schema.EdgeSend decodes too.
        gone = schema.EdgeSend(
            data=b"x", transport="tcp", host="127.0.0.1", port=1, connection_id="c1-dead"
        )
        reply = await nc.request(subjects.edge_send("eb"), schema.encode(gone), timeout=2)
        result = schema.decode_edge_send_result(reply.data)
        assert not result.ok
        assert result.error == "connection c1-dead is gone"
    finally:
        receiver.close()
