"""SIP over streams: TCP, TLS, WebSocket and secure WebSocket listeners and connections.

The socket side only. Framing is sipmsg's (:class:`sipmsg.framing.StreamFramer`
for TCP and TLS, :mod:`sipmsg.websocket` for WS and WSS); every complete message
goes to the :class:`~sipmesh_edge.ports.MessageSink`, which decides what to do
with it and answers through :meth:`StreamConnection.send`::

    listeners = await start_stream_listeners(config, sink)
    ...                                    # sink.on_message(data, connection=conn, ...)
    conn = listeners.connections.get(connection_id)
    conn.send(response_bytes)
    conn = await listeners.connect("tls", "gw.example.net", 5061)   # outbound, reused
    await listeners.close()

What the connections enforce, all from :class:`StreamConfig`:

* framing errors (no Content-Length, garbage, a message over
  ``max_message_size``) go to ``sink.on_parse_error`` and then close the
  connection, as framing is lost;
* RFC 5626 §3.5.1 keep-alives: a double-CRLF "ping" is answered with a CRLF
  "pong" (also when a WebSocket client sends it inside a text frame, as SIP.js
  and JsSIP do); a WebSocket Ping gets its Pong (RFC 6455 §5.5.2);
* ``idle_timeout`` closes connections that receive and send nothing;
  ``handshake_timeout`` bounds the TLS handshake and the WebSocket upgrade;
* ``max_connections_per_ip`` and ``max_connections`` refuse connections beyond
  the caps at accept;
* backpressure: while a peer does not read what the edge writes (the write
  buffer is over the transport's high-water mark), the edge stops reading from
  it; a write buffer beyond ``max_write_buffer`` drops the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import itertools
import secrets
import socket
import ssl
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Final, Literal, TypeAlias, cast

import msgspec
from msgspec import Meta

from sipmsg import LocalProtocolError, ParseError
from sipmsg import websocket as ws
from sipmsg.framing import PING, PONG, MessageFramed, StreamFramer

from . import tls
from .ports import MessageSink
from .tls import ClientAuth
from .udp import os_error_reason

__all__ = [
    "Connections",
    "StreamConfig",
    "StreamConnection",
    "StreamListeners",
    "StreamTransport",
    "parse_listen",
    "start_stream_listeners",
]

StreamTransport: TypeAlias = Literal["tcp", "tls", "ws", "wss"]
_TRANSPORTS: Final[tuple[StreamTransport, ...]] = ("tcp", "tls", "ws", "wss")
_SECURE: Final = frozenset({"tls", "wss"})
_WEBSOCKET: Final = frozenset({"ws", "wss"})
_CLOSE_WAIT: Final = 2.0
_CLOSE_REASON_MAX: Final = 100


class StreamConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Stream listeners and connection limits; the defaults open no listener.

    Listen addresses are ``"host:port"`` strings, IPv6 in brackets:
    ``"0.0.0.0:5060"``, ``"[::]:5060"``, ``"127.0.0.1:0"`` (a free port). An
    IPv6 listener is IPv6 only, so a dual-stack edge lists both.
    """

    tcp: tuple[str, ...] = ()
    tls: tuple[str, ...] = ()
    ws: tuple[str, ...] = ()
    wss: tuple[str, ...] = ()
    cert_file: str | None = None
    #: PEM certificate chain for TLS and WSS (required when either listens).
    key_file: str | None = None
    ca_file: str | None = None
    #: CAs that sign client certificates (with ``client_auth``).
    client_auth: ClientAuth = "none"
    #: Ask TLS/WSS clients for a certificate: none, optional or required.
    tls_ciphers: str | None = None
    #: OpenSSL TLS 1.2 cipher string replacing :data:`tls.CIPHERS`.
    outbound_ca_file: str | None = None
    #: CAs trusted for outbound TLS; None uses the system's.
    outbound_verify: bool = True
    #: Verify the certificate and name of servers the edge connects to.
    max_message_size: Annotated[int, Meta(ge=1024)] = 65535
    #: The largest SIP message accepted on a stream; larger ones are refused (513).
    idle_timeout: Annotated[float, Meta(gt=0)] = 3700.0
    #: Seconds without traffic before a connection is closed. Longer than the
    #: usual one-hour registration, so a UA that only re-REGISTERs keeps its
    #: connection; RFC 5626 keep-alives (every 95-120 s) keep it open too.
    handshake_timeout: Annotated[float, Meta(gt=0)] = 10.0
    #: Seconds allowed for the TLS handshake and for the WebSocket upgrade.
    connect_timeout: Annotated[float, Meta(gt=0)] = 10.0
    #: Seconds allowed for an outbound connection, TLS handshake included.
    max_connections: Annotated[int, Meta(ge=0)] = 0
    #: All open connections, 0 for no limit.
    max_connections_per_ip: Annotated[int, Meta(ge=0)] = 256
    #: Connections from one source address, 0 for no limit. One office NAT can
    #: hide hundreds of phones; raise it for such customers.
    max_write_buffer: Annotated[int, Meta(ge=65536)] = 4 * 1024 * 1024
    #: Octets queued for a peer that does not read before it is dropped.
    backlog: Annotated[int, Meta(ge=1)] = 1024

    def __post_init__(self) -> None:
        for transport in _TRANSPORTS:
            for entry in getattr(self, transport):
                parse_listen(entry)
        if (self.tls or self.wss) and not (self.cert_file and self.key_file):
            raise ValueError("tls and wss listeners need cert_file and key_file")


def parse_listen(entry: str) -> tuple[str, int]:
    """Split a ``"host:port"`` listen address (``"[v6]:port"`` for IPv6).

    Raises:
        ValueError: the entry is not of that form.
    """
    host, sep, port_text = entry.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise ValueError(f"listen address {entry!r}: not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"listen address {entry!r}: put an IPv6 address in brackets")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"listen address {entry!r}: expected host:port")
    return host, int(port_text)


def _normal_host(host: str) -> str:
    """An IP address in its canonical text form; a name in lower case."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower().rstrip(".")


def _base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + out
        if n == 0:
            return out


_PeerKey: TypeAlias = tuple[str, str, int]


class Connections:
    """The live stream connections of one edge: by id, by peer, and counted by source IP.

    Ids are ``c<counter>-<random>``: letters, digits and one hyphen, so a valid
    NATS subject token. The random part keeps an id from a previous run of the
    edge (still in a location binding) from naming a new connection.
    """

    __slots__ = ("_by_id", "_by_key", "_counter", "_keys_of", "_per_ip")

    def __init__(self) -> None:
        self._by_id: dict[str, StreamConnection] = {}
        self._by_key: dict[_PeerKey, str] = {}
        self._keys_of: dict[str, list[_PeerKey]] = {}
        self._per_ip: Counter[str] = Counter()
        self._counter: Iterator[int] = itertools.count(1)

    def new_id(self) -> str:
        """A fresh connection id."""
        return f"c{_base36(next(self._counter))}-{secrets.token_hex(4)}"

    def add(self, connection: StreamConnection) -> None:
        """Register an open connection under its id and its peer address."""
        self._by_id[connection.id] = connection
        self._per_ip[connection.peer[0]] += 1
        self._keys_of[connection.id] = []
        self.add_alias(connection, connection.peer[0], connection.peer[1])

    def add_alias(self, connection: StreamConnection, host: str, port: int) -> None:
        """Let :meth:`find` return ``connection`` for ``(host, port)`` too (a DNS name)."""
        key = (connection.transport, _normal_host(host), port)
        self._by_key[key] = connection.id
        self._keys_of[connection.id].append(key)

    def remove(self, connection_id: str) -> None:
        """Forget a connection; unknown ids are ignored."""
        connection = self._by_id.pop(connection_id, None)
        if connection is None:
            return
        ip = connection.peer[0]
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
        for key in self._keys_of.pop(connection_id, ()):
            if self._by_key.get(key) == connection_id:
                del self._by_key[key]

    def get(self, connection_id: str) -> StreamConnection | None:
        """The open connection with this id, or None."""
        return self._by_id.get(connection_id)

    def find(self, transport: str, host: str, port: int) -> StreamConnection | None:
        """An open connection of ``transport`` to ``host:port``, for reuse (RFC 5923).

        ``host`` is an IP address (any spelling) or a name given to
        :meth:`add_alias`.
        """
        connection_id = self._by_key.get((transport, _normal_host(host), port))
        connection = None if connection_id is None else self._by_id.get(connection_id)
        return connection if connection is not None and connection.is_open else None

    def count_from(self, ip: str) -> int:
        """How many open connections come from this source address."""
        return self._per_ip.get(ip, 0)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[StreamConnection]:
        return iter(list(self._by_id.values()))


@dataclass(frozen=True, slots=True)
class _Shared:
    """What every connection of one edge shares (one object, not three fields each)."""

    config: StreamConfig
    sink: MessageSink
    registry: Connections


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection carrying SIP framed by Content-Length.

    Implements :class:`sipmesh_edge.ports.Connection`. The WebSocket variant
    overrides how bytes are read and written.
    """

    __slots__ = (
        "_closed",
        "_closing",
        "_held",
        "_last_activity",
        "_loop",
        "_reader",
        "_shared",
        "_stream",
        "_timeout",
        "_timer",
        "id",
        "local",
        "peer",
        "transport",
    )

    def __init__(self, transport: str, shared: _Shared) -> None:
        self.id: str = ""
        #: Assigned when the connection is accepted or opened.
        self.transport: str = transport
        self.peer: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self._shared = shared
        self._loop = asyncio.get_running_loop()
        self._stream: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timeout: float = shared.config.idle_timeout
        self._last_activity: float = 0.0
        self._closing = False
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._reader: StreamFramer = StreamFramer(shared.config.max_message_size)
        self._held: bytes = b""

    # --- the Connection port ------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue one complete SIP message for the peer; never blocks.

        Raises:
            ConnectionError: the connection is closed or closing.
        """
        stream = self._stream
        if stream is None or self._closing:
            raise ConnectionError(f"connection {self.id or '(new)'} is closed")
        stream.write(self._encode(data))
        self._last_activity = self._loop.time()
        if stream.get_write_buffer_size() > self._shared.config.max_write_buffer:
            # The peer stopped reading long ago; its queue would only grow.
            self._abort()

    def close(self) -> None:
        """Close after what was sent is flushed; idempotent."""
        if self._closing or self._stream is None:
            return
        self._closing = True
        self._before_close()
        self._stream.close()

    @property
    def is_open(self) -> bool:
        """Whether messages can still be sent (not closed nor closing)."""
        return self._stream is not None and not self._closing

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (the registry forgot it)."""
        return self._closed.done()

    async def wait_closed(self) -> None:
        """Wait until the connection is gone."""
        await asyncio.shield(self._closed)

    # --- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's do not subclass asyncio.Transport.
        self._stream = transport = cast(asyncio.Transport, transport)
        self.peer = _address(transport.get_extra_info("peername"))
        self.local = _address(transport.get_extra_info("sockname"))
        config, registry = self._shared.config, self._shared.registry
        over_ip_cap = 0 < config.max_connections_per_ip <= registry.count_from(self.peer[0])
        if over_ip_cap or 0 < config.max_connections <= len(registry):
            self._closing = True
            transport.abort()
            return
        self.id = registry.new_id()
        registry.add(self)
        self._last_activity = self._loop.time()
        self._timer = self._loop.call_later(self._timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_activity = self._loop.time()
        self._receive(data)

    def eof_received(self) -> bool | None:
        # The peer is done sending; half-open SIP connections serve nobody.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.id:
            self._shared.registry.remove(self.id)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        # Backpressure: a peer that does not read our answers gets no more
        # requests read from it until it does.
        if self._stream is not None and not self._closing:
            self._stream.pause_reading()

    def resume_writing(self) -> None:
        if self._stream is not None and not self._closing:
            self._stream.resume_reading()

    # --- internals ----------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        reader, sink = self._reader, self._shared.sink
        # The framer forgets its buffer when it gives up; keep the octets it
        # held (the unframed tail of ``_held + data``) so the sink can still
        # read the Via, Call-ID and CSeq of the message it answers with 400.
        held = self._held + data if self._held else data
        pending = len(held)
        try:
            reader.feed(data)
            for event in reader:
                pending = reader.pending_bytes
                if isinstance(event, MessageFramed):
                    self._deliver(event.data)
                elif event.pong_needed:
                    self._write(PONG)
                if self._closing:
                    return
        except ParseError as exc:
            self._held = b""
            sink.on_parse_error(exc, connection=self, data=held[len(held) - pending :])
            self.close()
            return
        pending = reader.pending_bytes
        self._held = held[len(held) - pending :] if pending else b""

    def _deliver(self, data: bytes) -> None:
        self._shared.sink.on_message(
            data, transport=self.transport, source=self.peer, local=self.local, connection=self
        )

    def _encode(self, data: bytes) -> bytes:
        return data

    def _before_close(self) -> None:
        """Last words before the transport closes (a WebSocket Close frame)."""

    def _write(self, data: bytes) -> None:
        if self._stream is not None and not self._closing:
            self._stream.write(data)

    def _hang_up(self) -> None:
        """Close the transport with no last words (they were written already)."""
        self._closing = True
        if self._stream is not None:
            self._stream.close()

    def _abort(self) -> None:
        self._closing = True
        if self._stream is not None:
            self._stream.abort()

    def _check_idle(self) -> None:
        self._timer = None
        if self._closing:
            return
        remaining = self._last_activity + self._timeout - self._loop.time()
        if remaining > 0:
            self._timer = self._loop.call_later(remaining, self._check_idle)
        else:
            self.close()


class _WebSocketStream(StreamConnection):
    """A WS or WSS connection (RFC 7118): an HTTP upgrade, then one SIP message per frame."""

    __slots__ = ("_handshake", "_ws", "request")

    def __init__(self, transport: str, shared: _Shared) -> None:
        super().__init__(transport, shared)
        self._timeout = shared.config.handshake_timeout
        self._handshake: ws.HandshakeParser | None = ws.HandshakeParser()
        self._ws: ws.WebSocketConnection | None = None
        self.request: ws.HandshakeRequest | None = None
        #: The accepted upgrade request (Origin, X-Forwarded-For ...).

    def send(self, data: bytes) -> None:
        if self._ws is None:
            raise ConnectionError(f"connection {self.id} has not completed its handshake")
        super().send(data)

    def _receive(self, data: bytes) -> None:
        if self._handshake is not None:
            data = self._upgrade(self._handshake, data)
            if self._ws is None:
                return
        assert self._ws is not None
        try:
            self._ws.feed(data)
            for event in self._ws:
                self._handle(event)
                if self._closing:
                    return
        except ws.WebSocketProtocolError as exc:
            self._shared.sink.on_parse_error(exc, connection=self)
            if not self._closing:
                self._write(self._ws.send_close(exc.close_code, exc.reason[:_CLOSE_REASON_MAX]))
                self._hang_up()

    def _upgrade(self, parser: ws.HandshakeParser, data: bytes) -> bytes:
        """Feed the upgrade request; accept or refuse it once complete."""
        parser.feed(data)
        try:
            request = parser.next_request()
        except ParseError as exc:
            # RFC 6455 §4.2.2: a server that refuses the handshake answers
            # with an HTTP error status; RFC 7118 §4.1 makes "sip" mandatory.
            self._write(ws.reject_response(exc))
            self._hang_up()
            return b""
        if request is None:
            return b""
        self._write(ws.accept_response(request))
        self.request = request
        self._handshake = None
        self._ws = ws.WebSocketConnection(self._shared.config.max_message_size)
        self._timeout = self._shared.config.idle_timeout
        return parser.trailing_data

    def _handle(self, event: ws.WebSocketEvent) -> None:
        assert self._ws is not None
        match event:
            case ws.TextMessage(data=data) | ws.BinaryMessage(data=data):
                if data.strip(b"\r\n"):
                    self._deliver(data)
                elif data == PING:
                    # Not RFC 7118, but SIP.js and JsSIP send the RFC 5626
                    # double-CRLF inside a frame and expect the CRLF back.
                    self._write(self._ws.send_text(PONG))
            case ws.Ping(payload=payload):
                # RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint
                # MUST send a Pong frame in response".
                self._write(self._ws.send_pong(payload))
            case ws.CloseReceived():
                # §7.1.1: "the server [...] SHOULD close the underlying TCP
                # connection first" once the closing handshake is done.
                self._write(self._ws.close_reply(event))
                self._hang_up()
            case ws.Pong():
                pass

    def _encode(self, data: bytes) -> bytes:
        assert self._ws is not None
        # RFC 7118 §5.1: SIP messages travel in text or binary frames; a body
        # that is not UTF-8 (an ISUP part, say) cannot go in a text frame.
        try:
            return self._ws.send_text(data)
        except LocalProtocolError:
            return self._ws.send_binary(data)

    def _before_close(self) -> None:
        if self._ws is None or self._stream is None:
            return
        with contextlib.suppress(LocalProtocolError):  # a Close was already sent
            self._stream.write(self._ws.send_close(1000))


def _address(info: object) -> tuple[str, int]:
    # IPv6 socket addresses are (host, port, flowinfo, scope_id).
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return ("", 0)


def _connection_class(transport: StreamTransport) -> type[StreamConnection]:
    return _WebSocketStream if transport in _WEBSOCKET else StreamConnection


class StreamListeners:
    """Running stream listeners, their connections, and outbound connections.

    Implements :class:`sipmesh_edge.ports.StreamListeners`.
    """

    def __init__(
        self,
        config: StreamConfig,
        sink: MessageSink,
        servers: list[tuple[StreamTransport, asyncio.Server]],
    ) -> None:
        self._config = config
        self._shared = _Shared(config, sink, Connections())
        self._servers = servers
        self._client_ssl: ssl.SSLContext | None = None
        self._pending: dict[_PeerKey, asyncio.Task[StreamConnection]] = {}

    @property
    def connections(self) -> Connections:
        """Every open connection, accepted or opened."""
        return self._shared.registry

    @property
    def addresses(self) -> list[tuple[str, str, int]]:
        """The bound ``(transport, host, port)`` of every listening socket."""
        out: list[tuple[str, str, int]] = []
        for transport, server in self._servers:
            for sock in server.sockets:
                host, port = _address(sock.getsockname())
                out.append((transport, host, port))
        return out

    async def connect(self, transport: str, host: str, port: int) -> StreamConnection:
        """An open connection to ``host:port``: an existing one if there is, else a new one.

        RFC 5923 §1: reusing a connection "avoids the overhead of the
        connection setup"; here any open connection of the same transport to
        the same address is reused, accepted or opened, and concurrent calls
        for one address share one connection attempt.

        Args:
            transport: ``"tcp"`` or ``"tls"`` (outbound WebSocket is not supported).
            host: an IP address or a DNS name (resolved by the loop).
            port: the port.

        Returns:
            The connection, registered in :attr:`connections`.

        Raises:
            ValueError: an unsupported transport.
            OSError: the connection failed (``ssl.SSLError`` and
                ``TimeoutError`` are ``OSError`` subclasses).
        """
        if transport not in ("tcp", "tls"):
            raise ValueError(f"outbound {transport} connections are not supported")
        existing = self.connections.find(transport, host, port)
        if existing is not None:
            return existing
        key = (transport, _normal_host(host), port)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(self._open(transport, host, port))
            self._pending[key] = task
            task.add_done_callback(functools.partial(self._settled, key))
        # One caller giving up must not cancel the attempt the others wait for.
        return await asyncio.shield(task)

    def _settled(self, key: _PeerKey, task: asyncio.Task[StreamConnection]) -> None:
        self._pending.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have given up

    async def _open(self, transport: str, host: str, port: int) -> StreamConnection:
        secure = transport == "tls"
        config = self._config
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(config.connect_timeout):
            # A name may resolve to a peer we are already connected to.
            for *_, address in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
                existing = self.connections.find(transport, str(address[0]), port)
                if existing is not None:
                    self.connections.add_alias(existing, host, port)
                    return existing
            _, connection = await loop.create_connection(
                lambda: StreamConnection(transport, self._shared),
                host,
                port,
                ssl=self._outbound_ssl() if secure else None,
                ssl_handshake_timeout=config.handshake_timeout if secure else None,
            )
        if not connection.id:
            raise ConnectionRefusedError("connection limit reached")
        self.connections.add_alias(connection, host, port)
        return connection

    def _outbound_ssl(self) -> ssl.SSLContext:
        if self._client_ssl is None:
            config = self._config
            self._client_ssl = tls.client_context(
                ca_file=config.outbound_ca_file,
                cert_file=config.cert_file,
                key_file=config.key_file,
                verify=config.outbound_verify,
            )
        return self._client_ssl

    async def close(self) -> None:
        """Stop accepting, close every connection, and wait (briefly) until they are gone."""
        for _, server in self._servers:
            server.close()
        for task in list(self._pending.values()):
            task.cancel()
        connections = list(self.connections)
        for connection in connections:
            connection.close()
        waits = [asyncio.ensure_future(c.wait_closed()) for c in connections]
        if waits:
            _, late = await asyncio.wait(waits, timeout=_CLOSE_WAIT)
            for connection in connections:
                if not connection.closed:
                    connection._abort()
            for wait in late:
                wait.cancel()
        for _, server in self._servers:
            await server.wait_closed()


async def start_stream_listeners(
    config: StreamConfig, sink: MessageSink, *, reuse_port: bool = False
) -> StreamListeners:
    """Open every listener in ``config``.

    Args:
        config: listen addresses, TLS files and limits.
        sink: receives every framed message and framing error.
        reuse_port: bind with SO_REUSEPORT, sharing each port with the other
            edge processes of this host (the kernel spreads new connections).

    Returns:
        The running listeners (none when the config lists no address).

    Raises:
        OSError: an address cannot be bound (the listeners opened so far are
            closed again).
        ssl.SSLError: the certificate or key is invalid.
    """
    loop = asyncio.get_running_loop()
    server_ssl = None
    if config.tls or config.wss:
        assert config.cert_file is not None
        assert config.key_file is not None
        server_ssl = tls.server_context(
            config.cert_file,
            config.key_file,
            ca_file=config.ca_file,
            client_auth=config.client_auth,
            ciphers=config.tls_ciphers,
        )
    servers: list[tuple[StreamTransport, asyncio.Server]] = []
    listeners = StreamListeners(config, sink, servers)
    shared = listeners._shared
    try:
        for transport in _TRANSPORTS:
            secure = transport in _SECURE
            cls = _connection_class(transport)
            for entry in getattr(config, transport):
                host, port = parse_listen(entry)
                try:
                    server = await loop.create_server(
                        functools.partial(cls, transport, shared),
                        host,
                        port,
                        ssl=server_ssl if secure else None,
                        ssl_handshake_timeout=config.handshake_timeout if secure else None,
                        backlog=config.backlog,
                        reuse_address=True,
                        reuse_port=reuse_port or None,
                    )
                except OSError as exc:
                    what = f"cannot listen on {transport.upper()} {host}:{port}"
                    raise OSError(exc.errno, f"{what}: {os_error_reason(exc)}") from exc
                servers.append((transport, server))
    except BaseException:
        for _, server in servers:
            server.close()
        raise
    return listeners
