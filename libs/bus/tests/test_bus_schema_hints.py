"""Envelope.ringing_at and SendResponse.ack_route: additive, old and new peers decode each other."""

from __future__ import annotations

import msgspec

from sipmesh_bus import schema


class OldEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """Envelope as peers before ``ringing_at`` know it."""

    edge_id: str
    transport: str
    source_host: str
    source_port: int
    local_host: str
    local_port: int
    connection_id: str | None = None
    received_at: float
    data: bytes
    context: bytes | None = None
    listeners: dict[str, str] = {}


class OldSendResponse(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="sendresponse"
):
    data: bytes
    target: schema.Target | None = None


HINT = schema.AckRoute(
    call_id=b"c@h",
    cseq=1,
    from_tag=b"f",
    to_tag=b"t",
    uri=b"sip:b@192.0.2.9",
    routes=[b"<sip:192.0.2.1;lr;sm=x>"],
    inbound="udp",
    via=b"SIP/2.0/UDP 192.0.2.1:5060;branch=",
    target=schema.Target(uri="sip:b@192.0.2.9", host="192.0.2.9", port=5060),
)


def _envelope(**kw: object) -> schema.Envelope:
    return schema.Envelope(
        edge_id="e",
        transport="udp",
        source_host="192.0.2.2",
        source_port=5060,
        local_host="192.0.2.1",
        local_port=5060,
        received_at=10.0,
        data=b"SIP/2.0 200 OK\r\n\r\n",
        **kw,  # type: ignore[arg-type]
    )


def test_ringing_at_round_trips_and_old_readers_skip_it() -> None:
    env = _envelope(ringing_at=7.5)
    assert schema.decode_envelope(schema.encode(env)).ringing_at == 7.5
    old = msgspec.msgpack.decode(schema.encode(env), type=OldEnvelope)
    assert old.data == env.data
    assert schema.decode_envelope(msgspec.msgpack.encode(old)).ringing_at is None


def test_ack_route_round_trips_and_old_readers_skip_it() -> None:
    reply = schema.SendResponse(data=b"SIP/2.0 200 OK\r\n\r\n", ack_route=HINT)
    back = schema.decode_reply(schema.encode(reply))
    assert isinstance(back, schema.SendResponse)
    assert back.ack_route == HINT
    old = msgspec.msgpack.decode(schema.encode(reply), type=OldSendResponse)
    assert old.data == reply.data
    plain = schema.decode_reply(msgspec.msgpack.encode(old))
    assert isinstance(plain, schema.SendResponse)
    assert plain.ack_route is None
