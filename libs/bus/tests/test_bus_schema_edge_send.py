"""EdgeSend.received and EdgeSendResult: the handoff contract between edges, old and new readers."""

from __future__ import annotations

import msgspec
import pytest
from msgspec import Struct

from sipmesh_bus import schema


class OldEdgeSend(Struct, frozen=True, kw_only=True):
    """EdgeSend as it was before ``received`` was appended."""

    data: bytes
    transport: schema.Transport
    host: str
    port: schema.Port
    connection_id: str | None = None


def test_edge_send_received_defaults_to_false_for_old_writers() -> None:
    old = OldEdgeSend(data=b"x", transport="tcp", host="192.0.2.1", port=5060, connection_id="c1")
    new = schema.decode_edge_send(msgspec.msgpack.encode(old))
    assert new.received is False
    assert (new.data, new.connection_id) == (b"x", "c1")


def test_edge_send_received_is_skipped_by_old_readers() -> None:
    sent = schema.EdgeSend(data=b"y", transport="udp", host="192.0.2.1", port=5062, received=True)
    assert schema.decode_edge_send(schema.encode(sent)) == sent
    old = msgspec.msgpack.decode(schema.encode(sent), type=OldEdgeSend)
    assert (old.data, old.port) == (b"y", 5062)


def test_edge_send_result_round_trip_and_rejects_other_bytes() -> None:
    failed = schema.EdgeSendResult(ok=False, error="connection c1 is gone")
    assert schema.decode_edge_send_result(schema.encode(failed)) == failed
    assert schema.decode_edge_send_result(schema.encode(schema.EdgeSendResult(ok=True))).ok
    with pytest.raises(msgspec.ValidationError):
        schema.decode_edge_send_result(schema.encode(schema.Drop(reason="no")))
