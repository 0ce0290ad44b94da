"""Envelope.listeners: the edge's transport -> advertised host:port, old readers and writers."""

from __future__ import annotations

import msgspec

from sipmesh_bus import schema


def _envelope(**kw: object) -> schema.Envelope:
    return schema.Envelope(
        edge_id="e1",
        transport="udp",
        source_host="198.51.100.7",
        source_port=5062,
        local_host="192.0.2.10",
        local_port=5060,
        received_at=1.0,
        data=b"OPTIONS sip:x SIP/2.0\r\n\r\n",
        **kw,  # type: ignore[arg-type]
    )


def test_envelope_listeners_round_trip() -> None:
    listeners = {"udp": "192.0.2.10:5060", "tls": "[2001:db8::1]:5061"}
    env = schema.decode_envelope(schema.encode(_envelope(listeners=listeners)))
    assert env.listeners == listeners


def test_envelope_listeners_default_empty_and_not_shared() -> None:
    first, second = _envelope(), _envelope()
    assert first.listeners == {}
    first.listeners["udp"] = "192.0.2.10:5060"
    assert second.listeners == {}


class _OldEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    # The Envelope before the field: what an edge of the previous release sends.
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


def test_envelope_listeners_from_an_old_edge_is_empty_and_old_readers_skip_it() -> None:
    old = msgspec.msgpack.encode(
        _OldEnvelope(
            edge_id="e1", transport="udp", source_host="198.51.100.7", source_port=5062,
            local_host="192.0.2.10", local_port=5060, received_at=1.0, data=b"x",
        )
    )  # fmt: skip
    assert schema.decode_envelope(old).listeners == {}
    new = schema.encode(_envelope(listeners={"tcp": "192.0.2.10:5060"}))
    assert msgspec.msgpack.decode(new, type=_OldEnvelope).edge_id == "e1"
