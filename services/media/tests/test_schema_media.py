"""The Media* bus messages with the fields this service added: round trip and old readers."""

from __future__ import annotations

import msgspec

from sipmesh_bus.schema import (
    MediaAnswer,
    MediaDelete,
    MediaOffer,
    MediaReply,
    decode_media_answer,
    decode_media_delete,
    decode_media_offer,
    decode_media_reply,
    encode,
)


class OldMediaReply(msgspec.Struct, frozen=True, kw_only=True):
    """MediaReply as a router built before ``code``/``warning`` would decode it."""

    ok: bool
    sdp: bytes | None = None
    error: str | None = None
    instance: str | None = None


def test_media_messages_round_trip_with_new_fields() -> None:
    offer = MediaOffer(
        call_id="c",
        from_tag="a",
        sdp=b"v=0",
        flags=["nat"],
        instance="rtp1",
        received_from="192.0.2.1",
    )
    answer = MediaAnswer(call_id="c", from_tag="a", to_tag="b", sdp=b"v=0", instance="rtp1")
    delete = MediaDelete(call_id="c", instance="rtp1")
    reply = MediaReply(ok=False, error="rtp1 is down", instance="rtp1", code="instance_down")
    assert decode_media_offer(encode(offer)) == offer
    assert decode_media_answer(encode(answer)) == answer
    assert decode_media_delete(encode(delete)) == delete
    assert decode_media_reply(encode(reply)) == reply


def test_old_reader_skips_the_new_reply_fields() -> None:
    reply = MediaReply(ok=True, sdp=b"v=0", instance="rtp1", warning="w", code=None)
    old = msgspec.msgpack.decode(encode(reply), type=OldMediaReply)
    assert old == OldMediaReply(ok=True, sdp=b"v=0", instance="rtp1")


def test_new_reader_defaults_what_an_old_writer_omits() -> None:
    data = msgspec.msgpack.encode({"call_id": "c", "from_tag": "a", "sdp": b"v=0"})
    offer = decode_media_offer(data)
    assert (offer.instance, offer.received_from, offer.flags) == (None, None, [])
