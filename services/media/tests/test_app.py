"""The media service over a real nats-server, with real rtpengine-daemon instances."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from nats.aio.client import Client as NatsClient
from prometheus_client import CollectorRegistry

from sipmesh_bus.config import NatsConfig
from sipmesh_bus.runtime import Service
from sipmesh_bus.schema import (
    MediaAnswer,
    MediaDelete,
    MediaOffer,
    MediaReply,
    decode_media_reply,
    encode,
)
from sipmesh_bus.subjects import SIP_MEDIA_ANSWER, SIP_MEDIA_DELETE, SIP_MEDIA_OFFER
from sipmesh_media.app import MediaService, serve
from sipmesh_media.config import MediaConfig, MediaSettings
from sipmesh_media.pool import Instance

from .conftest import EngineFactory, media_address, sdp

pytestmark = pytest.mark.integration


@dataclass
class Running:
    media: MediaService
    nc: NatsClient
    registry: CollectorRegistry

    async def ask(
        self, subject: str, request: MediaOffer | MediaAnswer | MediaDelete
    ) -> MediaReply:
        msg = await self.nc.request(subject, encode(request), timeout=5.0)
        return decode_media_reply(msg.data)

    async def offer(self, call_id: str, **kw: object) -> MediaReply:
        return await self.ask(
            SIP_MEDIA_OFFER,
            MediaOffer(call_id=call_id, from_tag="a", sdp=sdp(4000), **kw),  # type: ignore[arg-type]
        )

    async def answer(self, call_id: str, instance: str | None) -> MediaReply:
        return await self.ask(
            SIP_MEDIA_ANSWER,
            MediaAnswer(
                call_id=call_id, from_tag="a", to_tag="b", sdp=sdp(5000), instance=instance
            ),
        )

    def sample(self, name: str, labels: dict[str, str]) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def start_media(nats_url: str) -> AsyncIterator[object]:
    """Start a media service on ``instances``; tear everything down after the test."""
    stack: list[tuple[Service, MediaService, NatsClient]] = []

    async def start(instances: Sequence[Instance], **settings: object) -> Running:
        base: dict[str, object] = {
            "timeout": 0.2,
            "tries": 2,
            "ping_interval": 0.1,
            "down_after": 2,
            "up_after": 2,
        }
        media_settings = MediaSettings(**{**base, **settings})  # type: ignore[arg-type]
        registry = CollectorRegistry()
        svc = Service(
            "media",
            MediaConfig(nats=NatsConfig(url=nats_url), media=media_settings),
            registry=registry,
            install_signal_handlers=False,
        )
        await svc.start()
        media = MediaService(media_settings, instances=instances, registry=registry)
        await media.start()
        await serve(svc, media)
        nc = NatsClient()
        await nc.connect(nats_url)
        await svc.nc.flush()
        await svc.nc.flush()
        stack.append((svc, media, nc))
        return Running(media=media, nc=nc, registry=registry)

    yield start
    for svc, media, nc in stack:
        await nc.close()
        await media.close()
        await svc.close()


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_app_offer_answer_delete_through_nats(
    engines: EngineFactory, start_media: object
) -> None:
    engine = await engines("rtp1")
    svc = await start_media([engine.instance])  # type: ignore[operator]
    offered = await svc.offer("nats-1")
    assert offered.ok, offered
    assert offered.instance == "rtp1"
    assert offered.sdp is not None
    host, port = media_address(offered.sdp)
    assert (host, engine.port_min <= port <= engine.port_max) == ("127.0.0.1", True)
    answered = await svc.answer("nats-1", offered.instance)
    assert answered.ok
    assert answered.sdp is not None
    assert media_address(answered.sdp)[0] == "127.0.0.1"
    deleted = await svc.ask(SIP_MEDIA_DELETE, MediaDelete(call_id="nats-1", instance="rtp1"))
    assert deleted == MediaReply(ok=True, instance="rtp1")
    for command in ("offer", "answer", "delete"):
        ok = {"command": command, "outcome": "ok"}
        assert svc.sample("sipmesh_media_commands_total", ok) == 1
    assert svc.sample("sipmesh_media_instance_up", {"rtpengine": "rtp1"}) == 1
    assert (
        svc.sample(
            "sipmesh_media_ng_round_trip_seconds_count", {"rtpengine": "rtp1", "command": "offer"}
        )
        == 1
    )
    assert await svc.media.ready()


async def test_app_two_instances_survive_losing_one(
    engines: EngineFactory, start_media: object
) -> None:
    one, two = await engines("rtp1"), await engines("rtp2")
    svc = await start_media([one.instance, two.instance])  # type: ignore[operator]
    placed = {f"call-{i}": await svc.offer(f"call-{i}") for i in range(40)}
    assert all(r.ok for r in placed.values())
    assert {r.instance for r in placed.values()} == {"rtp1", "rtp2"}  # both take calls
    on_one = [c for c, r in placed.items() if r.instance == "rtp1"]
    on_two = [c for c, r in placed.items() if r.instance == "rtp2"]

    one.kill()
    await wait_for(lambda: not svc.media.pool.is_up("rtp1"))
    assert svc.sample("sipmesh_media_instance_up", {"rtpengine": "rtp1"}) == 0
    assert await svc.media.ready()  # rtp2 still serves

    # New calls go to the live instance, including those rtp1 owns on the ring.
    fresh = [await svc.offer(f"new-{i}") for i in range(20)]
    assert all(r.ok and r.instance == "rtp2" for r in fresh), fresh
    # Calls on rtp2 go on; those on rtp1 are reported, not moved.
    for call in on_two[:3]:
        assert (await svc.answer(call, "rtp2")).ok
    lost = await svc.answer(on_one[0], "rtp1")
    assert (lost.ok, lost.code, lost.instance) == (False, "instance_down", "rtp1")
    # Without the instance passed back, this replica still remembers where it went.
    assert (await svc.answer(on_one[1], None)).code == "instance_down"
    assert (
        svc.sample(
            "sipmesh_media_commands_total", {"command": "answer", "outcome": "instance_down"}
        )
        == 2
    )


async def test_app_new_call_fails_over_before_the_pings_notice(
    engines: EngineFactory, start_media: object
) -> None:
    one, two = await engines("rtp1"), await engines("rtp2")
    svc = await start_media([one.instance, two.instance], ping_interval=60.0)  # type: ignore[operator]
    await asyncio.sleep(0.1)  # the first ping round is done; the next is a minute away
    owned_by_one = next(
        f"fo-{i}" for i in range(1000) if svc.media.pool.ring.owner(f"fo-{i}".encode()) == "rtp1"
    )
    one.kill()
    reply = await svc.offer(owned_by_one)
    assert (reply.ok, reply.instance) == (True, "rtp2")
    timeouts = {"command": "offer", "outcome": "timeout"}
    assert svc.sample("sipmesh_media_commands_total", timeouts) == 1


async def test_app_all_instances_dead(engines: EngineFactory, start_media: object) -> None:
    engine = await engines("rtp1")
    svc = await start_media([engine.instance])  # type: ignore[operator]
    engine.kill()
    await wait_for(lambda: not svc.media.pool.is_up("rtp1"))
    assert not await svc.media.ready()
    reply = await svc.offer("x-1")
    assert (reply.ok, reply.code) == (False, "no_instance")


async def test_app_without_instances_answers_no_anchoring(start_media: object) -> None:
    unanchored = await start_media([])  # type: ignore[operator]
    reply = await unanchored.offer("x-2")
    assert (reply.ok, reply.code, reply.error) == (False, "no_instance", "no anchoring")
    assert await unanchored.media.ready()


async def test_app_bad_requests_get_error_replies(
    engines: EngineFactory, start_media: object
) -> None:
    engine = await engines("rtp1")
    svc = await start_media([engine.instance])  # type: ignore[operator]
    reply = await svc.offer("bad-1", flags=["ICE=sometimes"])
    assert (reply.ok, reply.code) == (False, "bad_request")
    assert reply.error is not None
    assert "ICE=sometimes" in reply.error
    msg = await svc.nc.request(SIP_MEDIA_OFFER, b"\xc1 not msgpack", timeout=5.0)
    assert decode_media_reply(msg.data).code == "bad_request"
    answer = await svc.answer("never-offered", None)
    assert (answer.ok, answer.code, answer.instance) == (False, "rtpengine_error", "rtp1")


async def test_app_flags_reach_rtpengine(engines: EngineFactory, start_media: object) -> None:
    engine = await engines("rtp1")
    svc = await start_media([engine.instance], default_flags=["no-replace"])  # type: ignore[operator]
    kept = await svc.offer("flags-1")
    assert kept.sdp is not None
    assert b"o=- 1 1 IN IP4 127.0.0.1" in kept.sdp  # origin untouched (it was 127.0.0.1)
    nated = await svc.ask(
        SIP_MEDIA_OFFER,
        MediaOffer(
            call_id="flags-2",
            from_tag="a",
            sdp=sdp(4000, host="10.9.9.9"),
            flags=["nat", "replace-origin", "replace-session-connection"],
            received_from="127.0.0.1",
        ),
    )
    assert nated.ok
    assert nated.sdp is not None
    assert b"10.9.9.9" not in nated.sdp


async def test_app_sessions_active_follows_rtpengine(
    engines: EngineFactory, start_media: object
) -> None:
    one, two = await engines("rtp1"), await engines("rtp2")
    svc = await start_media([one.instance, two.instance], delete_delay=0)  # type: ignore[operator]
    placed = {f"s-{i}": (await svc.offer(f"s-{i}")).instance for i in range(10)}
    on_one = [c for c, name in placed.items() if name == "rtp1"]
    assert 0 < len(on_one) < 10

    def active(name: str) -> float:
        return float(svc.sample("sipmesh_media_sessions_active", {"rtpengine": name}))

    await wait_for(lambda: (active("rtp1"), active("rtp2")) == (len(on_one), 10 - len(on_one)))
    deleted = await svc.ask(SIP_MEDIA_DELETE, MediaDelete(call_id=on_one[0], instance="rtp1"))
    assert deleted.ok
    await wait_for(lambda: active("rtp1") == len(on_one) - 1)
    assert active("rtp2") == 10 - len(on_one)
    statistics = {"rtpengine": "rtp1", "command": "statistics"}
    assert svc.sample("sipmesh_media_ng_round_trip_seconds_count", statistics) > 0
