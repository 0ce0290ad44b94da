"""The ng client against a real rtpengine-daemon: SDP rewriting, RTP relay, delete."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sipmesh_media import ng
from sipmesh_media.client import NgClient
from sipmesh_media.errors import NgReplyError, NgTimeoutError
from sipmesh_media.local import LocalRtpEngine

from .conftest import endpoint, media_address, rtp, sdp, ssrc_of

pytestmark = pytest.mark.integration


async def client_for(engine: LocalRtpEngine) -> NgClient:
    return await NgClient.open(engine.ng_host, engine.ng_port, timeout=0.5, tries=2)


def in_range(engine: LocalRtpEngine, port: int) -> bool:
    return engine.port_min <= port <= engine.port_max


async def test_live_ping(engine: LocalRtpEngine) -> None:
    client = await client_for(engine)
    try:
        response = await client.request(ng.ping())
    finally:
        client.close()
    assert response.result == "pong"


async def test_live_offer_answer_sdp_points_at_rtpengine(engine: LocalRtpEngine) -> None:
    client = await client_for(engine)
    try:
        offered = await client.request(
            ng.offer(call_id="sdp-1", from_tag="a", sdp=sdp(4000, host="10.1.1.1"))
        )
        answered = await client.request(
            ng.answer(call_id="sdp-1", from_tag="a", to_tag="b", sdp=sdp(5000, host="10.2.2.2"))
        )
    finally:
        client.close()
    assert offered.sdp is not None
    assert answered.sdp is not None
    # What the callee sees: RTPEngine's address and port, nothing of the caller's.
    for body in (offered.sdp, answered.sdp):
        host, port = media_address(body)
        assert host == "127.0.0.1"
        assert in_range(engine, port)
        assert b"10.1.1.1" not in body
        assert b"10.2.2.2" not in body  # replace-origin rewrote o= as well
    assert media_address(offered.sdp)[1] != media_address(answered.sdp)[1]


async def test_live_rtp_flows_both_ways_and_delete_frees_the_session(
    engine: LocalRtpEngine,
) -> None:
    alice, bob = endpoint(), endpoint()
    client = await client_for(engine)
    try:
        offered = await client.request(
            ng.offer(call_id="rtp-1", from_tag="a", sdp=sdp(alice.getsockname()[1]))
        )
        answered = await client.request(
            ng.answer(call_id="rtp-1", from_tag="a", to_tag="b", sdp=sdp(bob.getsockname()[1]))
        )
        assert offered.sdp is not None
        assert answered.sdp is not None
        to_bob_via = media_address(answered.sdp)  # alice was told: send here
        to_alice_via = media_address(offered.sdp)  # bob was told: send here
        got_bob = await asyncio.to_thread(relay, alice, to_bob_via, bob, 0xA11CE)
        got_alice = await asyncio.to_thread(relay, bob, to_alice_via, alice, 0xB0B)
        assert got_bob == [(0xA11CE, to_alice_via)] * 10  # from RTPEngine, not alice
        assert got_alice == [(0xB0B, to_bob_via)] * 10

        totals = ng.query_totals(await client.request(ng.query(call_id="rtp-1")))
        assert totals.packets == 20
        assert totals.bytes == 20 * 172
        assert totals.errors == 0
        assert "rtp-1" in (await client.request(ng.list_calls())).calls

        deleted = await client.request(ng.delete(call_id="rtp-1", from_tag="a"))
        assert deleted.ok
        assert "rtp-1" not in (await client.request(ng.list_calls())).calls
        with pytest.raises(NgReplyError) as exc_info:
            await client.request(ng.query(call_id="rtp-1"))
        assert "Unknown call-id" in exc_info.value.reason
    finally:
        client.close()
        alice.close()
        bob.close()


def relay(
    sender: socket.socket, via: tuple[str, int], receiver: socket.socket, ssrc: int
) -> list[tuple[int, tuple[str, int]]]:
    """Send 10 RTP packets to ``via``; return (SSRC, source) of what ``receiver`` gets."""
    for seq in range(10):
        sender.sendto(rtp(seq, ssrc), via)
    got = []
    for _ in range(10):
        packet, source = receiver.recvfrom(2048)
        got.append((ssrc_of(packet), source))
    return got


async def test_live_delete_of_unknown_call_is_ok_with_a_warning(engine: LocalRtpEngine) -> None:
    client = await client_for(engine)
    try:
        response = await client.request(ng.delete(call_id="never-was"))
    finally:
        client.close()
    assert response.ok
    assert response.warning is not None


async def test_live_answer_without_offer_is_an_error_reply(engine: LocalRtpEngine) -> None:
    client = await client_for(engine)
    try:
        with pytest.raises(NgReplyError) as exc_info:
            await client.request(ng.answer(call_id="nope", from_tag="a", to_tag="b", sdp=sdp(6000)))
    finally:
        client.close()
    assert exc_info.value.command == "answer"


async def test_live_webrtc_offer_gets_dtls_and_ice(engine: LocalRtpEngine) -> None:
    options = ng.apply_flags(ng.MediaOptions(), ["webrtc"])
    client = await client_for(engine)
    try:
        offered = await client.request(
            ng.offer(call_id="webrtc-1", from_tag="a", sdp=sdp(4002), options=options)
        )
        await client.request(ng.delete(call_id="webrtc-1"))
    finally:
        client.close()
    assert offered.sdp is not None
    assert b"m=audio " in offered.sdp
    assert b"UDP/TLS/RTP/SAVPF" in offered.sdp
    assert b"a=fingerprint:" in offered.sdp
    assert b"a=candidate:" in offered.sdp
    assert b"a=rtcp-mux" in offered.sdp


async def test_live_killed_instance_times_out(engine: LocalRtpEngine) -> None:
    client = await NgClient.open(engine.ng_host, engine.ng_port, timeout=0.1, tries=2)
    engine.kill()
    await asyncio.sleep(0.1)
    try:
        with pytest.raises(NgTimeoutError):
            await client.request(ng.ping())
    finally:
        client.close()
