"""Every message that travels between sipmesh services, as msgspec Structs (msgpack).

Rules for evolving these (other services decode what you encode, and replicas of
two versions run side by side during a rolling update):

- new fields go last and have defaults; never remove or retype a field;
- no ``forbid_unknown_fields``, so an old reader skips what it does not know;
- raw SIP always travels as ``bytes``; services parse it with ``sipmsg``.

Replies to ``sip.register``/``sip.route``/``sip.route.response`` are one tagged
union, told apart by ``kind`` on the wire and by ``match`` in Python::

    match decode_reply(data):
        case SendResponse(data=raw): ...
        case Forward(targets=targets): ...
        case Drop(reason=why): ...
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta, Struct

__all__ = [
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
]

Port: TypeAlias = Annotated[int, Meta(ge=0, le=65535)]
Transport: TypeAlias = Literal["udp", "tcp", "tls", "ws", "wss"]
CallEventKind: TypeAlias = Literal["attempt", "ringing", "answered", "failed", "ended"]
HangupSide: TypeAlias = Literal["caller", "callee", "system"]
NonNegFloat: TypeAlias = Annotated[float, Meta(ge=0)]


class Envelope(Struct, frozen=True, kw_only=True):
    """A SIP message as the edge received it, sent to the registrar or the router."""

    edge_id: str
    #: The receiving edge; answers to other owners go to ``sip.edge.<edge_id>.send``.
    transport: Transport
    source_host: str
    source_port: Port
    local_host: str
    local_port: Port
    connection_id: str | None = None
    #: The stream (TCP/TLS/WS) connection on the edge; None for UDP.
    received_at: float
    #: Wall-clock receive time (seconds since the epoch), set by the edge.
    data: bytes
    #: The raw SIP message, exactly as received.
    context: bytes | None = None
    #: The router's opaque continuation, echoed back on ``sip.route.response``.
    listeners: dict[str, str] = {}
    #: The edge's listeners, transport -> advertised ``"host:port"`` (IPv6 in
    #: brackets), e.g. ``{"udp": "198.51.100.1:5060", "tls": "198.51.100.1:5061"}``:
    #: the router's Via and Record-Route for another outbound transport.
    ringing_at: float | None = None
    #: On a response the edge asks about (``sip.route.response``): the wall-clock
    #: time the response context first received a 180 or 183, None if it did
    #: not ring. The router reports it on the final's call event
    #: (``CallEvent.ringing_at``), so a 180 it need not rewrite costs no bus
    #: round trip.


class Target(Struct, frozen=True, kw_only=True):
    """One destination of a forwarded request."""

    uri: str
    #: The Request-URI to put on the branch.
    host: str
    port: Port
    transport: Transport = "udp"
    connection_id: str | None = None
    #: Reuse this stream connection (RFC 5626 flow, or the registering UA's one).
    edge_id: str | None = None
    #: The edge that owns ``connection_id``; None means any edge may send.
    group: Annotated[int, Meta(ge=0)] = 0
    #: Fork group: groups are tried serially in ascending order (failover), the
    #: targets of one group in parallel. RFC 3261 §16.6: "It MAY process multiple
    #: targets serially ... It MAY start client transactions with every target in
    #: parallel."


class AckRoute(Struct, frozen=True, kw_only=True):
    """How the edge may forward the ACK of a 2xx itself, as the router would.

    Given with the 2xx of an initial INVITE (``SendResponse.ack_route``) when
    the router's handling of its ACK is a fixed edit (no topology hiding; an
    anchored call's ACK without a body needs nothing of the media service).
    An ACK of that 2xx (§13.2.2.4: same Call-ID, CSeq number, From and To
    tags) that arrives at the same edge over
    ``inbound``, without a body, with ``uri`` as Request-URI and exactly
    ``routes`` + ``rest`` as Route values, is forwarded statelessly by the edge
    (RFC 3261 §16.6): ``routes`` popped (§16.4), Max-Forwards minus one
    (70 when absent), ``via`` plus the router's branch for the ACK on top, to
    ``target``. Anything else goes to the router (``sip.route``).
    """

    call_id: bytes
    cseq: Annotated[int, Meta(ge=0)]
    from_tag: bytes
    to_tag: bytes
    #: The dialog of the 2xx: the ACK's key.
    uri: bytes
    #: The ACK's Request-URI: the 2xx's Contact URI (§12.1.2 remote target).
    routes: list[bytes]
    #: The ACK's top Route values that are the router's (its Record-Route in
    #: the 2xx, reversed as the caller's route set is, §12.1.2), as bytes.
    rest: list[bytes] = []
    #: The Route values below them, exactly; they stay in the ACK.
    inbound: Transport
    #: The transport the router assumed the ACK arrives on (the INVITE's).
    via: bytes
    #: Our Via value up to the branch value, ``SIP/2.0/UDP host:port;branch=``.
    target: Target
    #: Where the ACK goes.


class Reply(Struct, frozen=True, kw_only=True, tag_field="kind", tag=str.lower):
    """Base of the replies to an :class:`Envelope`; decode with :func:`decode_reply`."""


class SendResponse(Reply, frozen=True, kw_only=True):
    """Send this SIP response back (through the server transaction)."""

    data: bytes
    #: The complete response bytes.
    target: Target | None = None
    #: Override where it goes (RFC 3261 §18.2.2 otherwise: the top Via).
    ack_route: AckRoute | None = None
    #: For a 2xx of an INVITE: how the edge may forward its ACK without asking.


class Forward(Reply, frozen=True, kw_only=True):
    """Forward this request to these targets, as the edge's client transactions."""

    data: bytes
    #: The request to send (already rewritten: Via, Record-Route, Max-Forwards ...).
    targets: list[Target]
    #: Where to send it; see ``Target.group`` for serial/parallel forking.
    timer_c: NonNegFloat = 181.0
    #: Seconds. RFC 3261 §16.6 step 11: "Timer C MUST be set for each client
    #: transaction when an INVITE request is proxied. The timer MUST be larger
    #: than 3 minutes."
    context: bytes | None = None
    #: Opaque continuation, echoed back with the responses on ``sip.route.response``.
    all_responses: bool = False
    #: True: the edge asks the router (``sip.route.response``) about every
    #: response of this transaction but 100, provisionals included, instead of
    #: relaying provisionals itself (the router rewrites them: topology hiding).


class Drop(Reply, frozen=True, kw_only=True):
    """Send nothing; the reason is for logs and metrics."""

    reason: str


ReplyType: TypeAlias = SendResponse | Forward | Drop


class EdgeSend(Struct, frozen=True, kw_only=True):
    """Bytes for the edge that owns a connection (``sip.edge.<id>.send``).

    Published, it is fire and forget; sent as a request (edge to edge), the
    owner answers with an :class:`EdgeSendResult`, so the sender's transaction
    sees a transport error (RFC 3261 §18.4) when the connection is gone.
    """

    data: bytes
    transport: Transport
    host: str
    port: Port
    connection_id: str | None = None
    received: bool = False
    #: False: send ``data`` to ``host:port`` (over ``connection_id`` if set).
    #: True: ``data`` arrived at the sender from ``host:port`` and belongs to a
    #: transaction of the owner (a response over a connection the sender
    #: holds; the Via branch names the owner), which handles it as received.


class EdgeSendResult(Struct, frozen=True, kw_only=True):
    """The owner's answer to an :class:`EdgeSend` request."""

    ok: bool
    #: False when the connection is gone or there is no socket to send from.
    error: str | None = None


class MediaOffer(Struct, frozen=True, kw_only=True):
    """Anchor the offer's media (``sip.media.offer``)."""

    call_id: str
    from_tag: str
    sdp: bytes
    flags: list[str] = []
    #: RTPEngine ng flags, e.g. ``"trust-address"``, ``"ICE=remove"``.
    to_tag: str | None = None
    instance: str | None = None
    #: For an offer inside a dialog (re-INVITE, UPDATE): ``MediaReply.instance``
    #: of the call's first offer, so it reaches the instance holding the call.
    received_from: str | None = None
    #: The SIP packet's source IP; with the ``SIP-source-address`` or ``nat``
    #: flag, media goes there instead of the SDP's (private) address.


class MediaAnswer(Struct, frozen=True, kw_only=True):
    """Anchor the answer's media (``sip.media.answer``)."""

    call_id: str
    from_tag: str
    to_tag: str
    sdp: bytes
    flags: list[str] = []
    instance: str | None = None
    #: ``MediaReply.instance`` of the offer; None falls back to hashing the Call-ID.
    received_from: str | None = None
    #: As in :class:`MediaOffer`, for the answerer.


class MediaDelete(Struct, frozen=True, kw_only=True):
    """Release a call's media (``sip.media.delete``)."""

    call_id: str
    from_tag: str | None = None
    to_tag: str | None = None
    instance: str | None = None
    #: ``MediaReply.instance`` of the offer; None falls back to hashing the Call-ID.


class MediaReply(Struct, frozen=True, kw_only=True):
    """The media service's answer to any of the three requests."""

    ok: bool
    sdp: bytes | None = None
    #: The rewritten SDP (offer/answer only).
    error: str | None = None
    instance: str | None = None
    #: Which RTPEngine instance holds the session.
    code: str | None = None
    #: Why ``ok`` is False, for branching: ``instance_down`` (the call's
    #: instance is marked down: report it in the call event), ``timeout`` (no
    #: answer), ``no_instance`` (none healthy, or none configured: the call goes
    #: on unanchored), ``rtpengine_error`` (``error`` holds its reason) or
    #: ``bad_request`` (e.g. an unknown flag).
    warning: str | None = None
    #: RTPEngine's warning on success, e.g. a delete of an unknown call.


class CallEvent(Struct, frozen=True, kw_only=True):
    """One step of a call, published to ``call.events.<kind>`` (stream CALLS).

    The CDR service folds the events of one ``call_id`` into one row; ``event_id``
    makes redelivery idempotent (it is also the JetStream ``Nats-Msg-Id``).
    """

    kind: CallEventKind
    event_id: str
    call_id: str
    at: float
    #: When this event happened (seconds since the epoch).
    started_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    caller: str = ""
    #: From URI (user@host).
    callee: str = ""
    #: Request-URI / dialled number.
    source: str = ""
    #: The caller's address, ``host:port``.
    destination: str = ""
    #: The chosen target, ``host:port``.
    carrier: str | None = None
    #: The LCR gateway/carrier id.
    rate_prefix: str | None = None
    rate_per_minute: float | None = None
    currency: str | None = None
    status_code: Annotated[int, Meta(ge=0, le=699)] | None = None
    reason: str | None = None
    hangup_side: HangupSide | None = None
    edge_id: str | None = None
    gateway: str | None = None
    #: The LCR gateway id (``carrier`` is its carrier).
    dispatcher_set: str | None = None
    #: The dispatcher set the call went to.
    billing_first: Annotated[int, Meta(ge=1)] | None = None
    billing_step: Annotated[int, Meta(ge=1)] | None = None
    #: Billing increments in seconds (60/60, 1/1, 30/6 ...): the first charged
    #: period, then each next one.
    media_instance: str | None = None
    #: The RTPEngine instance anchoring the call's media (None: not anchored).
    media_error: str | None = None
    #: Why anchoring failed, ``MediaReply.code`` (``instance_down``: the call's
    #: instance is dead; ``no_instance``, ``timeout``, ``unavailable`` ...): the
    #: call went on with its media unanchored.
    ringing_at: float | None = None
    #: On ``answered`` and ``failed``: when the attempt first rang (180/183,
    #: ``Envelope.ringing_at``), None if it did not. It stands for the
    #: ``ringing`` event the router no longer publishes on its own for a
    #: ringing it learns with the final (one JetStream write less per call);
    #: the CDR service takes the earliest of both as the ring time.


_encoder: Final = msgspec.msgpack.Encoder()
_envelope: Final = msgspec.msgpack.Decoder(Envelope)
_reply: Final = msgspec.msgpack.Decoder(ReplyType)
_edge_send: Final = msgspec.msgpack.Decoder(EdgeSend)
_edge_send_result: Final = msgspec.msgpack.Decoder(EdgeSendResult)
_media_offer: Final = msgspec.msgpack.Decoder(MediaOffer)
_media_answer: Final = msgspec.msgpack.Decoder(MediaAnswer)
_media_delete: Final = msgspec.msgpack.Decoder(MediaDelete)
_media_reply: Final = msgspec.msgpack.Decoder(MediaReply)
_call_event: Final = msgspec.msgpack.Decoder(CallEvent)


def encode(obj: Struct) -> bytes:
    """Encode any message of this module to msgpack.

    Args:
        obj: an Envelope, a Reply, a media message, a CallEvent ...

    Returns:
        The msgpack bytes (a tagged map for Reply subclasses).
    """
    return _encoder.encode(obj)


def decode_envelope(data: bytes) -> Envelope:
    """Decode an Envelope. Raises ``msgspec.DecodeError`` / ``ValidationError``."""
    return _envelope.decode(data)


def decode_reply(data: bytes) -> ReplyType:
    """Decode a SendResponse, Forward or Drop, chosen by its ``kind`` tag.

    Raises ``msgspec.ValidationError`` for an unknown kind.
    """
    return _reply.decode(data)


def decode_edge_send(data: bytes) -> EdgeSend:
    """Decode an EdgeSend."""
    return _edge_send.decode(data)


def decode_edge_send_result(data: bytes) -> EdgeSendResult:
    """Decode an EdgeSendResult. Raises ``msgspec.DecodeError`` / ``ValidationError``."""
    return _edge_send_result.decode(data)


def decode_media_offer(data: bytes) -> MediaOffer:
    """Decode a MediaOffer."""
    return _media_offer.decode(data)


def decode_media_answer(data: bytes) -> MediaAnswer:
    """Decode a MediaAnswer."""
    return _media_answer.decode(data)


def decode_media_delete(data: bytes) -> MediaDelete:
    """Decode a MediaDelete."""
    return _media_delete.decode(data)


def decode_media_reply(data: bytes) -> MediaReply:
    """Decode a MediaReply."""
    return _media_reply.decode(data)


def decode_call_event(data: bytes) -> CallEvent:
    """Decode a CallEvent."""
    return _call_event.decode(data)
