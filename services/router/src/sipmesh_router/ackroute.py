"""The ACK of a 2xx, told to the edge in advance (``SendResponse.ack_route``).

An ACK for a 2xx is a transaction of its own (RFC 3261 §17.1.1.3) that the
router routes like any in-dialog request (:func:`core.decide`: §16.4 pops our
Route values, §16.6 decrements Max-Forwards, adds our Via and sends it along
the dialog). For a call without topology hiding that handling depends on
nothing the 2xx does not already fix: the ACK's Route values are the 2xx's
Record-Route reversed (§12.1.2: the UAC's "route set MUST be set to the
list of URIs in the Record-Route header field from the response, taken in
reverse order"), its Request-URI the 2xx's Contact (the remote target), and
where it goes follows from those and the dialog token we put in the 2xx. So,
with the 2xx, the router hands the edge an :class:`~sipmesh_bus.schema.AckRoute`;
an ACK that matches it byte for byte is forwarded by the edge itself
(``sipmesh_edge.ackroute``), producing the bytes :func:`core.decide` would
have produced, and saves a bus round trip.

No hint (the ACK goes to the router as before) when anything could make the
router decide differently: a Request-URI that could be our token (the §16.4
strict-router fix) or a hidden Contact; another value of ours (``sm=``) in
the Record-Route (a spiral); a next hop that is not a SIP URI.

Calls with anchored media get the hint too: :func:`core.decide` forwards an
ACK before any media step, and an ACK without a body has nothing for the
media service. RFC 3261 §13.2.1: "If the initial offer is in an INVITE, the
answer MUST be in a reliable non-failure message from UAS back to UAC [...]
that is only the final 2xx response to that INVITE": the router anchored it
in the 2xx. And "If the initial offer is in the first reliable non-failure
message from the UAS back to the UAC, the answer MUST be in the
acknowledgement for that message": such an ACK has a body, which the edge
never forwards itself, so it still comes to the router.
"""

from __future__ import annotations

from typing import Final, cast

from sipmesh_bus.schema import AckRoute, Envelope, Target, Transport
from sipmsg import ParseError, Response, parse_address

from . import proxy
from .config import Policy
from .context import Flow, RouteContext
from .hops import listener_for, target_of_uri, via_transport

__all__ = ["ack_route", "eligible"]

_TRANSPORTS: Final = frozenset({"udp", "tcp", "tls", "ws", "wss"})


def eligible(env: Envelope, ctx: RouteContext) -> bool:
    """Whether the ACK of this INVITE's 2xx may be left to the edge (see the module docstring)."""
    return (
        ctx.method == "INVITE"
        and not ctx.in_dialog
        and not ctx.hide
        and bool(ctx.token)
        and bool(ctx.inbound)
        and env.edge_id == ctx.edge_id
    )


def ack_route(
    env: Envelope,
    resp: Response,
    ctx: RouteContext,
    *,
    tags: tuple[bytes | None, bytes | None],
    record_routes: list[bytes],
    token: bytes,
    callee: Flow | None,
    policy: Policy,
) -> AckRoute | None:
    """The :class:`AckRoute` for the 2xx ``resp``, or None.

    Args:
        env: the 2xx's envelope (the edge that holds the INVITE's transactions).
        resp: the 2xx (its Call-ID, CSeq and Contact).
        ctx: the INVITE's context (:func:`eligible`).
        tags: its To and From tags.
        record_routes: its Record-Route values as the caller will see them
            (with ``token`` in ours).
        token: the sealed dialog token in our Record-Route values.
        callee: the callee phone's flow sealed in the token, if any.
        policy: our addresses (Via).
    """
    try:
        return _ack_route(
            env, resp, ctx, tags, record_routes, token=token, callee=callee, policy=policy
        )
    except (ParseError, UnicodeDecodeError):
        return None


def _ack_route(
    env: Envelope,
    resp: Response,
    ctx: RouteContext,
    tags: tuple[bytes | None, bytes | None],
    rrs: list[bytes],
    *,
    token: bytes,
    callee: Flow | None,
    policy: Policy,
) -> AckRoute | None:
    tag, from_tag = tags
    contacts = resp.contact
    inbound = ctx.inbound
    if (
        tag is None
        or from_tag is None
        or not from_tag.isascii()  # core compares it with the token's caller_tag as text
        or not isinstance(contacts, tuple)
        or len(contacts) != 1
        or inbound not in _TRANSPORTS
    ):
        return None
    # Core reads the ACK's Request-URI whatever the route, so it must parse:
    # the Contact's URI is these very bytes parsed already (no second parse).
    parsed = contacts[0].uri
    uri = bytes(parsed)
    lowered = uri.lower()
    if b"sm=" in lowered or b"%" in uri or b"th-" in lowered:
        return None  # the strict-router fix or a hidden Contact could apply
    marker = b"sm=" + token
    ours = [i for i, v in enumerate(rrs) if marker in v]
    if not ours or ours[-1] - ours[0] + 1 != len(ours):
        return None
    if sum(b"sm=" in v.lower() for v in rrs) != len(ours):
        return None  # another Record-Route of a sipmesh router: a spiral
    first, last = ours[0], ours[-1]
    routes = rrs[first : last + 1][::-1]
    rest = rrs[:first][::-1]
    text = uri.decode()  # the router's Target.uri is the ACK's Request-URI as str
    target: Target | None
    if rest:
        target = target_of_uri(parse_address(rest[0]).uri, text)
    elif callee is not None:
        target = callee.target(text)
    else:
        target = target_of_uri(parsed, text)
    if target is None:
        return None
    out_transport = via_transport([target])
    host, port = listener_for(
        out_transport,
        inbound=ctx.inbound,
        me=(ctx.self_host, ctx.self_port),
        listeners=env.listeners,
        edge_id=env.edge_id,
        policy=policy,
    )
    return AckRoute(
        call_id=resp.call_id,
        cseq=resp.cseq.seq,
        from_tag=from_tag,
        to_tag=tag,
        uri=uri,
        routes=routes,
        rest=rest,
        inbound=cast(Transport, inbound),
        via=proxy.via_value(out_transport, host, port, b""),
        target=target,
    )
