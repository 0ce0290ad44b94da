"""SIP over UDP: one asyncio DatagramProtocol per listening socket, as thin as aioquic's."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Final, cast

from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.ports import MessageSink

__all__ = ["MAX_DATAGRAM", "UdpListener", "open_udp", "os_error_reason"]

MAX_DATAGRAM: Final = 65535
#: Larger datagrams cannot exist over IPv4 and are dropped (never parsed).


class UdpListener(asyncio.DatagramProtocol):
    """Feeds every datagram to the sink with ``connection=None``.

    Args:
        sink: the edge's message handler (never raises).
        metrics: counts oversized datagrams.
        max_size: datagrams longer than this are dropped unparsed.
    """

    def __init__(self, sink: MessageSink, metrics: EdgeMetrics, *, max_size: int) -> None:
        self._sink = sink
        self._metrics = metrics
        self._max_size = max_size
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        self.paused = False
        #: True while shutting down: datagrams are ignored.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass
        # asyncio.DatagramTransport, though it implements it.
        self.transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local = (sockname[0], sockname[1])

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if self.paused:
            return
        if len(data) > self._max_size:
            self._metrics.dropped.labels("too_large").inc()
            return
        self._sink.on_message(
            data,
            transport="udp",
            source=(str(addr[0]), addr[1]),
            local=self.local,
            connection=None,
        )

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: nothing to do per RFC 3261 for UDP
        # beyond what the transaction timers already do.
        self._metrics.dropped.labels("icmp_error").inc()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send one datagram (errors surface through ``error_received``)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def close(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()


async def open_udp(
    host: str, port: int, sink: MessageSink, metrics: EdgeMetrics, *, max_size: int = MAX_DATAGRAM
) -> UdpListener:
    """Bind a UDP socket on ``host:port`` (port 0 picks one) and start reading.

    Raises:
        OSError: the address cannot be bound.
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpListener(sink, metrics, max_size=max_size),
        local_addr=(host.strip("[]"), port),
        family=family,
    )
    return protocol


def os_error_reason(exc: OSError) -> str:
    """The system's words for a bind error (asyncio and uvloop wrap it in text of their own)."""
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    return os.strerror(cause.errno) if cause.errno else str(exc)
