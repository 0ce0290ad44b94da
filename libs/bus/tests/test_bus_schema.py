"""Round trips and the tagged Reply union of sipmesh_bus.schema."""

from __future__ import annotations

import msgspec
import pytest

from sipmesh_bus import schema
from sipmesh_bus.schema import (
    CallEvent,
    Drop,
    EdgeSend,
    Envelope,
    Forward,
    MediaAnswer,
    MediaDelete,
    MediaOffer,
    MediaReply,
    SendResponse,
    Target,
)

INVITE = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n\r\n"


def _envelope(**kw: object) -> Envelope:
    fields: dict[str, object] = {
        "edge_id": "edge-1",
        "transport": "udp",
        "source_host": "192.0.2.10",
        "source_port": 5060,
        "local_host": "127.0.0.1",
        "local_port": 5060,
        "received_at": 1700000000.25,
        "data": INVITE,
    }
    fields.update(kw)
    return msgspec.convert(fields, Envelope)


def test_envelope_round_trip_keeps_bytes() -> None:
    env = _envelope(connection_id="c1", context=b"\x00\xffctx")
    back = schema.decode_envelope(schema.encode(env))
    assert back == env
    assert isinstance(back.data, bytes)
    assert back.context == b"\x00\xffctx"


def test_envelope_optional_fields_default_to_none() -> None:
    env = _envelope()
    assert env.connection_id is None
    assert env.context is None


@pytest.mark.parametrize("port", [-1, 65536])
def test_envelope_port_out_of_range_is_rejected(port: int) -> None:
    raw = msgspec.msgpack.encode(
        {
            "edge_id": "e",
            "transport": "udp",
            "source_host": "h",
            "source_port": port,
            "local_host": "h",
            "local_port": 5060,
            "received_at": 0.0,
            "data": b"",
        }
    )
    with pytest.raises(msgspec.ValidationError) as exc_info:
        schema.decode_envelope(raw)
    assert "source_port" in str(exc_info.value)


def test_envelope_unknown_transport_is_rejected() -> None:
    raw = schema.encode(_envelope()).replace(b"\xa3udp", b"\xa3xxx")
    with pytest.raises(msgspec.ValidationError):
        schema.decode_envelope(raw)


def test_envelope_unknown_fields_are_ignored_for_rolling_updates() -> None:
    # A newer writer adds a field; an older reader must still decode.
    newer = msgspec.msgpack.decode(schema.encode(_envelope()))
    newer["added_later"] = [1, 2]
    assert schema.decode_envelope(msgspec.msgpack.encode(newer)) == _envelope()


def _describe(reply: schema.ReplyType) -> str:
    match reply:
        case SendResponse(data=data):
            return f"send {len(data)}"
        case Forward(targets=targets, timer_c=timer_c):
            return f"forward {len(targets)} {timer_c}"
        case Drop(reason=reason):
            return f"drop {reason}"


@pytest.mark.parametrize(
    ("reply", "kind", "described"),
    [
        (SendResponse(data=b"SIP/2.0 200 OK\r\n\r\n"), "sendresponse", "send 18"),
        (
            Forward(
                data=INVITE,
                targets=[
                    Target(uri="sip:bob@10.0.0.2", host="10.0.0.2", port=5060),
                    Target(uri="sip:bob@10.0.0.3", host="10.0.0.3", port=5061, group=1),
                ],
                context=b"k",
            ),
            "forward",
            "forward 2 181.0",
        ),
        (Drop(reason="banned"), "drop", "drop banned"),
    ],
    ids=["send", "forward", "drop"],
)
def test_reply_union_decodes_by_kind_tag(
    reply: schema.ReplyType, kind: str, described: str
) -> None:
    wire = schema.encode(reply)
    assert msgspec.msgpack.decode(wire)["kind"] == kind
    back = schema.decode_reply(wire)
    assert back == reply
    assert type(back) is type(reply)
    assert _describe(back) == described


def test_reply_unknown_kind_is_a_validation_error() -> None:
    wire = msgspec.msgpack.encode({"kind": "teleport", "reason": "x"})
    with pytest.raises(msgspec.ValidationError) as exc_info:
        schema.decode_reply(wire)
    assert "teleport" in str(exc_info.value)


def test_timer_c_default_exceeds_three_minutes() -> None:
    # RFC 3261 §16.6 step 11: "The timer MUST be larger than 3 minutes."
    assert Forward(data=b"", targets=[]).timer_c > 180


def test_send_response_target_override_round_trips() -> None:
    target = Target(
        uri="sip:a@b",
        host="198.51.100.7",
        port=5080,
        transport="tcp",
        connection_id="conn-9",
        edge_id="edge-2",
    )
    reply = SendResponse(data=b"SIP/2.0 180 Ringing\r\n\r\n", target=target)
    back = schema.decode_reply(schema.encode(reply))
    assert isinstance(back, SendResponse)
    assert back.target == target


def test_edge_send_round_trip() -> None:
    msg = EdgeSend(
        data=b"SIP/2.0 200 OK\r\n\r\n",
        transport="tls",
        host="203.0.113.5",
        port=5061,
        connection_id="c7",
    )
    assert schema.decode_edge_send(schema.encode(msg)) == msg


@pytest.mark.parametrize(
    ("msg", "decode"),
    [
        (
            MediaOffer(call_id="c", from_tag="f", sdp=b"v=0\r\n", flags=["ICE=remove"]),
            schema.decode_media_offer,
        ),
        (
            MediaAnswer(call_id="c", from_tag="f", to_tag="t", sdp=b"v=0\r\n"),
            schema.decode_media_answer,
        ),
        (MediaDelete(call_id="c"), schema.decode_media_delete),
        (MediaReply(ok=True, sdp=b"v=0\r\n", instance="rtp-1"), schema.decode_media_reply),
    ],
    ids=["offer", "answer", "delete", "reply"],
)
def test_media_messages_round_trip(msg: msgspec.Struct, decode: object) -> None:
    assert callable(decode)
    assert decode(schema.encode(msg)) == msg


def test_call_event_round_trip_and_status_range() -> None:
    event = CallEvent(
        kind="failed",
        event_id="e1",
        call_id="abc@host",
        at=10.5,
        caller="alice@example.com",
        callee="+15551234",
        status_code=486,
        hangup_side="callee",
        carrier="gw1",
        rate_per_minute=0.01,
    )
    assert schema.decode_call_event(schema.encode(event)) == event
    bad = msgspec.msgpack.decode(schema.encode(event))
    bad["status_code"] = 700
    with pytest.raises(msgspec.ValidationError):
        schema.decode_call_event(msgspec.msgpack.encode(bad))


def test_structs_are_frozen() -> None:
    drop = Drop(reason="x")
    with pytest.raises(AttributeError):
        drop.reason = "y"  # type: ignore[misc]


def test_exported_members() -> None:
    assert set(schema.__all__) == {
        "AckRoute",
        "CallEvent",
        "CallEventKind",
        "Drop",
        "EdgeSend",
        "EdgeSendResult",
        "Envelope",
        "Forward",
        "HangupSide",
        "MediaAnswer",
        "MediaDelete",
        "MediaOffer",
        "MediaReply",
        "Port",
        "Reply",
        "ReplyType",
        "SendResponse",
        "Target",
        "Transport",
        "decode_call_event",
        "decode_edge_send",
        "decode_edge_send_result",
        "decode_envelope",
        "decode_media_answer",
        "decode_media_delete",
        "decode_media_offer",
        "decode_media_reply",
        "decode_reply",
        "encode",
    }
    for name in schema.__all__:
        assert hasattr(schema, name), name
