"""The router's decisions, pure: an envelope and looked-up data in, a reply and side outputs out.

::

    location_keys(req, envelope, policy) -> the AoR keys app.py must read first
    decide(envelope, msg, inputs)        -> Decision(reply, events, dialog writes)

Requests follow RFC 3261 §16: validation (§16.3: Max-Forwards, Proxy-Require;
syntax and loops are the edge's), route preprocessing (§16.4: strict-router
fix, our Route values popped), then either loose routing of an in-dialog
request along the dialog's route or, for a new request, who may call where
and the targets (bindings of a local user, a dispatcher set, LCR carriers).
Responses come back on ``sip.route.response`` with the :class:`RouteContext`
of :mod:`sipmesh_router.context`: see :mod:`sipmesh_router.responses`.
"""

from __future__ import annotations

import functools
from typing import Final
from urllib.parse import unquote_to_bytes

from msgspec import Struct
from msgspec.structs import replace

from sipmesh_bus import records
from sipmesh_bus.records import Binding, live_bindings
from sipmesh_bus.routing import health_key
from sipmesh_bus.schema import (
    CallEvent,
    Drop,
    Envelope,
    Forward,
    HangupSide,
    MediaOffer,
    SendResponse,
    Target,
)
from sipmsg import (
    ParseError,
    Request,
    Response,
    SipUri,
    TelUri,
    make_response,
    parse_address,
)
from sipmsg._abnf import param

from . import auth, caps, media, proxy
from .config import MediaMode, Policy
from .context import (
    DialogToken,
    Flow,
    Leg,
    RouteContext,
    encode_context,
    open_token,
    seal_token,
)
from .events import call_event, dialog_key, ended_event
from .hops import listener_for, target_of_uri, via_transport
from .model import Decision, Inputs, NonceClaim
from .responses import all_responses, decide_response
from .routes import Hop, Peer

__all__ = ["Decision", "Inputs", "decide", "location_keys", "replayed", "target_of_uri"]

_DIALOG_CREATING: Final = frozenset({b"INVITE", b"SUBSCRIBE", b"REFER"})
_OFFERING: Final = frozenset({b"INVITE", b"UPDATE"})
#: In-dialog requests whose SDP is an offer (RFC 3311 UPDATE, a re-INVITE).
_TOKEN_PARAM: Final = b"sm"

_aor_key: Final = functools.lru_cache(maxsize=4096)(records.aor_key)
#: ``records.aor_key`` memoised: it escapes octet by octet, and every INVITE
#: to a user asks twice (:func:`location_keys`, then the decision).


def location_keys(req: Request, policy: Policy) -> list[str]:
    """The ``location`` keys :func:`decide` will look at for ``req`` (read them first)."""
    if req.to_tag is not None or req.method in (b"ACK", b"CANCEL"):
        return []
    local = _local_user(req, policy)
    return [] if local is None else [_aor_key(*local)]


def decide(envelope: Envelope, msg: Request | Response, inputs: Inputs) -> Decision:
    """The router's answer to one request or one response (with its context).

    Args:
        envelope: as the edge sent it (source, edge, context).
        msg: ``envelope.data`` parsed.
        inputs: routing data, bindings, subscribers, clock and entropy.

    Returns:
        The reply for the edge and the side outputs.

    Raises:
        ParseError: a header the decision needs is malformed (the shell answers 400).
    """
    if isinstance(msg, Response):
        return decide_response(envelope, msg, inputs)
    return _request(envelope, msg, inputs)


def replayed(msg: Request, claim: NonceClaim, inputs: Inputs) -> Decision:
    """The answer when ``claim`` was taken already: a fresh 407, not stale.

    RFC 7616 §3.4: the nc "allows the server to detect request replays by
    maintaining its own copy of this count - if the same nc-value is seen
    twice, then the request is a replay".
    """
    resp = auth.challenge(
        msg,
        claim.realm.encode("latin-1"),
        inputs.nonces,
        now=inputs.now,
        entropy=inputs.entropy,
        algorithms=inputs.policy.algorithms,
    )
    return Decision(reply=SendResponse(data=bytes(resp)), outcome="replay")


# -- requests -----------------------------------------------------------------


def _answer(
    req: Request,
    status: int,
    outcome: str,
    reason: bytes | None = None,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> Decision:
    if req.method == b"ACK":
        return Decision(reply=Drop(reason=f"ACK not routable: {outcome}"), outcome=outcome)
    resp = make_response(req, status, reason, headers=headers)
    return Decision(reply=SendResponse(data=bytes(resp)), outcome=outcome)


def _request(env: Envelope, req: Request, inp: Inputs) -> Decision:
    if req.method == b"CANCEL":
        # §16.10: the edge answers a CANCEL that matches a transaction it holds
        # (and tells us without waiting); one that reaches us matched nothing.
        return _answer(req, 481, "cancel_unmatched")
    if req.max_forwards == 0:
        return _answer(req, 483, "too_many_hops")
    if req.proxy_require:
        # §16.3 step 5: "If the request contains a Proxy-Require header field ...
        # with one or more option-tags this element does not understand, the
        # element MUST return a 420 (Bad Extension) response."
        tags = b", ".join(req.proxy_require)
        return _answer(req, 420, "bad_extension", headers=((b"Unsupported", tags),))
    call_id = req.call_id
    req, strict = _strict_router_fix(req, inp.policy.secret, call_id)
    tokens: list[DialogToken] = []

    def ours(uri: SipUri) -> bool:
        # Each popped URI's token is opened once (HMAC, base64, msgpack).
        found = _token(uri, inp.policy.secret, call_id)
        if found is not None:
            tokens.append(found)
        return found is not None

    # The popped request is built later, with the other edits (one copy).
    left, popped = proxy.split_routes(req, ours)
    token = tokens[0] if tokens else strict
    if req.to_tag is not None:
        return _in_dialog(env, req, left if popped else None, token, inp)
    if popped:
        req = proxy.with_routes(req, left)
    return _initial(env, req, inp)


def _token(uri: SipUri, secret: bytes, call_id: bytes) -> DialogToken | None:
    value = param(uri.params, _TOKEN_PARAM)
    return None if value is None else open_token(value, secret=secret, call_id=call_id)


def _strict_router_fix(
    req: Request, secret: bytes, call_id: bytes
) -> tuple[Request, DialogToken | None]:
    """§16.4: "If the Request-URI contains a value this proxy previously placed
    into a Record-Route header field ... replace the Request-URI in the request
    with the last value from the Route header field, and remove that value"."""
    raw = req.uri
    if b"sm=" not in raw.lower() and b"%" not in raw:
        return req, None  # no token parameter, even escaped: not parsed for nothing
    uri = req.request_uri
    token = _token(uri, secret, call_id) if isinstance(uri, SipUri) else None
    if token is None:
        return req, None
    routes = req.headers.get_all(b"route")
    if not routes:
        return req, None
    last = bytes(parse_address(routes[-1]).uri)
    out = Request(method=req.method, uri=last, headers=req.headers, body=req.body)
    out = out.remove_header(b"route")
    if routes[:-1]:
        out = out.with_header(b"Route", b", ".join(routes[:-1]))
    return proxy.reparse_request(out), token


def _in_dialog(
    env: Envelope, req: Request, left: list[bytes] | None, token: DialogToken | None, inp: Inputs
) -> Decision:
    """Loose-route ``req`` along its dialog (§16.12).

    ``left``: the Route values after ours were popped (§16.4), None when
    none was ours (Route as received); ``req`` still holds ours.
    """
    policy = inp.policy
    if token is None:
        # Not a dialog we record-routed: forwarding it would make us an open relay.
        return _answer(req, 403, "no_dialog_route", b"Not A Dialog Of This Proxy")
    from_caller = req.from_tag == token.caller_tag.encode()
    flow = token.callee if from_caller else token.caller
    ruri = req.request_uri
    if isinstance(ruri, SipUri) and ruri.user is not None:
        hidden = proxy.open_contact_token(ruri.user, secret=policy.secret)
        if hidden is not None:
            headers = req.headers if left is None else proxy.route_headers(req.headers, left)
            req = proxy.reparse_request(
                Request(method=req.method, uri=hidden, headers=headers, body=req.body)
            )
            left = None  # popped already
    routes = req.headers.get_all(b"route") if left is None else left
    target: Target | None
    if routes:
        target = target_of_uri(parse_address(routes[0]).uri, req.uri.decode())
    elif flow is not None:
        target = flow.target(req.uri.decode())
    else:
        target = target_of_uri(req.request_uri, req.uri.decode())
    if target is None:
        return _answer(req, 416, "bad_target")
    me = _me(env, policy)
    out_transport = via_transport([target])
    out = _listener(env, policy, out_transport)
    sent = req
    hidden_vias: list[str] = []
    if token.hide:
        sent = proxy.with_contact(sent, secret=policy.secret, host=out[0], port=out[1])
        sent, hidden_vias, _ = proxy.hide_request(sent, keep_record_route=True)
    caller_branch = req.via_branch or b""
    branch = proxy.branch_for(caller_branch, req.call_id, 0, req.method)
    # §16.6 steps 3 and 8: Max-Forwards decremented, our Via on top.
    via = proxy.via_value(out_transport, out[0], out[1], branch)
    sent = proxy.forward_edits(sent, record_routes=[], via=via, routes=left)
    events: tuple[CallEvent, ...] = ()
    delete = None
    media_delete = None
    call_id = req.call_id.decode("utf-8", "replace")
    instance = token.media_instance if token.media else None
    if req.method == b"BYE":
        side: HangupSide = "caller" if from_caller else "callee"
        ended = ended_event(
            call_id,
            side,
            now=inp.now,
            source=_source(env),
            edge_id=env.edge_id,
            media_instance=instance,
        )
        events = (ended,)
        delete = dialog_key(call_id)
        if token.media:
            media_delete = media.delete(call_id=call_id, instance=instance)
    if req.method == b"ACK":
        return Decision(reply=Forward(data=bytes(sent), targets=[target]), outcome="in_dialog")
    sdp = media.sdp_of(req) if token.media and req.method in _OFFERING else None
    ctx = RouteContext(
        call_id=call_id,
        method=req.method.decode(),
        caller_branch=caller_branch.decode("latin-1"),
        edge_id=env.edge_id,
        hide=token.hide,
        self_host=me[0],
        self_port=me[1],
        hidden_vias=hidden_vias,
        media=sdp is not None,
        media_instance=instance,
        in_dialog=True,
    )
    fwd = Forward(
        data=bytes(sent),
        targets=[target],
        timer_c=policy.timer_c,
        context=encode_context(ctx),
        all_responses=all_responses(ctx),
    )
    offer = None
    if sdp is not None:
        # RFC 3264 §8: a re-INVITE or UPDATE may carry a new offer; the
        # anchor must see it, or the media would move past RTPEngine.
        offer = media.offer(call_id=call_id, msg=req, sdp=sdp, instance=instance)
    return Decision(
        reply=fwd,
        outcome="in_dialog",
        events=events,
        dialog_delete=delete,
        media=offer,
        media_delete=media_delete,
    )


class _Caller(Struct, frozen=True, kw_only=True):
    peer: Peer | None
    user: str | None
    #: Authenticated local user.
    phone: bool
    #: A registered phone (its flow goes into the dialog token).
    aor: str | None = None
    #: ``user@domain`` of the authenticated user (call caps).


def _initial(env: Envelope, req: Request, inp: Inputs) -> Decision:
    policy = inp.policy
    if req.method == b"ACK":
        return Decision(reply=Drop(reason="ACK outside a dialog"), outcome="stray_ack")
    peer = inp.routing.trusted_peer(env.source_host)
    caller = _Caller(peer=peer, user=None, phone=False)
    claim: NonceClaim | None = None
    from_uri = req.from_.uri
    from_local = isinstance(from_uri, SipUri) and policy.is_local(from_uri.host.decode("latin-1"))
    if from_local and peer is None:
        assert isinstance(from_uri, SipUri)
        realm = from_uri.host.lower()
        if policy.auth:
            result = auth.authenticate(
                req,
                realm=realm,
                subscribers=inp.subscribers,
                nonces=inp.nonces,
                now=inp.now,
                entropy=inp.entropy,
                algorithms=policy.algorithms,
            )
            if isinstance(result, Response):
                outcome = "challenge" if result.status == 407 else "bad_auth"
                return Decision(reply=SendResponse(data=bytes(result)), outcome=outcome)
            if from_uri.user is None or _unescape(from_uri.user) != result.user:
                # §22.3 leaves identity policy to the proxy: a user may only
                # call as itself.
                return _answer(req, 403, "forbidden", b"From Does Not Match Credentials")
            aor = f"{result.user}@{realm.decode('latin-1')}"
            caller = _Caller(peer=None, user=result.user, phone=True, aor=aor)
            claim = NonceClaim(
                key=result.replay_key, ttl=result.replay_ttl, realm=realm.decode("latin-1")
            )
        else:
            name = _unescape(from_uri.user or b"")
            aor = f"{name}@{realm.decode('latin-1')}"
            caller = _Caller(peer=None, user=name, phone=True, aor=aor)
    decision = _route_initial(env, req, inp, caller)
    if claim is None:
        return decision
    return replace(decision, nonce_claim=claim)


def _route_initial(env: Envelope, req: Request, inp: Inputs, caller: _Caller) -> Decision:
    policy = inp.policy
    limits = policy.call_limits
    invite = req.method == b"INVITE"
    over = caps.user_over(limits, caller.aor, inp.user_calls) or caps.trunk_over(
        limits, caller.peer.name if caller.peer else None, inp.trunk_calls
    )
    if invite and over is not None:
        return caps.refuse(req, over, retry_after=policy.retry_after)
    authorized = caller.peer is not None or caller.user is not None
    local = _local_user(req, policy)
    if local is not None:
        key = _aor_key(*local)
        bindings = live_bindings(inp.locations.get(key), inp.now)
        if bindings:
            legs = _binding_legs(bindings)
            mode = policy.media_mode(_peer_keys(caller))
            # Only mode "nat" asks whether the callee is behind NAT.
            natted = mode == "nat" and any(
                media.looks_natted(b.source_host, contact_host=_uri_host(b.contact))
                for b in bindings
            )
            anchor = _Anchor(mode=mode, callee_natted=natted)
            return _forward(
                env,
                req,
                inp,
                caller,
                legs,
                callee_is_phone=True,
                hide=_hides(caller, None),
                anchor=anchor,
            )
        if key in inp.subscribers:
            return _answer(req, 480, "unavailable")
    user, domain = _dialled(req)
    if not authorized:
        # No open relay: strangers may only reach our own users; a local name
        # that is nobody's (and routes nowhere) is simply not found.
        routable = inp.routing.dispatcher_set_for(user, domain) is not None or (
            _is_number(user) and bool(inp.routing.carriers(user))
        )
        if local is not None and not routable:
            return _answer(req, 404, "not_found")
        return _answer(req, 403, "forbidden", b"Relaying Denied")
    hops: list[Hop] = []
    set_id = inp.routing.dispatcher_set_for(user, domain)
    if set_id is not None:
        hops = inp.routing.set_destinations(
            set_id, call_id=req.call_id.decode("latin-1"), from_user=caller.user or "", now=inp.now
        )
        if not hops:
            return _answer(req, 503, "set_down", b"No Destination Available")
    elif user and _is_number(user):
        hops = inp.routing.carriers(user)
    if not hops:
        return _answer(req, 404, "no_route", b"No Route")
    full = [
        o for h in hops if invite and (o := caps.trunk_over(limits, h.gateway, inp.trunk_calls))
    ]
    if full:  # a full gateway is skipped like a failed one; none left: 503
        hops = [h for h in hops if h.gateway not in {o.name for o in full}]
        if not hops:
            return caps.refuse(req, full[0], retry_after=policy.retry_after)
    legs = [_hop_leg(h, req) for h in hops]
    hide = _hides(caller, hops[0])
    anchor = _Anchor(mode=policy.media_mode((*_hop_keys(hops[0]), *_peer_keys(caller))))
    return _forward(env, req, inp, caller, legs, callee_is_phone=False, hide=hide, anchor=anchor)


class _Anchor(Struct, frozen=True, kw_only=True):
    mode: MediaMode
    callee_natted: bool = False
    #: A registered callee looks NATed (its Contact is not where it registered from).


def _peer_keys(caller: _Caller) -> tuple[str, ...]:
    return () if caller.peer is None else (f"peer:{caller.peer.name}",)


def _hop_keys(hop: Hop) -> tuple[str, ...]:
    named = (("set", hop.dispatcher_set), ("gateway", hop.gateway), ("carrier", hop.carrier))
    return tuple(f"{kind}:{value}" for kind, value in named if value)


def _uri_host(uri: str) -> str | None:
    found = proxy.uri_of(uri)
    return None if found is None else found.host.decode("latin-1")


def _media_offer(
    env: Envelope, req: Request, caller: _Caller, anchor: _Anchor
) -> MediaOffer | None:
    """The offer to anchor for a new INVITE, or None (no SDP, or the policy says no)."""
    if anchor.mode == "never" or req.method != b"INVITE":
        return None
    sdp = media.sdp_of(req)
    if sdp is None:
        return None
    caller_natted = caller.phone and media.looks_natted(env.source_host, sdp=sdp)
    if anchor.mode == "nat" and not (caller_natted or anchor.callee_natted):
        return None
    return media.offer(
        call_id=req.call_id.decode("utf-8", "replace"),
        msg=req,
        sdp=sdp,
        natted_from=env.source_host if caller_natted else None,
    )


def _hides(caller: _Caller, hop: Hop | None) -> bool:
    return bool(
        (caller.peer is not None and caller.peer.hide_topology)
        or (hop is not None and hop.hide_topology)
    )


def _forward(
    env: Envelope,
    req: Request,
    inp: Inputs,
    caller: _Caller,
    legs: list[Leg],
    *,
    callee_is_phone: bool,
    hide: bool,
    anchor: _Anchor,
) -> Decision:
    policy = inp.policy
    me = _me(env, policy)
    call_id = req.call_id.decode("utf-8", "replace")
    caller_branch = req.via_branch or b""
    first, rest = legs[0], legs[1:]
    out_transport = via_transport(first.targets)
    out = _listener(env, policy, out_transport)
    sent = req
    hidden_vias: list[str] = []
    hidden_rrs: list[str] = []
    sealed = b""
    rr: list[bytes] = []
    offer = _media_offer(env, req, caller, anchor)
    if hide:
        sent = proxy.with_contact(sent, secret=policy.secret, host=out[0], port=out[1])
        # Every Via and Record-Route of the caller's side leaves with the
        # request and rides in the context; :mod:`.responses` puts them back.
        sent, hidden_vias, hidden_rrs = proxy.hide_request(sent)
    if req.method in _DIALOG_CREATING:
        caller_flow = _flow(env) if caller.phone else None
        token = DialogToken(
            caller_tag=(req.from_tag or b"").decode("latin-1"),
            caller=caller_flow,
            hide=hide,
        )
        sealed = seal_token(token, secret=policy.secret, call_id=req.call_id)
        rr = _record_routes(env, me, (out_transport, out), sealed)
    branch = proxy.branch_for(caller_branch, req.call_id, 0)
    # §16.6 steps 3, 4 and 8: Max-Forwards decremented, our Record-Route
    # (dialog-creating requests), our Via on top: one copy of the message.
    via = proxy.via_value(out_transport, out[0], out[1], branch)
    sent = proxy.forward_edits(sent, record_routes=rr, via=via)
    stored = bytes(sent)
    data = bytes(proxy.add_routes(sent, first.routes)) if first.routes else stored
    ctx = RouteContext(
        call_id=call_id,
        method=req.method.decode(),
        request=stored if rest else b"",
        remaining=rest,
        caller_branch=caller_branch.decode("latin-1"),
        caller=_aor_text(req.from_.uri),
        callee=req.uri.decode("utf-8", "replace"),
        source=_source(env),
        started_at=inp.now,
        edge_id=env.edge_id,
        leg=first,
        hide=hide,
        self_host=me[0],
        self_port=me[1],
        hidden_vias=hidden_vias,
        hidden_record_routes=hidden_rrs,
        callee_is_phone=callee_is_phone,
        token=sealed.decode("ascii"),
        media=offer is not None,
        received_at=env.received_at,
        user=caller.aor,
        peer=caller.peer.name if caller.peer else None,
        inbound=env.transport,
    )
    events: tuple[CallEvent, ...] = ()
    if req.method == b"INVITE":
        events = (call_event(ctx, "attempt", now=inp.now, detail=_detail(ctx, 0)),)
    fwd = Forward(
        data=data,
        targets=first.targets,
        timer_c=policy.timer_c,
        context=encode_context(ctx),
        all_responses=all_responses(ctx),
    )
    return Decision(reply=fwd, outcome="forward", events=events, media=offer)


def _detail(ctx: RouteContext, attempt: int) -> str:
    return f"{ctx.caller_branch[-24:] or 'x'}-{attempt}"


def _binding_legs(bindings: list[Binding]) -> list[Leg]:
    """Bindings grouped by q-value, best first: one parallel leg per q (RFC 3261 §16.6).

    A request carries one Route set, so bindings of one q that registered
    through different Paths (RFC 3327) go in separate legs, one after the
    other, each with its Path as Route.
    """
    legs: list[Leg] = []
    last: tuple[float | None, tuple[str, ...]] | None = None
    for b in bindings:
        group = (b.q, tuple(b.path))
        if group != last:
            legs.append(
                Leg(targets=[], destination=f"{b.source_host}:{b.source_port}", routes=list(b.path))
            )
            last = group
        legs[-1].targets.append(_binding_target(b))
    return legs


def _binding_target(b: Binding) -> Target:
    """Where a request to binding ``b`` goes: its flow, or the first hop of its Path.

    Without a Path the request goes to the REGISTER's source (NAT). With one it
    is loose-routed to the first Path URI (RFC 3261 §16.6 step 7 on the Route
    set RFC 3327 §5.3 builds), over the REGISTER's connection when that URI
    names the address the REGISTER came from.
    """
    flow = Flow(
        host=b.source_host,
        port=b.source_port,
        transport=b.transport,
        connection_id=b.connection_id,
        edge_id=b.edge_id,
    )
    if not b.path:
        return flow.target(b.contact)
    try:
        first = target_of_uri(parse_address(b.path[0].encode("utf-8")).uri, b.contact)
    except ParseError:
        first = None
    if first is None or (first.host, first.port) == (b.source_host, b.source_port):
        return flow.target(b.contact)
    return first


def _hop_leg(hop: Hop, req: Request) -> Leg:
    target = Target(
        uri=hop.uri or req.uri.decode("utf-8", "replace"),
        host=hop.host,
        port=hop.port,
        transport=hop.transport,
    )
    return Leg(
        targets=[target],
        destination=f"{hop.host}:{hop.port}",
        carrier=hop.carrier,
        gateway=hop.gateway,
        dispatcher_set=hop.dispatcher_set,
        rate_prefix=hop.rate_prefix,
        rate_per_minute=hop.rate_per_minute,
        currency=hop.currency,
        billing_first=hop.billing_first,
        billing_step=hop.billing_step,
        destination_key=health_key(hop.transport, hop.host, hop.port),
    )


def _record_routes(
    env: Envelope, me: tuple[str, int], out: tuple[str, tuple[str, int]], sealed: bytes
) -> list[bytes]:
    """One lr URI, or two when the transports differ (RFC 5658 §3.3 double Record-Route).

    RFC 5658 §3.3: each URI names the interface on its side, so the top one
    (facing the callee) names the edge's listener for the outbound transport
    and the second (facing the caller) the socket the request came in on.
    """
    transport, (out_host, out_port) = out

    def uri(tp_name: str, host: str, port: int) -> bytes:
        tp = b"" if tp_name == "udp" else b";transport=" + tp_name.encode()
        return b"sip:%s:%d%s;lr;%s=%s" % (proxy._host(host), port, tp, _TOKEN_PARAM, sealed)

    inbound = uri(env.transport, *me)
    if transport == env.transport:
        return [inbound]
    return [uri(transport, out_host, out_port), inbound]


# -- small helpers ---------------------------------------------------------------


def _me(env: Envelope, policy: Policy) -> tuple[str, int]:
    return policy.edge_host(env.edge_id, env.local_host), env.local_port


def _listener(env: Envelope, policy: Policy, transport: str) -> tuple[str, int]:
    """The receiving edge's address for sending over ``transport`` (:func:`.hops.listener_for`)."""
    return listener_for(
        transport,
        inbound=env.transport,
        me=_me(env, policy),
        listeners=env.listeners,
        edge_id=env.edge_id,
        policy=policy,
    )


def _flow(env: Envelope) -> Flow:
    return Flow(
        host=env.source_host,
        port=env.source_port,
        transport=env.transport,
        connection_id=env.connection_id,
        edge_id=env.edge_id,
    )


def _source(env: Envelope) -> str:
    host = f"[{env.source_host}]" if ":" in env.source_host else env.source_host
    return f"{host}:{env.source_port}"


@functools.lru_cache(maxsize=4096)
def _unescape(user: bytes) -> str:
    # Memoised: an INVITE to a user reads it twice (location_keys, the decision).
    return unquote_to_bytes(user).decode("utf-8", "replace")


def _local_user(req: Request, policy: Policy) -> tuple[str, str] | None:
    uri = req.request_uri
    if not isinstance(uri, SipUri) or uri.user is None:
        return None
    domain = uri.host.decode("latin-1").lower()
    if not policy.is_local(domain):
        return None
    return _unescape(uri.user), domain


def _dialled(req: Request) -> tuple[str, str]:
    uri = req.request_uri
    if isinstance(uri, TelUri):
        return uri.number.decode("latin-1"), ""
    if isinstance(uri, SipUri):
        user = _unescape(uri.user) if uri.user is not None else ""
        return user, uri.host.decode("latin-1").lower()
    return "", ""


def _is_number(user: str) -> bool:
    digits = user[1:] if user.startswith("+") else user
    return digits.isdigit()


def _aor_text(uri: object) -> str:
    if isinstance(uri, SipUri):
        user = uri.user.decode("utf-8", "replace") + "@" if uri.user else ""
        return user + uri.host.decode("latin-1")
    return bytes(uri).decode("utf-8", "replace") if isinstance(uri, TelUri) else ""
