"""Media metrics: series from start-up, the ``rtpengine`` label, sessions from ng statistics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from sipmesh_media import bencode, ng
from sipmesh_media.app import MediaService
from sipmesh_media.config import MediaSettings
from sipmesh_media.metrics import COMMANDS, FAILURES, NG_COMMANDS
from sipmesh_media.pool import Instance

Reply = Callable[[str], dict[str, object] | None]
#: ng command -> reply dict, or None for silence.


class FakeRtpEngine(asyncio.DatagramProtocol):
    """A loopback ng responder whose replies the test changes while it runs."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.commands: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        cookie, body = ng.decode_message(data)
        command = body[b"command"]
        assert isinstance(command, bytes)
        self.commands.append(command.decode())
        answer = self.reply(command.decode())
        if answer is not None and self.transport is not None:
            self.transport.sendto(cookie + b" " + bencode.encode(answer), addr)  # type: ignore[arg-type]


def statistics(own: int, foreign: int = 0) -> dict[str, object]:
    """A ``statistics`` reply shaped like RTPEngine 10.5's (trimmed)."""
    current = {"sessionsown": own, "sessionsforeign": foreign, "sessionstotal": own + foreign}
    return {"result": "ok", "statistics": {"currentstatistics": current}}


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeRtpEngine, int]]:
    def reply(command: str) -> dict[str, object] | None:
        return {"result": "pong"} if command == "ping" else statistics(7, foreign=3)

    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: FakeRtpEngine(reply), local_addr=("127.0.0.1", 0)
    )
    yield proto, transport.get_extra_info("sockname")[1]
    transport.close()


def sample(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float | None:
    return registry.get_sample_value(name, labels)


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_metrics_series_exist_before_the_first_event() -> None:
    registry = CollectorRegistry()
    instances = [Instance(name=n, host="127.0.0.1", port=9) for n in ("rtp1", "rtp2")]
    MediaService(MediaSettings(), instances=instances, registry=registry)
    for command in COMMANDS:
        for outcome in ("ok", *FAILURES):
            labels = {"command": command, "outcome": outcome}
            assert sample(registry, "sipmesh_media_commands_total", labels) == 0.0, labels
    for outcome in ("bad_request", "internal"):
        labels = {"command": "unknown", "outcome": outcome}
        assert sample(registry, "sipmesh_media_commands_total", labels) == 0.0
    for name in ("rtp1", "rtp2"):
        rtpengine = {"rtpengine": name}
        assert sample(registry, "sipmesh_media_instance_up", rtpengine) == 1.0
        assert sample(registry, "sipmesh_media_sessions_active", rtpengine) == 0.0
        for command in NG_COMMANDS:
            labels = {**rtpengine, "command": command}
            assert sample(registry, "sipmesh_media_ng_round_trip_seconds_count", labels) == 0.0


def test_metrics_label_rtpengine_never_instance() -> None:
    # Prometheus owns ``instance`` (the scrape target) and would rename ours.
    registry = CollectorRegistry()
    one = Instance(name="rtp1", host="127.0.0.1", port=9)
    MediaService(MediaSettings(), instances=[one], registry=registry)
    media = [m for m in registry.collect() if m.name.startswith("sipmesh_media_")]
    assert {m.name for m in media} == {
        "sipmesh_media_commands",
        "sipmesh_media_ng_round_trip_seconds",
        "sipmesh_media_instance_up",
        "sipmesh_media_sessions_active",
    }
    assert all("instance" not in s.labels for m in media for s in m.samples)


def test_metrics_no_instances_no_per_instance_series() -> None:
    registry = CollectorRegistry()
    MediaService(MediaSettings(), instances=[], registry=registry)
    sessions = [m for m in registry.collect() if m.name == "sipmesh_media_sessions_active"]
    assert [s for m in sessions for s in m.samples] == []
    ok = {"command": "offer", "outcome": "ok"}
    assert sample(registry, "sipmesh_media_commands_total", ok) == 0.0


async def test_metrics_sessions_active_read_from_statistics(
    fake: tuple[FakeRtpEngine, int],
) -> None:
    proto, port = fake
    registry = CollectorRegistry()
    settings = MediaSettings(ping_interval=0.02, timeout=0.2)
    one = Instance(name="rtp1", host="127.0.0.1", port=port)
    media = MediaService(settings, instances=[one], registry=registry)
    await media.start()
    try:

        def active() -> float | None:
            return sample(registry, "sipmesh_media_sessions_active", {"rtpengine": "rtp1"})

        await wait_for(lambda: active() == 7.0)  # sessionsown; the foreign 3 are replicas
        # An RTPEngine without ng statistics answers an error: the gauge keeps its
        # last value and health is untouched.
        proto.reply = lambda c: (
            {"result": "pong"}
            if c == "ping"
            else {"result": "error", "error-reason": "Unrecognized command"}
        )
        asked = proto.commands.count("statistics")
        await wait_for(lambda: proto.commands.count("statistics") >= asked + 3)
        assert active() == 7.0
        assert media.pool.is_up("rtp1")
    finally:
        await media.close()


async def test_metrics_statistics_only_after_a_good_ping(
    fake: tuple[FakeRtpEngine, int],
) -> None:
    proto, port = fake
    proto.reply = lambda _c: None  # silent: pings fail, statistics is never asked
    registry = CollectorRegistry()
    settings = MediaSettings(ping_interval=0.01, timeout=0.02, down_after=2)
    one = Instance(name="rtp1", host="127.0.0.1", port=port)
    media = MediaService(settings, instances=[one], registry=registry)
    await media.start()
    try:
        await wait_for(lambda: not media.pool.is_up("rtp1"))
    finally:
        await media.close()
    assert "statistics" not in proto.commands
    assert sample(registry, "sipmesh_media_instance_up", {"rtpengine": "rtp1"}) == 0.0
