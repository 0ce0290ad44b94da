"""SIP over UDP: one asyncio DatagramProtocol per listening socket, as thin as aioquic's.

The socket gets large kernel buffers (:data:`UDP_BUFFER_SIZE`): SIP over UDP
comes in bursts (a thousand phones re-registering after an outage, SIPp's
rate steps), and a datagram that finds the receive buffer full is dropped by
the kernel before the edge sees it, to come back only with the client's
retransmission 500 ms later (RFC 3261 §17.1.2.2 Timer E).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from typing import Final, cast

from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.ports import MessageSink

__all__ = [
    "MAX_DATAGRAM",
    "UDP_BUFFER_SIZE",
    "UdpListener",
    "open_udp",
    "os_error_reason",
    "set_buffer_sizes",
]

log = logging.getLogger(__name__)

MAX_DATAGRAM: Final = 65535
#: Larger datagrams cannot exist over IPv4 and are dropped (never parsed).
UDP_BUFFER_SIZE: Final = 8 * 1024 * 1024
#: SO_RCVBUF and SO_SNDBUF asked for each UDP socket: 8 MiB hold about 8,000
#: REGISTERs of 1 kB (Linux counts the skb overhead too), a second of a
#: heavy burst. Without privileges Linux caps it at ``net.core.rmem_max`` /
#: ``wmem_max`` (often 208 kB); as root (CAP_NET_ADMIN) the FORCE options
#: go past the cap.
_SO_SNDBUFFORCE: Final = 32
_SO_RCVBUFFORCE: Final = 33
#: Linux's values (asm-generic/socket.h); the socket module does not export them.


class UdpListener(asyncio.DatagramProtocol):
    """Feeds every datagram to the sink with ``connection=None``.

    Args:
        sink: the edge's message handler (never raises).
        metrics: counts oversized datagrams.
        max_size: datagrams longer than this are dropped unparsed.
    """

    def __init__(self, sink: MessageSink, metrics: EdgeMetrics, *, max_size: int) -> None:
        self._sink = sink
        self._on_message = sink.on_message
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
        # An IPv4 peer is already (host, port); IPv6 adds flow info and scope.
        self._on_message(
            data,
            transport="udp",
            source=addr if len(addr) == 2 else addr[:2],  # type: ignore[arg-type]
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
    host: str,
    port: int,
    sink: MessageSink,
    metrics: EdgeMetrics,
    *,
    max_size: int = MAX_DATAGRAM,
    buffer_size: int = UDP_BUFFER_SIZE,
    reuse_port: bool = False,
) -> UdpListener:
    """Bind a UDP socket on ``host:port`` (port 0 picks one) and start reading.

    Args:
        host: the address to bind (IPv6 with or without brackets).
        port: the port, 0 for any free one.
        sink: where datagrams go.
        metrics: counts drops.
        max_size: longer datagrams are dropped unparsed.
        buffer_size: SO_RCVBUF and SO_SNDBUF to ask for (see :data:`UDP_BUFFER_SIZE`);
            0 leaves the system's defaults.
        reuse_port: bind with SO_REUSEPORT, sharing the port with the other edge
            processes of this host that do the same (the kernel picks one socket
            per peer address by a hash of the address pair).

    Raises:
        OSError: the address cannot be bound.
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    infos = await loop.getaddrinfo(host.strip("[]"), port, family=family, type=socket.SOCK_DGRAM)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        buffers = set_buffer_sizes(sock, buffer_size) if buffer_size else None
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(infos[0][4])
        if buffers is not None:
            _log_buffers(sock, buffers, buffer_size)
        _, protocol = await loop.create_datagram_endpoint(
            lambda: UdpListener(sink, metrics, max_size=max_size), sock=sock
        )
    except BaseException:
        sock.close()
        raise
    return protocol


def _log_buffers(sock: socket.socket, buffers: tuple[int, int], asked: int) -> None:
    host, port = sock.getsockname()[:2]
    received, sent = buffers
    log.info(
        "UDP %s:%s: receive buffer %d bytes, send buffer %d bytes (asked %d)",
        host, port, received, sent, asked,
    )  # fmt: skip
    # Linux reports twice the size set (its bookkeeping overhead).
    if received < (2 if sys.platform == "linux" else 1) * asked:
        log.warning(
            "UDP %s:%s: the kernel granted a receive buffer of %d bytes only; bursts may be "
            "dropped (raise net.core.rmem_max, or run with CAP_NET_ADMIN)",
            host, port, received,
        )  # fmt: skip


def set_buffer_sizes(sock: socket.socket, size: int) -> tuple[int, int]:
    """Ask for ``size`` bytes of receive and send buffer; FORCE first (root), then the plain option.

    Returns:
        The receive and send buffer sizes the kernel reports (Linux reports
        twice what was set: the bookkeeping overhead it reserves).
    """
    for force, plain in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF), (_SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            if sys.platform != "linux":
                raise OSError("no SO_*BUFFORCE here")
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
            except OSError as exc:
                log.warning("cannot set UDP buffer size %d: %s", size, exc)
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
    )


def os_error_reason(exc: OSError) -> str:
    """The system's words for a bind error (asyncio and uvloop wrap it in text of their own)."""
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    return os.strerror(cause.errno) if cause.errno else str(exc)
