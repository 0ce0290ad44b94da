"""sipmesh_edge.udp: large socket buffers, datagrams to the sink as (host, port)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.ports import Connection
from sipmesh_edge.udp import UDP_BUFFER_SIZE, open_udp, set_buffer_sizes
from sipmsg import ParseError

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="Linux buffer accounting")


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, str, tuple[str, int], tuple[str, int]]] = []
        self.arrived = asyncio.Event()

    def on_message(
        self,
        data: bytes,
        *,
        transport: str,
        source: tuple[str, int],
        local: tuple[str, int],
        connection: Connection | None,
    ) -> None:
        assert connection is None
        self.got.append((data, transport, source, local))
        self.arrived.set()

    def on_parse_error(
        self, error: ParseError, *, connection: Connection, data: bytes = b""
    ) -> None:
        raise AssertionError("no framing over UDP")


def _granted(size: int, option: str) -> int:
    # Linux doubles what it is given; without CAP_NET_ADMIN it caps at net.core.*mem_max.
    if os.geteuid() == 0:
        return 2 * size
    cap = int(Path(f"/proc/sys/net/core/{option}_max").read_text())
    return 2 * min(size, cap)


@linux_only
def test_set_buffer_sizes_asks_the_kernel_for_both() -> None:
    size = 3 * 1024 * 1024
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        default = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        received, sent = set_buffer_sizes(sock, size)
    assert received == _granted(size, "rmem")
    assert sent == _granted(size, "wmem")
    assert received != default


@pytest.mark.parametrize(
    ("host", "family"), [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)]
)
async def test_open_udp_big_buffers_and_two_tuple_sources(
    host: str, family: socket.AddressFamily, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink()
    with caplog.at_level(logging.INFO, logger="sipmesh_edge.udp"):
        listener = await open_udp(host, 0, sink, EdgeMetrics(CollectorRegistry()))
    try:
        assert listener.local[0] == host
        assert listener.local[1] > 0
        assert f"receive buffer {_granted(UDP_BUFFER_SIZE, 'rmem')} bytes" in caplog.text
        with socket.socket(family, socket.SOCK_DGRAM) as peer:
            peer.bind((host, 0))
            peer.sendto(b"OPTIONS", listener.local)
            await asyncio.wait_for(sink.arrived.wait(), 5)
            port = peer.getsockname()[1]
        # IPv6 peers come as 4-tuples from the socket; the sink gets (host, port).
        assert sink.got == [(b"OPTIONS", "udp", (host, port), listener.local)]
    finally:
        listener.close()


async def test_open_udp_buffer_size_zero_keeps_the_defaults() -> None:
    listener = await open_udp(
        "127.0.0.1", 0, Sink(), EdgeMetrics(CollectorRegistry()), buffer_size=0
    )
    try:
        assert listener.transport is not None
        sock = listener.transport.get_extra_info("socket")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fresh:
            default = fresh.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == default
    finally:
        listener.close()


async def test_open_udp_port_taken_raises() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(OSError, match=r"[Aa]ddress") as exc_info:
            await open_udp(
                "127.0.0.1", taken.getsockname()[1], Sink(), EdgeMetrics(CollectorRegistry())
            )
    assert exc_info.value.errno is not None
