"""Edge to edge over ``sip.edge.<id>.send``: what one replica asks of the replica that owns a flow.

The subject carries :class:`sipmesh_bus.schema.EdgeSend`. Between edges it is
sent as a request and answered with a :class:`HandoffResult`, so the sending
edge's transaction sees a transport error (RFC 3261 §18.4, §16.7 step 5/6)
when the owner's connection is gone, instead of waiting for Timer B/F.

:class:`Handoff` is ``EdgeSend`` plus one field with a default, so each decodes
the other's bytes (msgspec skips unknown fields and fills defaults): anyone may
publish a plain ``EdgeSend``, and an edge may hand over a message it *received*
for a transaction another replica holds (a response that came in over a
connection this replica owns; the branch names its owner, see
:mod:`sipmesh_edge.branch`). Both structs belong in ``sipmesh_bus.schema``
(``EdgeSend.received``, ``EdgeSendResult``); they live here until they move,
because only the edge speaks them.
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import Struct

from sipmesh_bus.schema import Port, Transport

__all__ = [
    "Handoff",
    "HandoffResult",
    "decode_handoff",
    "decode_result",
    "encode",
]


class Handoff(Struct, frozen=True, kw_only=True):
    """``sipmesh_bus.schema.EdgeSend`` with ``received`` appended (wire compatible)."""

    data: bytes
    transport: Transport
    host: str
    port: Port
    connection_id: str | None = None
    received: bool = False
    #: True: ``data`` arrived at the sender from ``host:port`` and belongs to a
    #: transaction of the owner, which handles it as if it had received it.


class HandoffResult(Struct, frozen=True, kw_only=True):
    """The owner's answer to a :class:`Handoff` request."""

    ok: bool
    #: False when the connection is gone or there is no socket to send from.
    error: str | None = None


_encoder: Final = msgspec.msgpack.Encoder()
_handoff: Final = msgspec.msgpack.Decoder(Handoff)
_result: Final = msgspec.msgpack.Decoder(HandoffResult)


def encode(obj: Handoff | HandoffResult) -> bytes:
    """msgpack bytes of a handoff or its result."""
    return _encoder.encode(obj)


def decode_handoff(data: bytes) -> Handoff:
    """Decode a Handoff (or a plain EdgeSend). Raises ``msgspec`` errors."""
    return _handoff.decode(data)


def decode_result(data: bytes) -> HandoffResult | None:
    """Decode a HandoffResult; None for bytes that are not one."""
    try:
        return _result.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
