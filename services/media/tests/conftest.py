"""Real RTPEngine instances for the media tests, each on free ports of its own."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sipmesh_media.local import LocalRtpEngine, find_binary

EngineFactory = Callable[[str], Awaitable[LocalRtpEngine]]


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[EngineFactory]:
    """Start named rtpengine-daemon instances; all are stopped after the test."""
    binary = find_binary()
    if binary is None:
        pytest.fail("rtpengine-daemon is not installed (apt-get install rtpengine-daemon)")
    started: list[LocalRtpEngine] = []

    async def start(name: str) -> LocalRtpEngine:
        engine = LocalRtpEngine(binary=binary, name=name, data_dir=tmp_path, log_level=6)
        started.append(engine)
        await engine.start()
        return engine

    yield start
    for engine in started:
        await engine.stop()


@pytest.fixture
async def engine(engines: EngineFactory) -> LocalRtpEngine:
    """One running instance."""
    return await engines("rtp1")


def sdp(port: int, *, host: str = "127.0.0.1", session: int = 1) -> bytes:
    """A minimal PCMU offer/answer from an endpoint on ``host:port``."""
    return (
        f"v=0\r\no=- {session} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    ).encode()


def media_address(body: bytes) -> tuple[str, int]:
    """The ``c=`` host and the ``m=audio`` port of an SDP body."""
    host = port = None
    for line in body.decode().splitlines():
        if line.startswith("c=IN IP4 "):
            host = line.split()[-1]
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
    assert host is not None
    assert port is not None
    return host, port


def endpoint() -> socket.socket:
    """A UDP socket on a free loopback port, acting as a phone's RTP endpoint."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    return sock


def rtp(seq: int, ssrc: int) -> bytes:
    """One 20 ms PCMU RTP packet (RFC 3550 §5.1 fixed header, version 2)."""
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\xff" * 160


def ssrc_of(packet: bytes) -> int:
    """The SSRC of an RTP packet."""
    value: int = struct.unpack("!I", packet[8:12])[0]
    return value
