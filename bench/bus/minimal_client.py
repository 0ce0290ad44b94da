"""A minimal NATS client for the hot path, to find the floor of the per-message cost.

Not for production: no TLS, auth, reconnect, headers on publish, or slow-consumer
handling. It speaks just enough of the NATS client protocol (CONNECT, PING/PONG,
SUB, PUB, MSG and HMSG) over an :class:`asyncio.Protocol`:

- callbacks are plain functions called from ``data_received`` (no queue, no
  task per subscription, no coroutine per message);
- :meth:`MinimalClient.publish` appends to a buffer and, once per event-loop
  iteration, one ``call_soon`` writes everything queued since (one ``write``
  for many PUBs: the "cork").

Wire format (https://docs.nats.io/reference/reference-protocols/nats-protocol):
``PUB <subject> [reply-to] <#bytes>\\r\\n[payload]\\r\\n``,
``MSG <subject> <sid> [reply-to] <#bytes>\\r\\n[payload]\\r\\n`` and
``HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>\\r\\n[headers][payload]\\r\\n``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import cast

__all__ = ["MinimalClient", "MsgCallback"]

MsgCallback = Callable[[bytes, bytes, bytes], None]
"""Called with (subject, reply, payload) for each message; headers are dropped."""

_CRLF = b"\r\n"


class _Protocol(asyncio.Protocol):
    def __init__(self, client: MinimalClient) -> None:
        self._client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._client._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._client._feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._lost(exc)


class MinimalClient:
    """One NATS connection; publish and subscribe with sync callbacks."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._scheduled = False
        self._subs: dict[bytes, MsgCallback] = {}
        self._next_sid = 0
        self._pong: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed: asyncio.Future[None] | None = None

    async def connect(self, host: str, port: int, *, name: str = "minimal") -> None:
        """Open the connection, send CONNECT and wait for the first PONG."""
        self._loop = asyncio.get_running_loop()
        self.closed = self._loop.create_future()
        await self._loop.create_connection(lambda: _Protocol(self), host, port)
        options = {"verbose": False, "pedantic": False, "name": name, "lang": "python-min"}
        options |= {"version": "0", "protocol": 1, "headers": True, "no_responders": True}
        options["echo"] = False
        self._out.append(b"CONNECT " + json.dumps(options).encode() + _CRLF)
        await self.flush()

    async def flush(self) -> None:
        """Write what is queued and wait for the server's PONG to a PING."""
        assert self._loop is not None
        self._pong = self._loop.create_future()
        self._out.append(b"PING\r\n")
        self._write()
        await self._pong

    def subscribe(self, subject: str, cb: MsgCallback, *, queue: str = "") -> int:
        """Subscribe; ``cb`` runs inside ``data_received``. Returns the sid."""
        self._next_sid += 1
        sid = str(self._next_sid).encode()
        self._subs[sid] = cb
        q = b" " + queue.encode() if queue else b""
        self._queue(b"SUB " + subject.encode() + q + b" " + sid + _CRLF)
        return self._next_sid

    def publish(self, subject: bytes, payload: bytes, reply: bytes = b"") -> None:
        """Queue a PUB; it is written at the end of this event-loop iteration."""
        size = str(len(payload)).encode()
        if reply:
            self._queue(b"PUB %s %s %s\r\n%s\r\n" % (subject, reply, size, payload))
        else:
            self._queue(b"PUB %s %s\r\n%s\r\n" % (subject, size, payload))

    def close(self) -> None:
        """Close the socket now (queued data is written first by the transport)."""
        self._write()
        if self._transport is not None:
            self._transport.close()

    def _queue(self, cmd: bytes) -> None:
        self._out.append(cmd)
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._write)

    def _write(self) -> None:
        self._scheduled = False
        if self._out and self._transport is not None:
            out, self._out = self._out, []
            self._transport.write(b"".join(out))

    def _lost(self, exc: Exception | None) -> None:
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def _feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        while pos < end:
            eol = buf.find(_CRLF, pos)
            if eol < 0:
                break
            op = buf[pos : pos + 4]
            if op == b"MSG ":
                args = bytes(buf[pos + 4 : eol]).split(b" ")
                size = int(args[-1])
                start = eol + 2
                if start + size + 2 > end:
                    break  # payload not complete yet
                reply = args[2] if len(args) == 4 else b""
                payload = bytes(buf[start : start + size])
                pos = start + size + 2
                cb = self._subs.get(args[1])
                if cb is not None:
                    cb(args[0], reply, payload)
                continue
            if op == b"HMSG":
                args = bytes(buf[pos + 5 : eol]).split(b" ")
                hsize, total = int(args[-2]), int(args[-1])
                start = eol + 2
                if start + total + 2 > end:
                    break
                reply = args[2] if len(args) == 5 else b""
                payload = bytes(buf[start + hsize : start + total])
                pos = start + total + 2
                cb = self._subs.get(args[1])
                if cb is not None:
                    cb(args[0], reply, payload)
                continue
            line = bytes(buf[pos:eol])
            pos = eol + 2
            if line == b"PING":
                self._queue(b"PONG\r\n")
            elif line == b"PONG":
                if self._pong is not None and not self._pong.done():
                    self._pong.set_result(None)
            elif line.startswith(b"-ERR"):
                raise ConnectionError(line.decode(errors="replace"))
            # INFO and +OK need nothing here.
        del buf[:pos]
