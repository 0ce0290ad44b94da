"""A thin asyncio UDP transport for the ng protocol: one socket per RTPEngine instance.

All the protocol work is :class:`~sipmesh_media.ng.NgCodec`'s; this sends its
datagrams, resends the same one (same cookie, so RTPEngine answers a duplicate
from its cache rather than running it twice) when no reply comes within
``timeout``, and turns the outcome into a reply or one of two clear errors::

    client = await NgClient.open("127.0.0.1", 22222)
    try:
        reply = await client.request(ng.offer(call_id=..., from_tag=..., sdp=sdp))
    except NgTimeoutError: ...      # the instance is unreachable
    except NgReplyError as exc: ... # it answered result=error: exc.reason
    finally:
        client.close()
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping

from .bencode import EncodableValue
from .errors import NgProtocolError, NgReplyError, NgTimeoutError
from .ng import NgCodec, NgResponse

__all__ = ["NgClient"]

log = logging.getLogger(__name__)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.on_datagram: Callable[[bytes], None] = lambda _data: None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on a connected socket: the instance is gone. The
        # pending requests time out on their own; retrying may reach a restart.
        log.debug("ng socket error: %s", exc)


class NgClient:
    """The ng client of one RTPEngine instance."""

    def __init__(
        self,
        transport: asyncio.DatagramTransport,
        protocol: _Protocol,
        *,
        address: str,
        timeout: float,
        tries: int,
        on_round_trip: Callable[[str, float], None] | None,
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._codec = NgCodec(prefix=os.urandom(6).hex().encode() + b"-")
        self._waiting: dict[bytes, asyncio.Future[NgResponse]] = {}
        self.address = address
        #: ``host:port`` of the instance's ng socket.
        self.timeout = timeout
        self.tries = tries
        self._on_round_trip = on_round_trip

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        timeout: float = 1.0,
        tries: int = 3,
        on_round_trip: Callable[[str, float], None] | None = None,
    ) -> NgClient:
        """Open a UDP socket connected to ``host:port``.

        Args:
            host: the instance's ng address.
            port: its ng port.
            timeout: seconds to wait for each try.
            tries: how many times a request is sent before giving up.
            on_round_trip: called with the command and the seconds from the
                first send to the reply (metrics).

        Returns:
            The client; :meth:`close` it when done.
        """
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _Protocol, remote_addr=(host, port)
        )
        client = cls(
            transport,
            protocol,
            address=f"{host}:{port}",
            timeout=timeout,
            tries=max(1, tries),
            on_round_trip=on_round_trip,
        )
        protocol.on_datagram = client._received
        return client

    def close(self) -> None:
        """Close the socket; pending requests fail with :class:`NgTimeoutError`."""
        self._transport.close()
        for cookie, future in list(self._waiting.items()):
            if not future.done():
                future.set_exception(NgTimeoutError(self.address, tries=0, timeout=self.timeout))
            self._codec.forget(cookie)
        self._waiting.clear()

    async def request(
        self, body: Mapping[str, EncodableValue], *, tries: int | None = None
    ) -> NgResponse:
        """Send one command and wait for its reply, retrying on silence.

        Args:
            body: a request dict from :mod:`sipmesh_media.ng`.
            tries: override the client's ``tries`` for this request (pings).

        Returns:
            The reply, when its result is not ``error``.

        Raises:
            NgTimeoutError: no reply after ``tries`` x ``timeout`` seconds.
            NgReplyError: the reply's result is ``error``.
        """
        cookie, datagram = self._codec.request(body)
        future: asyncio.Future[NgResponse] = asyncio.get_running_loop().create_future()
        self._waiting[cookie] = future
        started = time.perf_counter()
        tries = max(1, tries or self.tries)
        try:
            for _ in range(tries):
                self._transport.sendto(datagram)
                done, _pending = await asyncio.wait({future}, timeout=self.timeout)
                if done:
                    break
            else:
                raise NgTimeoutError(self.address, tries=tries, timeout=self.timeout)
        finally:
            self._waiting.pop(cookie, None)
            self._codec.forget(cookie)
        response = future.result()
        if self._on_round_trip is not None:
            self._on_round_trip(response.command, time.perf_counter() - started)
        if response.result == "error":
            raise NgReplyError(
                response.error_reason or "(no reason given)", command=response.command
            )
        return response

    def _received(self, data: bytes) -> None:
        try:
            matched = self._codec.receive(data)
        except NgProtocolError as exc:
            log.warning("ng: malformed reply from %s ignored: %s", self.address, exc)
            return
        if matched is None:
            return  # a late duplicate of a reply already taken
        cookie, response = matched
        future = self._waiting.get(cookie)
        if future is not None and not future.done():
            future.set_result(response)
