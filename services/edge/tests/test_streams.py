"""Stream transports over real loopback sockets: TCP, TLS, WS, WSS, limits, registry, outbound."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from sipmesh_edge import ports, streams, tls
from sipmesh_edge.ports import Connection
from sipmesh_edge.streams import StreamConfig, StreamListeners, parse_listen, start_stream_listeners
from sipmsg import ParseError
from sipmsg.websocket import WebSocketProtocolError

# --- helpers ---------------------------------------------------------------------


def sip(n: int = 1, body: bytes = b"") -> bytes:
    head = (
        b"OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-%d\r\n"
        b"Call-ID: call-%d\r\nCSeq: %d OPTIONS\r\nContent-Length: %d\r\n\r\n"
    ) % (n, n, n, len(body))
    return head + body


@dataclass
class Received:
    data: bytes
    transport: str
    source: tuple[str, int]
    local: tuple[str, int]
    connection: Connection | None


class RecordingSink:
    """A MessageSink that records; optionally echoes messages or answers errors."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.errors: list[tuple[ParseError, Connection]] = []
        self.error_data: list[bytes] = []
        self.echo = False
        self.answer_errors = False

    def on_message(
        self,
        data: bytes,
        *,
        transport: str,
        source: tuple[str, int],
        local: tuple[str, int],
        connection: Connection | None,
    ) -> None:
        self.messages.append(Received(data, transport, source, local, connection))
        if self.echo and connection is not None:
            connection.send(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")

    def on_parse_error(
        self, error: ParseError, *, connection: Connection, data: bytes = b""
    ) -> None:
        self.errors.append((error, connection))
        self.error_data.append(data)
        if self.answer_errors:
            connection.send(b"SIP/2.0 %d Bad\r\nContent-Length: 0\r\n\r\n" % error.status_hint)


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(
    sink: RecordingSink, **settings: object
) -> AsyncIterator[tuple[StreamListeners, dict[str, tuple[str, int]]]]:
    config = msgspec.convert(settings, StreamConfig)
    listeners = await start_stream_listeners(config, sink)
    try:
        yield listeners, {t: (h, p) for t, h, p in listeners.addresses}
    finally:
        await listeners.close()


@contextlib.asynccontextmanager
async def client(
    address: tuple[str, int], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(*address, ssl=ssl_context)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def at_eof(reader: asyncio.StreamReader) -> bool:
    """Read until the server closes; True when it did within the time limit."""
    try:
        async with asyncio.timeout(3):
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        return True
    return True


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder: Path = tmp_path_factory.mktemp("tls")
    tls.generate_self_signed(folder / "cert.pem", folder / "key.pem")
    return str(folder / "cert.pem"), str(folder / "key.pem")


def trusting(cert: tuple[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cert[0])


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


# --- TCP framing -------------------------------------------------------------------


async def test_tcp_two_messages_in_one_segment(sink: RecordingSink) -> None:
    async with running(sink, tcp=["127.0.0.1:0"]) as (edge, addr), client(addr["tcp"]) as (_, w):
        w.write(sip(1) + sip(2, b"v=0\r\n"))
        await eventually(lambda: len(sink.messages) == 2)
        first, second = sink.messages
        assert (first.data, second.data) == (sip(1), sip(2, b"v=0\r\n"))
        assert first.transport == "tcp"
        assert first.source == w.get_extra_info("sockname")[:2]
        assert first.local == addr["tcp"]
        assert first.connection is second.connection
        assert first.connection is not None
        assert edge.connections.get(first.connection.id) is first.connection


async def test_tcp_message_split_across_segments(sink: RecordingSink) -> None:
    message = sip(7, b"hello body")
    async with running(sink, tcp=["127.0.0.1:0"]) as (_, addr), client(addr["tcp"]) as (_, w):
        w.write(message[:30])
        await w.drain()
        await asyncio.sleep(0.05)
        w.write(message[30:-3])
        await w.drain()
        await asyncio.sleep(0.05)
        assert sink.messages == []
        w.write(message[-3:])
        await eventually(lambda: len(sink.messages) == 1)
        assert sink.messages[0].data == message


async def test_tcp_ping_answered_with_pong(sink: RecordingSink) -> None:
    async with running(sink, tcp=["127.0.0.1:0"]) as (_, addr), client(addr["tcp"]) as (r, w):
        w.write(b"\r\n\r\n")
        async with asyncio.timeout(2):
            assert await r.readexactly(2) == b"\r\n"
        w.write(b"\r\n")  # a lone CRLF (a pong) is not answered
        w.write(sip(1))
        await eventually(lambda: len(sink.messages) == 1)
        assert sink.messages[0].data == sip(1)


async def test_tcp_missing_content_length_reports_and_closes(sink: RecordingSink) -> None:
    sink.answer_errors = True
    bad = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"
    async with running(sink, tcp=["127.0.0.1:0"]) as (edge, addr), client(addr["tcp"]) as (r, w):
        w.write(bad)
        async with asyncio.timeout(3):
            answer = await r.read()  # the answer, then end of stream
        assert answer == b"SIP/2.0 400 Bad\r\nContent-Length: 0\r\n\r\n"
        (error, connection), *_ = sink.errors
        assert (error.status_hint, error.header) == (400, "content-length")
        await eventually(lambda: len(edge.connections) == 0)
        assert edge.connections.get(connection.id) is None
        assert sink.messages == []


async def test_tcp_framing_error_hands_over_the_unframed_octets(sink: RecordingSink) -> None:
    bad = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: y\r\nCSeq: 2 OPTIONS\r\n\r\n"
    async with running(sink, tcp=["127.0.0.1:0"]) as (_, addr), client(addr["tcp"]) as (r, w):
        # A good message, then the bad one split across two reads.
        w.write(sip(1) + bad[:12])
        await w.drain()
        await eventually(lambda: len(sink.messages) == 1)
        w.write(bad[12:])
        async with asyncio.timeout(3):
            await r.read()
    assert sink.error_data == [bad]
    assert sink.messages[0].data == sip(1)


async def test_tcp_oversize_message_takes_the_513_path(sink: RecordingSink) -> None:
    sink.answer_errors = True
    async with (
        running(sink, tcp=["127.0.0.1:0"], max_message_size=2048) as (_, addr),
        client(addr["tcp"]) as (r, w),
    ):
        w.write(sip(1, b"x" * 4000))
        async with asyncio.timeout(3):
            answer = await r.read()
        assert answer.startswith(b"SIP/2.0 513 ")
        assert [e.status_hint for e, _ in sink.errors] == [513]
        assert sink.messages == []


async def test_tcp_send_reaches_the_peer(sink: RecordingSink) -> None:
    sink.echo = True
    async with running(sink, tcp=["127.0.0.1:0"]) as (_, addr), client(addr["tcp"]) as (r, w):
        w.write(sip(1))
        async with asyncio.timeout(2):
            assert await r.readuntil(b"\r\n\r\n") == b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
async def test_tcp_ipv6_listener(sink: RecordingSink) -> None:
    async with running(sink, tcp=["[::1]:0"]) as (_, addr), client(addr["tcp"]) as (_, w):
        assert addr["tcp"][0] == "::1"
        w.write(sip(1))
        await eventually(lambda: len(sink.messages) == 1)
        assert sink.messages[0].source[0] == "::1"
        assert sink.messages[0].local == addr["tcp"]


# --- registry ------------------------------------------------------------------


async def test_connections_ids_lookup_and_removal(sink: RecordingSink) -> None:
    async with running(sink, tcp=["127.0.0.1:0"]) as (edge, addr):
        async with client(addr["tcp"]) as (_, w1), client(addr["tcp"]) as (r2, w2):
            w1.write(sip(1))
            w2.write(sip(2))
            await eventually(lambda: len(sink.messages) == 2)
            c1, c2 = (m.connection for m in sink.messages)
            assert c1 is not None
            assert c2 is not None
            assert c1.id != c2.id
            for c in (c1, c2):
                assert re.fullmatch(r"[A-Za-z0-9_-]+", c.id)  # a NATS subject token
                assert edge.connections.get(c.id) is c
            assert len(edge.connections) == 2
            c2.close()  # closed by the edge: the peer sees the end of stream
            assert await at_eof(r2)
            await eventually(lambda: edge.connections.get(c2.id) is None)
            with pytest.raises(ConnectionError):
                c2.send(sip(3))
        # closed by the peer
        await eventually(lambda: len(edge.connections) == 0)
        assert edge.connections.get(c1.id) is None


def test_connections_ids_differ_between_registries() -> None:
    a, b = streams.Connections(), streams.Connections()
    assert a.new_id() != b.new_id()  # same counter value, different random part
    assert a.get("nope") is None
    a.remove("nope")  # unknown ids are ignored


# --- TLS ---------------------------------------------------------------------------


async def test_tls_message_in_and_answer_out(sink: RecordingSink, cert: tuple[str, str]) -> None:
    sink.echo = True
    async with (
        running(sink, tls=["127.0.0.1:0"], cert_file=cert[0], key_file=cert[1]) as (_, addr),
        client(addr["tls"], trusting(cert)) as (r, w),
    ):
        w.write(sip(1) + b"\r\n\r\n")
        async with asyncio.timeout(2):
            assert await r.readuntil(b"\r\n\r\n") == b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
            assert await r.readexactly(2) == b"\r\n"
        assert sink.messages[0].transport == "tls"
        assert sink.messages[0].data == sip(1)
        assert w.get_extra_info("ssl_object").version() in {"TLSv1.2", "TLSv1.3"}


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_1_1_refused(sink: RecordingSink, cert: tuple[str, str]) -> None:
    def old_client(newest: ssl.TLSVersion) -> ssl.SSLContext:
        context = trusting(cert)
        context.set_ciphers("ALL:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = newest
        return context

    async with running(sink, tls=["127.0.0.1:0"], cert_file=cert[0], key_file=cert[1]) as (
        edge,
        addr,
    ):
        async with client(addr["tls"], old_client(ssl.TLSVersion.TLSv1_2)) as (_, w):
            assert w.get_extra_info("ssl_object").version() == "TLSv1.2"  # the client works
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await asyncio.open_connection(*addr["tls"], ssl=old_client(ssl.TLSVersion.TLSv1_1))
        await eventually(lambda: len(edge.connections) == 0)


def test_stream_config_requires_cert_for_tls() -> None:
    with pytest.raises(msgspec.ValidationError, match="cert_file"):
        msgspec.convert({"wss": ["127.0.0.1:0"]}, StreamConfig)


# --- WebSocket ---------------------------------------------------------------------


def masked(opcode: int, payload: bytes, *, mask: bool = True) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    bit = 0x80 if mask else 0
    length = bytes((bit | n,)) if n < 126 else bytes((bit | 126,)) + n.to_bytes(2)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if mask else payload
    return bytes((0x80 | opcode,)) + length + (key if mask else b"") + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    assert not second & 0x80  # RFC 6455 §5.1: servers do not mask
    n = second & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2))
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(n)


async def upgrade(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: bytes | None = b"sip"
) -> bytes:
    key = base64.b64encode(os.urandom(16))
    offer = b"Sec-WebSocket-Protocol: %s\r\n" % protocol if protocol else b""
    writer.write(
        b"GET /sip HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n" + offer + b"\r\n"
    )
    async with asyncio.timeout(2):
        head = await reader.readuntil(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 101"):
        guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        digest = base64.b64encode(hashlib.sha1(key + guid).digest())
        assert b"\r\nSec-WebSocket-Accept: " + digest + b"\r\n" in head
        assert b"\r\nSec-WebSocket-Protocol: sip\r\n" in head
    return head


async def test_ws_handshake_message_in_and_frame_out(sink: RecordingSink) -> None:
    sink.echo = True
    async with running(sink, ws=["127.0.0.1:0"]) as (edge, addr), client(addr["ws"]) as (r, w):
        assert (await upgrade(r, w)).startswith(b"HTTP/1.1 101 ")
        w.write(masked(0x1, sip(1)))
        async with asyncio.timeout(2):
            opcode, payload = await read_frame(r)
        assert (opcode, payload) == (0x1, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        (message,) = sink.messages
        assert (message.data, message.transport) == (sip(1), "ws")
        assert message.connection is not None
        connection = edge.connections.get(message.connection.id)
        assert connection is not None
        connection.send(b"SIP/2.0 200 OK\r\nX: \xff\r\nContent-Length: 0\r\n\r\n")
        async with asyncio.timeout(2):
            opcode, _ = await read_frame(r)
        assert opcode == 0x2  # not UTF-8: a binary frame


async def test_ws_ping_pong_and_crlf_keepalive(sink: RecordingSink) -> None:
    async with running(sink, ws=["127.0.0.1:0"]) as (_, addr), client(addr["ws"]) as (r, w):
        await upgrade(r, w)
        w.write(masked(0x9, b"are you there"))
        w.write(masked(0x1, b"\r\n\r\n"))
        async with asyncio.timeout(2):
            assert await read_frame(r) == (0xA, b"are you there")
            assert await read_frame(r) == (0x1, b"\r\n")
        assert sink.messages == []


async def test_ws_close_handshake(sink: RecordingSink) -> None:
    async with running(sink, ws=["127.0.0.1:0"]) as (edge, addr), client(addr["ws"]) as (r, w):
        await upgrade(r, w)
        w.write(masked(0x1, sip(1)))
        await eventually(lambda: len(edge.connections) == 1 and len(sink.messages) == 1)
        w.write(masked(0x8, (1000).to_bytes(2) + b"bye"))
        async with asyncio.timeout(2):
            assert await read_frame(r) == (0x8, (1000).to_bytes(2))
        assert await at_eof(r)
        await eventually(lambda: len(edge.connections) == 0)


async def test_ws_protocol_error_reports_and_closes_with_code(sink: RecordingSink) -> None:
    async with running(sink, ws=["127.0.0.1:0"]) as (_, addr), client(addr["ws"]) as (r, w):
        await upgrade(r, w)
        w.write(masked(0x1, sip(1), mask=False))  # RFC 6455 §5.1: clients must mask
        async with asyncio.timeout(2):
            opcode, payload = await read_frame(r)
        assert (opcode, payload[:2]) == (0x8, (1002).to_bytes(2))
        assert await at_eof(r)
        ((error, _),) = sink.errors
        assert isinstance(error, WebSocketProtocolError)


async def test_ws_missing_subprotocol_rejected(sink: RecordingSink) -> None:
    async with running(sink, ws=["127.0.0.1:0"]) as (edge, addr), client(addr["ws"]) as (r, w):
        head = await upgrade(r, w, protocol=None)
        assert head.startswith(b"HTTP/1.1 400 ")
        assert await at_eof(r)
        await eventually(lambda: len(edge.connections) == 0)


async def test_ws_send_before_handshake_refused(sink: RecordingSink) -> None:
    async with running(sink, ws=["127.0.0.1:0"]) as (edge, addr), client(addr["ws"]):
        await eventually(lambda: len(edge.connections) == 1)
        (connection,) = edge.connections
        with pytest.raises(ConnectionError):
            connection.send(sip(1))


async def test_wss_over_tls(sink: RecordingSink, cert: tuple[str, str]) -> None:
    sink.echo = True
    async with (
        running(sink, wss=["127.0.0.1:0"], cert_file=cert[0], key_file=cert[1]) as (_, addr),
        client(addr["wss"], trusting(cert)) as (r, w),
    ):
        await upgrade(r, w)
        w.write(masked(0x1, sip(1)))
        async with asyncio.timeout(2):
            assert (await read_frame(r))[0] == 0x1
        assert sink.messages[0].transport == "wss"


# --- limits ------------------------------------------------------------------------


async def test_connection_cap_per_source_ip(sink: RecordingSink) -> None:
    async with (
        running(sink, tcp=["127.0.0.1:0"], max_connections_per_ip=2) as (edge, addr),
        client(addr["tcp"]) as (r1, w1),
        client(addr["tcp"]) as (_, w2),
    ):
        await eventually(lambda: len(edge.connections) == 2)
        async with client(addr["tcp"]) as (r3, _):
            assert await at_eof(r3)  # refused at accept
            w1.write(b"\r\n\r\n")
            async with asyncio.timeout(2):
                assert await r1.readexactly(2) == b"\r\n"  # the first two still work
            assert len(edge.connections) == 2
        w2.close()
        await eventually(lambda: len(edge.connections) == 1)
        async with client(addr["tcp"]) as (r4, w4):
            w4.write(b"\r\n\r\n")
            async with asyncio.timeout(2):
                assert await r4.readexactly(2) == b"\r\n"  # room again


async def test_connection_cap_overall(sink: RecordingSink) -> None:
    async with (
        running(sink, tcp=["127.0.0.1:0"], max_connections=1) as (edge, addr),
        client(addr["tcp"]) as (_, w1),
    ):
        await eventually(lambda: len(edge.connections) == 1)
        async with client(addr["tcp"]) as (r2, _):
            assert await at_eof(r2)
        w1.write(sip(1))
        await eventually(lambda: len(sink.messages) == 1)
        with pytest.raises(ConnectionRefusedError):  # outbound counts too
            await edge.connect("tcp", *addr["tcp"])


async def test_idle_timeout_closes_and_keepalives_hold(sink: RecordingSink) -> None:
    async with (
        running(sink, tcp=["127.0.0.1:0"], idle_timeout=0.3) as (edge, addr),
        client(addr["tcp"]) as (r, w),
    ):
        loop = asyncio.get_running_loop()
        start = loop.time()
        silent_from = start
        while loop.time() - start < 0.8:  # well past the timeout, kept alive
            w.write(b"\r\n\r\n")
            async with asyncio.timeout(2):
                assert await r.readexactly(2) == b"\r\n"
            silent_from = loop.time()
            await asyncio.sleep(0.1)
        assert len(edge.connections) == 1
        assert await at_eof(r)
        assert loop.time() - silent_from >= 0.25
        await eventually(lambda: len(edge.connections) == 0)


async def test_ws_handshake_timeout(sink: RecordingSink) -> None:
    async with (
        running(sink, ws=["127.0.0.1:0"], handshake_timeout=0.2) as (edge, addr),
        client(addr["ws"]) as (r, _),
    ):
        assert await at_eof(r)
        await eventually(lambda: len(edge.connections) == 0)


async def test_slow_reader_dropped_when_write_buffer_overflows(sink: RecordingSink) -> None:
    async with (
        running(sink, tcp=["127.0.0.1:0"], max_write_buffer=65536) as (edge, addr),
        client(addr["tcp"]) as (_, w),
    ):
        w.write(sip(1))
        await eventually(lambda: len(sink.messages) == 1)
        connection = sink.messages[0].connection
        assert connection is not None
        chunk = sip(2, b"x" * 60000)
        with pytest.raises(ConnectionError):  # noqa: PT012
            for _ in range(2000):  # 120 MB: far more than any socket buffer
                connection.send(chunk)
        await eventually(lambda: len(edge.connections) == 0)


# --- outbound ------------------------------------------------------------------------


async def test_connect_reuses_one_connection(sink: RecordingSink) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def peer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        writer.write(sip(9))

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running(sink) as (edge, _):
            first, second = await asyncio.gather(
                edge.connect("tcp", "127.0.0.1", port), edge.connect("tcp", "127.0.0.1", port)
            )
            assert first is second
            # A name resolving to the peer's address, then the name as an alias.
            assert await edge.connect("tcp", "localhost", port) is first
            assert await edge.connect("tcp", "LOCALHOST.", port) is first
            assert len(accepted) == 1
            await eventually(lambda: len(sink.messages) == 1)
            assert sink.messages[0].connection is first
            assert edge.connections.get(first.id) is first
            first.close()
            await first.wait_closed()
            third = await edge.connect("tcp", "127.0.0.1", port)
            assert third is not first
            assert len(accepted) == 2
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_connect_reuses_an_accepted_connection(sink: RecordingSink) -> None:
    async with running(sink, tcp=["127.0.0.1:0"]) as (edge, addr), client(addr["tcp"]) as (r, w):
        host, port = w.get_extra_info("sockname")[:2]
        await eventually(lambda: len(edge.connections) == 1)
        # Nothing listens on the client's port: only reuse can succeed.
        connection = await edge.connect("tcp", host, port)
        connection.send(sip(4))
        async with asyncio.timeout(2):
            assert await r.readexactly(len(sip(4))) == sip(4)


async def test_connect_tls_between_two_edges(cert: tuple[str, str]) -> None:
    there, here = RecordingSink(), RecordingSink()
    settings = {"cert_file": cert[0], "key_file": cert[1]}
    async with (
        running(there, tls=["127.0.0.1:0"], **settings) as (_, addr),
        running(here, outbound_ca_file=cert[0], **settings) as (edge, _),
    ):
        connection = await edge.connect("tls", *addr["tls"])
        assert connection.transport == "tls"
        connection.send(sip(5))
        await eventually(lambda: len(there.messages) == 1)
        assert there.messages[0].data == sip(5)
        assert there.messages[0].transport == "tls"


async def test_connect_tls_refuses_an_untrusted_server(cert: tuple[str, str]) -> None:
    settings = {"cert_file": cert[0], "key_file": cert[1]}
    async with (
        running(RecordingSink(), tls=["127.0.0.1:0"], **settings) as (_, addr),
        running(RecordingSink()) as (edge, _),
    ):
        with pytest.raises(ssl.SSLCertVerificationError):
            await edge.connect("tls", *addr["tls"])
        assert len(edge.connections) == 0


async def test_connect_websocket_unsupported(sink: RecordingSink) -> None:
    async with running(sink) as (edge, _):
        with pytest.raises(ValueError, match="ws"):
            await edge.connect("ws", "127.0.0.1", 80)


# --- uvloop ---------------------------------------------------------------------------


def test_under_uvloop(cert: tuple[str, str]) -> None:
    """The service runs on uvloop, whose transports are not asyncio's classes."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        sink = RecordingSink()
        sink.echo = True
        files = {"cert_file": cert[0], "key_file": cert[1], "outbound_ca_file": cert[0]}
        async with running(
            sink, tcp=["127.0.0.1:0"], tls=["127.0.0.1:0"], ws=["127.0.0.1:0"], **files
        ) as (edge, addr):
            async with client(addr["tcp"]) as (r, w):
                w.write(sip(1)[:20])
                await w.drain()
                w.write(sip(1)[20:] + b"\r\n\r\n")
                assert (
                    await r.readuntil(b"\r\n\r\n") == b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
                )
                assert await r.readexactly(2) == b"\r\n"
            async with client(addr["ws"]) as (r, w):
                await upgrade(r, w)
                w.write(masked(0x1, sip(2)))
                assert (await read_frame(r))[0] == 0x1
            sink.echo = False  # the edge now talks to itself: no echo loop
            outbound = await edge.connect("tls", *addr["tls"])
            assert await edge.connect("tls", *addr["tls"]) is outbound
            outbound.send(sip(3))
            await eventually(lambda: any(m.transport == "tls" for m in sink.messages))
            assert [m.transport for m in sink.messages] == ["tcp", "ws", "tls"]

    uvloop.run(scenario())


# --- config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("0.0.0.0:5060", ("0.0.0.0", 5060)),
        ("[::]:5061", ("::", 5061)),
        ("[fe80::1%eth0]:5060", ("fe80::1%eth0", 5060)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_listen_valid(entry: str, expected: tuple[str, int]) -> None:
    assert parse_listen(entry) == expected


@pytest.mark.parametrize(
    "entry", ["5060", "::1:5060", "[::1]", "host:", "h:70000", "[nope]:1", ":5", "h:-1"]
)
def test_parse_listen_invalid(entry: str) -> None:
    with pytest.raises(ValueError, match=r"listen address"):
        parse_listen(entry)


def test_stream_config_defaults_open_nothing_and_reject_typos() -> None:
    config = StreamConfig()
    assert (config.tcp, config.tls, config.ws, config.wss) == ((), (), (), ())
    with pytest.raises(msgspec.ValidationError, match="tpc"):
        msgspec.convert({"tpc": ["127.0.0.1:5060"]}, StreamConfig)


def test_ports_are_implemented() -> None:
    # mypy checks these assignments structurally against the ports protocols.
    def as_listeners(listeners: StreamListeners) -> ports.StreamListeners:
        return listeners

    def as_connection(connection: streams.StreamConnection) -> ports.Connection:
        return connection

    def as_registry(registry: streams.Connections) -> ports.ConnectionRegistry:
        return registry

    assert as_registry(streams.Connections()).get("c1-00") is None
    assert callable(as_listeners)
    assert callable(as_connection)


def test_exported_members() -> None:
    assert sorted(streams.__all__) == [
        "Connections",
        "StreamConfig",
        "StreamConnection",
        "StreamListeners",
        "StreamTransport",
        "parse_listen",
        "start_stream_listeners",
    ]
