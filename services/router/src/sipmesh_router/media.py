"""Media anchoring (RTPEngine through the media service), pure: when to ask, and what to do after.

The router never talks ng itself; it asks the media service over NATS
(``sip.media.offer|answer|delete``). A decision that needs a rewritten SDP
before it may be sent is two-phase::

    decision = core.decide(envelope, msg, inputs)       # decision.media: MediaOffer | MediaAnswer
    reply = await <sip.media.offer|answer>(decision.media)
    decision = media.apply_media(decision, reply, secret=...)  # SDP swapped, context updated

and a release (``decision.media_delete``) is sent by the shell on the side.

When (RFC 3264 offer/answer as RTPEngine sees it):

- offer: an initial INVITE with SDP, and a re-INVITE or UPDATE with SDP in
  an anchored dialog;
- answer: a 183/180 or 2xx with SDP to an anchored offer;
- delete: a BYE of an anchored dialog, and the final non-2xx that ends an
  anchored call attempt (a CANCEL reaches the router as the 487, a failure
  as its final; a failover to the next leg keeps the session).

What must outlive one message travels with it: ``RouteContext.media`` /
``media_instance`` for the responses of one transaction, and the same two in
the :class:`~sipmesh_router.context.DialogToken` of our Record-Route for every
in-dialog request, so that any replica reaches the instance that has the call.

Whether to anchor (``router.media``, per peer/set/gateway/carrier in
``router.media_overrides``): ``always``, ``never``, or ``nat``: only when a
registered phone on either side looks NATed (:func:`looks_natted`).
"""

from __future__ import annotations

import ipaddress
from typing import Final

import msgspec

from sipmesh_bus.schema import (
    CallEvent,
    Forward,
    MediaAnswer,
    MediaDelete,
    MediaOffer,
    MediaReply,
    SendResponse,
)
from sipmsg import ParseError, Request, Response, parse, parse_sdp

from .config import MediaMode
from .context import decode_context, encode_context, open_token, seal_token
from .model import Decision

__all__ = [
    "NAT_FLAGS",
    "MediaMode",
    "answer",
    "apply_media",
    "delete",
    "looks_natted",
    "offer",
    "sdp_of",
    "with_sdp",
]

NAT_FLAGS: Final = ("SIP-source-address",)
#: Added to an offer/answer from a NATed phone (with ``received_from``): its
#: media goes to where its packets come from, not to the SDP's private address.
_SDP: Final = b"application/sdp"


def sdp_of(msg: Request | Response) -> bytes | None:
    """The SDP body of ``msg``, or None (no body, another type, a multipart)."""
    if not msg.body:
        return None
    try:
        ctype = msg.content_type
    except ParseError:
        return None
    return msg.body if ctype is not None and ctype.mime.lower() == _SDP else None


def _connection_host(sdp: bytes) -> str | None:
    try:
        desc = parse_sdp(sdp)
    except ParseError:
        return None
    conn = desc.connection or next((m.connection for m in desc.media if m.connection), None)
    if conn is None:
        return None
    return conn.address.split(b"/", 1)[0].decode("latin-1")


def _private(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return addr.is_private and not addr.is_loopback


def looks_natted(
    source_host: str, *, sdp: bytes | None = None, contact_host: str | None = None
) -> bool:
    """True when a phone seems to be behind NAT.

    The hints Kamailio's ``nat_uac_test`` uses: the address in the SDP's
    ``c=`` line (or the Contact's host) is not the one the packets come from,
    or is a private (RFC 1918 / RFC 4193) address. Host names never count.

    Args:
        source_host: where its SIP came from (the edge's view).
        sdp: its SDP, when it sent one.
        contact_host: the host of its Contact (registered binding).
    """
    for host in (_connection_host(sdp) if sdp else None, contact_host):
        if host is None:
            continue
        if _private(host) and not _private(source_host):
            return True
        try:
            if ipaddress.ip_address(host.strip("[]")) != ipaddress.ip_address(source_host):
                return True
        except ValueError:
            continue
    return False


def with_sdp(data: bytes, sdp: bytes) -> bytes:
    """The SIP message ``data`` with ``sdp`` as its body (Content-Length fixed)."""
    msg = parse(data)
    return bytes(msg.with_body(sdp, _SDP))


def apply_media(decision: Decision, reply: MediaReply, *, secret: bytes) -> Decision:
    """Finish a decision that waited for the media service (see the module docstring).

    On success the rewritten SDP replaces the body of what is sent (and of the
    request stored for failover), the context remembers the instance and, for a
    dialog-creating request, so does the sealed token in our Record-Route. On
    failure the message goes on unanchored with its own SDP, and the events
    say why (``media_error``: ``instance_down`` for a call on a dead instance).

    Args:
        decision: a :func:`core.decide` result whose ``media`` is set.
        reply: the media service's answer.
        secret: the router's token secret (to re-seal the Record-Route token).

    Returns:
        The decision to carry out, ``media`` cleared.
    """
    if decision.media is None:
        return decision
    anchored = reply.ok and bool(reply.sdp)
    events = _events(decision.events, reply)
    out = decision.reply
    if isinstance(out, Forward):
        out = _forward(
            out, reply if anchored else None, secret, offer=isinstance(decision.media, MediaOffer)
        )
    elif isinstance(out, SendResponse) and anchored:
        assert reply.sdp is not None
        out = msgspec.structs.replace(out, data=with_sdp(out.data, reply.sdp))
    put = decision.dialog_put
    if put is not None and not reply.ok:
        put = (put[0], msgspec.structs.replace(put[1], media_error=reply.code or "error"))
    return msgspec.structs.replace(decision, reply=out, events=events, media=None, dialog_put=put)


def _events(events: tuple[CallEvent, ...], reply: MediaReply) -> tuple[CallEvent, ...]:
    error = None if reply.ok else (reply.code or "error")
    return tuple(
        msgspec.structs.replace(e, media_instance=reply.instance, media_error=error) for e in events
    )


def _forward(fwd: Forward, reply: MediaReply | None, secret: bytes, *, offer: bool) -> Forward:
    if fwd.context is None:
        return fwd
    ctx = decode_context(fwd.context)
    if reply is None:
        if offer:
            ctx = msgspec.structs.replace(ctx, media=False, media_instance=None)
        return msgspec.structs.replace(fwd, context=encode_context(ctx))
    assert reply.sdp is not None
    data = with_sdp(fwd.data, reply.sdp)
    stored = with_sdp(ctx.request, reply.sdp) if ctx.request else b""
    token = ctx.token
    if token:
        call_id = ctx.call_id.encode("utf-8", "surrogateescape")
        opened = open_token(token.encode("ascii"), secret=secret, call_id=call_id)
        if opened is not None:
            marked = msgspec.structs.replace(opened, media=True, media_instance=reply.instance)
            new = seal_token(marked, secret=secret, call_id=call_id).decode("ascii")
            data = data.replace(token.encode("ascii"), new.encode("ascii"))
            stored = stored.replace(token.encode("ascii"), new.encode("ascii"))
            token = new
    ctx = msgspec.structs.replace(
        ctx, request=stored, token=token, media=True, media_instance=reply.instance
    )
    return msgspec.structs.replace(fwd, data=data, context=encode_context(ctx))


def offer(
    *,
    call_id: str,
    msg: Request,
    sdp: bytes,
    instance: str | None = None,
    natted_from: str | None = None,
) -> MediaOffer:
    """The offer of ``msg`` (INVITE, re-INVITE or UPDATE)."""
    return MediaOffer(
        call_id=call_id,
        from_tag=(msg.from_tag or b"").decode("latin-1"),
        to_tag=None if msg.to_tag is None else msg.to_tag.decode("latin-1"),
        sdp=sdp,
        instance=instance,
        received_from=natted_from,
        flags=list(NAT_FLAGS) if natted_from else [],
    )


def answer(
    *,
    call_id: str,
    msg: Response,
    sdp: bytes,
    instance: str | None,
    natted_from: str | None = None,
) -> MediaAnswer:
    """The answer in ``msg`` (183 or 2xx) to the offer its request carried."""
    return MediaAnswer(
        call_id=call_id,
        from_tag=(msg.from_tag or b"").decode("latin-1"),
        to_tag=(msg.to_tag or b"").decode("latin-1"),
        sdp=sdp,
        instance=instance,
        received_from=natted_from,
        flags=list(NAT_FLAGS) if natted_from else [],
    )


def delete(*, call_id: str, instance: str | None) -> MediaDelete:
    """Release the whole call (every branch: no tags)."""
    return MediaDelete(call_id=call_id, instance=instance)
