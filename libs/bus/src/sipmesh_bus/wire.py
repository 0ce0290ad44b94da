"""A lean NATS client for request/reply on the hot path.

nats-py spends three task wakeups per message (its read loop, the
subscription's queue task and the flusher). This client has none: it is an
:class:`asyncio.Protocol` whose ``data_received`` parses the server's frames
and calls each subscription's plain callback at once, and whose
:meth:`WireClient.publish` appends to one buffer that a single ``call_soon``
writes with one ``transport.write`` per event-loop iteration.

It speaks the NATS client protocol (docs.nats.io, "Client Protocol"):

- server to client: ``INFO {json}``, ``MSG <subject> <sid> [reply-to] <#bytes>``,
  ``HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>``, ``PING``,
  ``PONG``, ``+OK``, ``-ERR <error>``;
- client to server: ``CONNECT {json}``, ``PUB <subject> [reply-to] <#bytes>``,
  ``HPUB <subject> [reply-to] <#header bytes> <#total bytes>``,
  ``SUB <subject> [queue group] <sid>``, ``UNSUB <sid>``, ``PING``, ``PONG``.

:meth:`WireClient.request` sends requests without a future or timer each
(:mod:`sipmesh_bus._wireinbox`): the reply comes to a plain callback.

It is a second connection beside nats-py (which keeps JetStream, KV and
everything else): one :class:`WireClient` per process, used for the hot
request/reply subjects only. It reconnects by itself across the configured
servers and re-subscribes; while it is down :meth:`WireClient.publish` returns
False so callers can answer at once instead of waiting for a timeout.

Errors::

    WireError
    ├── WireClosedError       not connected (flush, or a connect that failed)
    ├── WireProtocolError     the server sent something this parser cannot read
    ├── PayloadTooLargeError  a payload over the server's max_payload
    └── WireServerError       -ERR from the server
        └── WireAuthError     the server refused the credentials
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, cast

from sipmesh_bus._wireauth import Server, parse_url, public_key, read_creds, read_seed, sign
from sipmesh_bus._wireinbox import Inbox, ReplyCallback
from sipmesh_bus._wireproto import (
    NO_RESPONDERS,
    Parser,
    PayloadTooLargeError,
    Reply,
    RequestFailure,
    WireAuthError,
    WireClosedError,
    WireError,
    WireProtocolError,
    WireServerError,
    encode_headers,
    server_error,
    status_of,
)
from sipmesh_bus.config import NatsConfig

__all__ = [
    "NO_RESPONDERS",
    "ConnectionCallback",
    "HeaderBlock",
    "MsgCallback",
    "Parser",
    "PayloadTooLargeError",
    "RawMsgCallback",
    "Reply",
    "ReplyCallback",
    "RequestFailure",
    "WireAuthError",
    "WireClient",
    "WireClosedError",
    "WireError",
    "WireProtocolError",
    "WireServerError",
    "encode_headers",
]

log = logging.getLogger(__name__)

MsgCallback = Callable[[bytes, bytes, bytes, "int | None"], None]
"""Called with (subject, reply, payload, status) for each message, inside
``data_received``. ``reply`` is ``b""`` when there is none; ``status`` is the
HMSG status code (503: no responders) or None."""

RawMsgCallback = Callable[[bytes, bytes, bytes, bytes], None]
"""Called with (subject, reply, payload, headers) for each message, inside
``data_received``; ``headers`` is the raw ``NATS/1.0`` block of an HMSG (its
status line included), ``b""`` for a MSG."""

HeaderBlock = Mapping[str, str] | bytes
"""Headers to publish: name -> value, or a ready ``NATS/1.0`` block."""

ConnectionCallback = Callable[[bool], None]
"""Called with False when the connection is lost and True when it is back."""

_CRLF: Final = b"\r\n"
_DEFAULT_MAX_PAYLOAD: Final = 1024 * 1024
_MAX_BACKOFF: Final = 5.0
_MAX_UNSENT: Final = 64 * 1024 * 1024
_BLOCK_START: Final = b"NATS/1.0"
_BLOCK_END: Final = b"\r\n\r\n"


class _Protocol(asyncio.Protocol):
    """One TCP (or TLS) connection; forwards to the client while it is current."""

    def __init__(self, client: WireClient) -> None:
        self._client = client
        self.transport: asyncio.Transport | None = None
        self.parser = Parser(client._on_msg, self._on_control)
        loop = asyncio.get_running_loop()
        self.info: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.ready: asyncio.Future[None] = loop.create_future()
        # A failed handshake may fail a future nobody awaits any more.
        self.info.add_done_callback(_retrieve)
        self.ready.add_done_callback(_retrieve)
        self.handshaking = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except WireProtocolError as exc:
            log.warning("nats wire: %s; reconnecting", exc)
            self._fail(exc)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(WireClosedError(f"connection lost: {exc}" if exc else "connection closed"))
        self._client._lost(self)

    def _fail(self, exc: Exception) -> None:
        for fut in (self.info, self.ready):
            if not fut.done():
                fut.set_exception(exc)

    def _on_control(self, line: bytes) -> None:
        if not self.handshaking:
            self._client._on_control(line)
            return
        op = line[:5].upper()
        if op.startswith(b"INFO"):
            try:
                info = json.loads(line[5:])
            except ValueError:
                info = None
            if not isinstance(info, dict):
                self._fail(WireProtocolError("malformed INFO"))
            elif not self.info.done():
                self.info.set_result(info)
        elif op.startswith(b"PONG"):
            if not self.ready.done():
                self.ready.set_result(None)
        elif op.startswith(b"PING") and self.transport is not None:
            self.transport.write(b"PONG\r\n")
        elif op.startswith(b"-ERR"):
            self._fail(server_error(line))


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class WireClient:
    """One NATS connection with sync publish and subscribe.

    Args:
        config: the URL(s), timeouts and credentials (as for nats-py).
        name: the client name shown by the server (``config.name`` wins).
        security: :func:`sipmesh_bus.runtime.security_options` of ``config``
            (user, password, token, user_credentials, nkeys_seed, tls,
            tls_hostname); credentials in a URL win for that server.
        echo: receive this connection's own publications too.
        ping_interval: seconds between our PINGs.
        max_outstanding_pings: PINGs without PONG before the connection is
            taken as dead and dropped (then reconnected).
        on_change: called with False when the connection drops, True when it
            is back (not for the first :meth:`connect` nor for :meth:`close`).
    """

    def __init__(
        self,
        config: NatsConfig,
        *,
        name: str,
        security: Mapping[str, Any] | None = None,
        echo: bool = True,
        ping_interval: float = 10.0,
        max_outstanding_pings: int = 2,
        on_change: ConnectionCallback | None = None,
    ) -> None:
        self._servers = [parse_url(u.strip()) for u in config.url.split(",") if u.strip()]
        if not self._servers:
            raise ValueError("no NATS server URL")
        self._config = config
        self._name = config.name or name
        if security is None:  # the inline settings only; files need security_options
            security = {"user": config.user, "password": config.password, "token": config.token}
        self._security: Mapping[str, Any] = security
        self._echo = echo
        self._ping_interval = ping_interval
        self._max_pings = max_outstanding_pings
        self._listeners: list[ConnectionCallback] = [on_change] if on_change else []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proto: _Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._out = bytearray()
        self._scheduled = False
        self._callbacks: dict[bytes, MsgCallback] = {}
        self._raw: dict[bytes, RawMsgCallback] = {}
        # sid -> the callback of a subscribe_raw (its _callbacks entry takes plain MSGs).
        self._inbox: Inbox | None = None
        self._inbox_sid = b""  # while subscribed
        self._sub_lines: dict[bytes, bytes] = {}
        self._next_sid = 0
        self._pongs: deque[asyncio.Future[None] | None] = deque()
        self._ping_timer: asyncio.TimerHandle | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closing = False
        self._next_server = 0
        self._paused = False
        #: The largest payload the server takes (from its INFO).
        self.max_payload = _DEFAULT_MAX_PAYLOAD
        #: The last ``-ERR`` text the server sent on a live connection.
        self.last_error: str | None = None
        #: The server connected to (``host:port``), or None.
        self.server: str | None = None

    # -- life cycle -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a connection is up (after CONNECT was answered)."""
        return self._transport is not None

    def add_listener(self, callback: ConnectionCallback) -> None:
        """Also call ``callback(up)`` on each disconnect and reconnect."""
        self._listeners.append(callback)

    def remove_listener(self, callback: ConnectionCallback) -> None:
        """Stop calling ``callback``."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    async def connect(self, *, forever: bool = False) -> None:
        """Connect to the first server of the list that answers.

        Args:
            forever: keep trying (with backoff) until one answers; False
                tries each server once.

        Raises:
            WireAuthError: a server refused the credentials (never retried).
            OSError, TimeoutError, WireError: ``forever`` is False and no
                server could be reached.
        """
        self._loop = asyncio.get_running_loop()
        self._closing = False
        attempt = 0
        while True:
            error = await self._connect_round()
            if error is None:
                return
            if isinstance(error, WireAuthError) or not forever:
                raise error
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    async def close(self, timeout: float = 1.0) -> None:
        """Write out what is queued (waiting up to ``timeout``), then close.

        No connection-change callback is called for this close.
        """
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
            self._reconnecting = None
        if self._transport is not None:
            with contextlib.suppress(WireError, TimeoutError):
                await self.flush(timeout)
        self._drop(notify=False)

    async def drain(self, timeout: float = 1.0) -> None:
        """Unsubscribe everything, let what is queued out, then close."""
        for sid in list(self._callbacks):
            self.unsubscribe(int(sid))
        await self.close(timeout)

    async def flush(self, timeout: float = 2.0) -> None:
        """Write what is queued and wait for the server's PONG to a PING.

        When it returns, the server has processed everything sent before
        (SUBs included).

        Raises:
            WireClosedError: not connected, or the connection dropped meanwhile.
            TimeoutError: no PONG within ``timeout``.
        """
        if self._transport is None or self._loop is None:
            raise WireClosedError("not connected")
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pongs.append(fut)
        self._queue(b"PING\r\n")
        await asyncio.wait_for(fut, timeout)

    # -- publish and subscribe ----------------------------------------------

    def publish(
        self,
        subject: str | bytes,
        payload: bytes,
        reply: str | bytes | None = None,
        *,
        headers: HeaderBlock | None = None,
    ) -> bool:
        """Queue a message; it is written at the end of this loop iteration.

        ``subject`` and ``reply`` are the caller's (constants or a reply
        subject the server gave): they are not checked for spaces here.
        With ``headers`` it goes as an HPUB: name -> value is encoded (and
        checked) by :func:`encode_headers`; a ``bytes`` block goes as it is,
        so the caller builds it the same way (``NATS/1.0\\r\\n``, then
        ``Name: value\\r\\n`` lines with no CR or LF inside, then ``\\r\\n``):
        only its first and last bytes are checked.

        Returns:
            False (nothing queued) while disconnected.

        Raises:
            PayloadTooLargeError: headers and payload are over the server's max_payload.
            ValueError: a header name or value :func:`encode_headers` refuses,
                or a block that does not start with ``NATS/1.0`` and end with an empty line.
        """
        if headers:
            block = _block(headers)
            if self._transport is None:
                return False
            if isinstance(subject, str):
                subject = subject.encode()
            if isinstance(reply, str):
                reply = reply.encode()
            self._send(subject, reply or b"", block, payload)
            return True
        # Without headers (every hot-path message): _send's PUB inlined.
        if self._transport is None:
            return False
        if isinstance(subject, str):
            subject = subject.encode()
        size = len(payload)
        if size > self.max_payload:
            raise PayloadTooLargeError(f"{size} bytes over max_payload {self.max_payload}")
        out = self._out
        if reply:
            if isinstance(reply, str):
                reply = reply.encode()
            out += b"PUB %b %b %d\r\n" % (subject, reply, size)
        else:
            out += b"PUB %b %d\r\n" % (subject, size)
        out += payload
        out += _CRLF
        if not self._scheduled:
            self._scheduled = True
            cast(asyncio.AbstractEventLoop, self._loop).call_soon(self._write)
        return True

    def request(
        self,
        subject: str | bytes,
        payload: bytes,
        callback: ReplyCallback,
        *,
        timeout: float,
        headers: HeaderBlock | None = None,
    ) -> bool:
        """Send a request; ``callback`` gets the :class:`Reply` or a :class:`RequestFailure`.

        ``callback`` is called exactly once, from ``data_received`` (the
        reply: check its ``status``, 503 is no responders), from the one
        deadline timer (``TIMEOUT``) or when the connection drops or the
        client closes (``UNAVAILABLE``).

        Returns:
            False (and ``callback`` is never called) while disconnected.

        Raises:
            PayloadTooLargeError, ValueError: as :meth:`publish`.
        """
        block = _block(headers) if headers else b""
        if self._transport is None:
            return False
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = Inbox(cast(asyncio.AbstractEventLoop, self._loop))
        if not self._inbox_sid:
            sid = self.subscribe(inbox.prefix.decode() + "*", _ignore)
            self._inbox_sid = b"%d" % sid
        reply = inbox.add(callback, timeout)
        if isinstance(subject, str):
            subject = subject.encode()
        try:
            self._send(subject, reply, block, payload)
        except PayloadTooLargeError:
            inbox.forget(reply)
            raise
        return True

    async def ask(
        self,
        subject: str | bytes,
        payload: bytes,
        *,
        timeout: float,
        headers: HeaderBlock | None = None,
    ) -> Reply | RequestFailure | None:
        """:meth:`request`, awaited: the :class:`Reply` or the :class:`RequestFailure`.

        Returns:
            None (nothing was sent) while disconnected.

        Raises:
            PayloadTooLargeError, ValueError: as :meth:`publish`.
        """
        loop = self._loop
        if self._transport is None or loop is None:
            return None
        done: asyncio.Future[Reply | RequestFailure] = loop.create_future()
        if not self.request(
            subject, payload, functools.partial(_settle, done), timeout=timeout, headers=headers
        ):
            return None
        return await done

    @property
    def pending(self) -> int:
        """How many :meth:`request` calls wait for their reply."""
        return 0 if self._inbox is None else len(self._inbox)

    def subscribe(self, subject: str, callback: MsgCallback, queue: str | None = None) -> int:
        """Subscribe; ``callback`` runs inside ``data_received`` for each message.

        The subscription survives reconnects. Call :meth:`flush` to be sure
        the server has it.

        Returns:
            The subscription id, for :meth:`unsubscribe`.

        Raises:
            ValueError: an empty subject or queue, or one with whitespace.
        """
        for text in (subject, queue) if queue is not None else (subject,):
            if not text or any(c.isspace() for c in text):
                raise ValueError(f"invalid NATS subject or queue {text!r}")
        self._next_sid += 1
        sid = b"%d" % self._next_sid
        group = b" " + queue.encode() if queue else b""
        line = b"SUB " + subject.encode() + group + b" " + sid + _CRLF
        self._callbacks[sid] = callback
        self._sub_lines[sid] = line
        if self._transport is not None:
            self._queue(line)
        return self._next_sid

    def subscribe_raw(self, subject: str, callback: RawMsgCallback) -> int:
        """Subscribe as :meth:`subscribe` does; ``callback`` gets the raw header block.

        For readers of headers other than the status (``KV-Operation`` ...):
        ``callback(subject, reply, payload, headers)``, ``headers`` being
        ``b""`` for a message without any.

        Returns:
            The subscription id, for :meth:`unsubscribe`.

        Raises:
            ValueError: as :meth:`subscribe`.
        """

        def plain(subject: bytes, reply: bytes, payload: bytes, _status: int | None) -> None:
            callback(subject, reply, payload, b"")

        sid = self.subscribe(subject, plain)
        self._raw[b"%d" % sid] = callback
        return sid

    def unsubscribe(self, sid: int) -> None:
        """Stop a subscription (messages already read are still delivered)."""
        key = b"%d" % sid
        if key == self._inbox_sid:
            self._inbox_sid = b""  # the next request subscribes again
        self._sub_lines.pop(key, None)
        self._raw.pop(key, None)
        if self._callbacks.pop(key, None) is not None and self._transport is not None:
            self._queue(b"UNSUB " + key + _CRLF)

    def pause_reading(self) -> None:
        """Stop reading from the socket (back-pressure) until :meth:`resume_reading`."""
        self._paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""
        if self._paused:
            self._paused = False
            if self._transport is not None:
                self._transport.resume_reading()

    # -- inside --------------------------------------------------------------

    def _send(self, subject: bytes, reply: bytes, block: bytes, payload: bytes) -> None:
        size = len(block) + len(payload)
        if size > self.max_payload:
            raise PayloadTooLargeError(f"{size} bytes over max_payload {self.max_payload}")
        out = self._out
        if block:
            if reply:
                out += b"HPUB %b %b %d %d\r\n" % (subject, reply, len(block), size)
            else:
                out += b"HPUB %b %d %d\r\n" % (subject, len(block), size)
            out += block
        elif reply:
            out += b"PUB %b %b %d\r\n" % (subject, reply, size)
        else:
            out += b"PUB %b %d\r\n" % (subject, size)
        out += payload
        out += _CRLF
        if not self._scheduled:
            self._scheduled = True
            cast(asyncio.AbstractEventLoop, self._loop).call_soon(self._write)

    def _queue(self, data: bytes) -> None:
        self._out += data
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._write)

    def _write(self) -> None:
        self._scheduled = False
        transport = self._transport
        if self._out and transport is not None:
            out, self._out = self._out, bytearray()
            transport.write(out)
            if transport.get_write_buffer_size() > _MAX_UNSENT:
                # The server stopped reading (or the path is black-holed):
                # drop the connection rather than buffer without bound.
                log.warning("nats wire: %d bytes unsent; reconnecting", _MAX_UNSENT)
                transport.abort()

    def _on_msg(
        self, subject: bytes, sid: bytes, reply: bytes, payload: bytes, headers: bytes
    ) -> None:
        if sid == self._inbox_sid:
            cast(Inbox, self._inbox).on_reply(subject, payload, headers)
            return
        callback = self._callbacks.get(sid)
        if callback is None:
            return  # unsubscribed; the server had sent it already
        try:
            if not headers:
                callback(subject, reply, payload, None)
            elif (raw := self._raw.get(sid)) is not None:
                raw(subject, reply, payload, headers)
            else:
                callback(subject, reply, payload, status_of(headers))
        except Exception:
            log.exception("nats wire: callback for %s failed", subject.decode(errors="replace"))

    def _on_control(self, line: bytes) -> None:
        op = line[:5].upper()
        if op.startswith(b"PING"):
            self._queue(b"PONG\r\n")
        elif op.startswith(b"PONG"):
            if self._pongs:
                fut = self._pongs.popleft()
                if fut is not None and not fut.done():
                    fut.set_result(None)
        elif op.startswith(b"-ERR"):
            error = server_error(line)
            self.last_error = str(error)
            # Most errors are followed by the server closing the connection
            # (then we reconnect); a permissions violation is not.
            log.warning("nats wire: server error: %s", error)
        elif op.startswith(b"INFO"):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                self.max_payload = int(json.loads(line[5:]).get("max_payload", self.max_payload))
        # +OK needs nothing (verbose is off anyway).

    async def _connect_round(self) -> BaseException | None:
        """Try each server once, starting after the last one used."""
        error: BaseException | None = None
        count = len(self._servers)
        for i in range(count):
            server = self._servers[(self._next_server + i) % count]
            try:
                await self._connect_one(server)
            except WireAuthError as exc:
                return exc
            except (OSError, TimeoutError, WireError, ssl.SSLError) as exc:
                error = exc
                continue
            self._next_server = (self._next_server + i) % count
            return None
        return error or WireClosedError("no server")

    async def _connect_one(self, server: Server) -> None:
        loop = asyncio.get_running_loop()
        timeout = self._config.connect_timeout
        proto = _Protocol(self)
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(lambda: proto, server.host, server.port)
        try:
            async with asyncio.timeout(timeout):
                info = await proto.info
                context = self._security.get("tls")
                if server.tls or info.get("tls_required") or context is not None:
                    if not isinstance(context, ssl.SSLContext):
                        context = ssl.create_default_context()
                    hostname = self._security.get("tls_hostname") or server.host
                    new = await loop.start_tls(transport, proto, context, server_hostname=hostname)
                    if new is None:
                        raise WireClosedError("TLS handshake failed")
                    transport = proto.transport = new
                options = self._connect_options(server, info, tls=context is not None)
                hello = b"CONNECT " + json.dumps(options).encode() + _CRLF
                transport.write(hello + b"".join(self._sub_lines.values()) + b"PING\r\n")
                await proto.ready
        except BaseException:
            transport.abort()
            raise
        proto.handshaking = False
        self._proto, self._transport = proto, transport
        self.server = str(server)
        with contextlib.suppress(ValueError, TypeError):
            self.max_payload = int(info.get("max_payload", _DEFAULT_MAX_PAYLOAD))
        if self._paused:
            transport.pause_reading()
        self._schedule_ping()
        if self._reconnecting is not None:
            self._notify(True)  # a reconnect; the first connect is the caller's own

    def _connect_options(
        self, server: Server, info: Mapping[str, Any], *, tls: bool
    ) -> dict[str, Any]:
        sec = self._security
        options: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "tls_required": tls,
            "name": self._name,
            "lang": "python-sipmesh-wire",
            "version": "1.0",
            "protocol": 1,
            "echo": self._echo,
            "headers": True,
            "no_responders": True,
        }
        user = server.user or sec.get("user")
        if user:
            options["user"] = user
            password = server.password if server.user else sec.get("password")
            if password:
                options["pass"] = password
        token = server.token or sec.get("token")
        if token:
            options["auth_token"] = token
        nonce = str(info.get("nonce", "")).encode()
        if sec.get("user_credentials"):
            jwt, seed = read_creds(Path(sec["user_credentials"]))
            options["jwt"] = jwt
            options["sig"] = sign(seed, nonce)
        elif sec.get("nkeys_seed"):
            seed = read_seed(Path(sec["nkeys_seed"]))
            options["nkey"] = public_key(seed)
            options["sig"] = sign(seed, nonce)
        return options

    def _schedule_ping(self) -> None:
        if self._loop is not None:
            self._ping_timer = self._loop.call_later(self._ping_interval, self._ping)

    def _ping(self) -> None:
        if self._transport is None:
            return
        if len(self._pongs) >= self._max_pings:
            log.warning("nats wire: %d PINGs without PONG; reconnecting", len(self._pongs))
            self._transport.abort()  # connection_lost does the rest
            return
        self._pongs.append(None)
        self._queue(b"PING\r\n")
        self._schedule_ping()

    def _lost(self, proto: _Protocol) -> None:
        if proto is not self._proto:
            return  # a connection that never finished its handshake
        was_up = self._transport is not None
        self._drop(notify=was_up and not self._closing)
        if not self._closing and self._reconnecting is None:
            log.warning("nats wire: connection to %s lost; reconnecting", self.server)
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    def _drop(self, *, notify: bool) -> None:
        transport, self._transport, self._proto = self._transport, None, None
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        self._out = bytearray()
        pongs, self._pongs = self._pongs, deque()
        for fut in pongs:
            if fut is not None and not fut.done():
                fut.set_exception(WireClosedError("connection lost"))
        if self._inbox is not None:
            # The inbox subscription went with the connection: no reply to
            # what is pending can come, so its callers learn it now.
            self._inbox.fail_all(RequestFailure.UNAVAILABLE)
        if transport is not None:
            transport.close()
        if notify:
            self._notify(False)

    async def _reconnect(self) -> None:
        attempt = 0
        last: str | None = None
        try:
            while not self._closing:
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                self._next_server += 1  # start with the next server
                error = await self._connect_round()
                if error is None:
                    log.warning("nats wire: reconnected to %s", self.server)
                    return
                text = f"{type(error).__name__}: {error}"
                if text != last:
                    last = text
                    log.warning("nats wire: reconnect failed: %s (retrying)", text)
        finally:
            self._reconnecting = None

    def _backoff(self, attempt: int) -> float:
        if attempt == 0:
            return 0.0
        base = min(self._config.reconnect_wait * float(2 ** (attempt - 1)), _MAX_BACKOFF)
        return base * (0.5 + random.random() / 2)  # jitter

    def _notify(self, up: bool) -> None:
        for callback in list(self._listeners):
            try:
                callback(up)
            except Exception:
                log.exception("nats wire: connection callback failed")


def _block(headers: HeaderBlock) -> bytes:
    """The header block of an HPUB: ``headers`` encoded, or checked at its ends."""
    if not isinstance(headers, bytes):
        return encode_headers(headers)
    if not (headers.startswith(_BLOCK_START) and headers.endswith(_BLOCK_END)):
        raise ValueError(f"not a NATS header block: {headers[:40]!r}")
    return headers


def _settle(done: asyncio.Future[Reply | RequestFailure], value: Reply | RequestFailure) -> None:
    """:meth:`WireClient.ask`'s callback (its awaiting caller may have been cancelled)."""
    if not done.done():
        done.set_result(value)


def _ignore(_subject: bytes, _reply: bytes, _payload: bytes, _status: int | None) -> None:
    """The inbox subscription's callback: :meth:`WireClient._on_msg` routes it to the inbox."""
