"""Responses to proxied requests (RFC 3261 §16.7), decided from the echoed context.

Who does what (the edge holds the client transactions, the router holds no
state): the edge runs each ``Forward``'s parallel branches as one response
context and asks the router (``sip.route.response``, with the context) about
the best final once every branch has one (§16.7 step 6, the 503 -> 500
conversion included), about every 2xx at once, and about provisionals that
carry SDP, or every provisional but 100 when the Forward set
``all_responses`` (:func:`all_responses`: topology hiding, whose hidden Vias
only the router can restore). Other provisionals it relays itself, and notes
when the response context first rang (180/183): the final it asks about
carries that time (``Envelope.ringing_at``), which the router reports as
``CallEvent.ringing_at`` of ``answered``/``failed`` (:func:`_rang`), so plain
ringing costs no bus round trip and no JetStream write of its own. The router
then:

- passes the response upstream (hidden Vias and Record-Routes put back, then
  our Via removed, §16.7 step 3), publishing ``ringing`` (for a provisional it
  was asked about), ``answered`` or ``failed``;
- with the 2xx of an initial INVITE without hiding, tells the edge
  how to forward its ACK itself (``SendResponse.ack_route``, :mod:`.ackroute`);
- or, for a final 408 or 5xx of an INVITE when the context still holds legs,
  fails over: a new ``Forward`` of the stored request to the next leg, with a
  new branch (§16.7 step 5 lets a proxy "forward the request to additional
  targets"); 6xx never fails over (§16.7 step 5: "the proxy MUST NOT ... send
  ... to any other targets" after a 6xx is not RFC text, but a 6xx is global).
"""

from __future__ import annotations

import re

import msgspec

from sipmesh_bus.schema import CallEvent, Drop, Envelope, Forward, HangupSide, SendResponse
from sipmsg import LocalProtocolError, ParseError, Request, Response, make_response, parse

from . import ackroute, media, proxy
from .context import Flow, RouteContext, decode_context, encode_context, open_token, seal_token
from .events import call_event, dialog_key, dialog_record
from .model import Decision, Inputs

__all__ = ["all_responses", "decide_response", "edge_made", "fails_over"]


def fails_over(status: int) -> bool:
    """True for the finals that try the next leg: 408 and 5xx.

    What the edge makes up counts too: a branch's Timer B or Timer C expiry is
    a 408 (§16.8), a transport failure a 503 that reaches us as a 500 when it
    is the best response of its fork (§16.7 step 6: "If the only response
    that was received is a 503, the proxy SHOULD generate a 500 response").
    """
    return status == 408 or 500 <= status < 600


def all_responses(ctx: RouteContext) -> bool:
    """``Forward.all_responses`` for the transaction ``ctx`` describes.

    True for topology hiding only, where only the router can put back the
    caller's Vias (``RouteContext.hidden_vias``) before a provisional goes
    upstream; each such provisional costs one more bus round trip. Media
    needs no flag: the edge asks about every provisional with SDP anyway
    (the anchor rewrites it). The ``ringing`` event of an initial INVITE
    needs none either: the edge reports when the call rang with its final
    (``Envelope.ringing_at``, see :func:`_rang`).
    """
    return ctx.hide


def edge_made(resp: Response) -> bool:
    """True when the edge made ``resp`` up from the request it forwarded.

    The edge's 408 for a branch whose Timer B or Timer C fired (and its 503
    for a transport failure) is sipmsg's ``make_response`` of the branch's
    request, whose To tag is derived from that request (From tag, Call-ID,
    CSeq, top Via branch: all copied into the response). A UA picks its own
    random tag, so rebuilding the response the same way tells the two apart.
    """
    tag = resp.to_tag
    raw_to = resp.headers.get(b"to")
    if not tag or raw_to is None:
        return False
    untagged = re.sub(rb";\s*tag\s*=\s*" + re.escape(tag), b"", raw_to, count=1, flags=re.I)
    try:
        headers = resp.replace_header(b"To", untagged).headers
        req = Request(method=resp.cseq.method, uri=b"sip:edge.invalid", headers=headers)
        again = make_response(req, resp.status)
    except (ParseError, LocalProtocolError):
        return False
    return again.to_tag == tag


def decide_response(env: Envelope, resp: Response, inp: Inputs) -> Decision:
    """The reply to one response the edge asks about (see the module docstring).

    Raises:
        ParseError: the response has no Via below ours.
    """
    ctx = _context(env)
    if ctx is None:
        return _upstream(resp, None, "response_no_context")
    invite = ctx.method == "INVITE"
    status = resp.status
    if status < 200:
        events: tuple[CallEvent, ...] = ()
        if invite and not ctx.in_dialog and status in (180, 183):
            events = (call_event(ctx, "ringing", now=inp.now, detail=f"{ctx.attempt}"),)
        decision = _upstream(resp, ctx, "provisional", events=events, secret=inp.policy.secret)
        return _with_answer(decision, env, resp, ctx)
    if status < 300:
        if not invite:
            return _with_answer(_upstream(resp, ctx, "final"), env, resp, ctx)
        return _answered(env, resp, ctx, inp)
    if invite and fails_over(status) and ctx.remaining and ctx.request:
        failover = _failover(ctx, inp, status)
        # The next attempt's event describes another leg: the one that rang
        # gets its own ringing event (rare: a failover after a 180).
        rang = _rang(env, ctx)
        if rang is None:
            return failover
        ringing = call_event(ctx, "ringing", now=rang, detail=f"{ctx.attempt}")
        return msgspec.structs.replace(failover, events=(ringing, *failover.events))
    events = ()
    if invite:
        reason = resp.reason.decode("utf-8", "replace")
        side = _failed_by(resp, ctx)
        failed = call_event(
            ctx,
            "failed",
            now=inp.now,
            detail=f"{ctx.attempt}",
            status=status,
            reason=reason,
            hangup_side=side,
            ringing_at=_rang(env, ctx),
        )
        events = (failed,)
    decision = _upstream(resp, ctx, "failed" if invite else "final", events=events)
    if invite and ctx.media and not ctx.in_dialog:
        # The call attempt is over (a failure, or the 487 of a CANCEL): free
        # the session its offer opened. A failed re-INVITE keeps the call's.
        release = media.delete(call_id=ctx.call_id, instance=ctx.media_instance)
        decision = msgspec.structs.replace(decision, media_delete=release)
    return decision


def _answered(env: Envelope, resp: Response, ctx: RouteContext, inp: Inputs) -> Decision:
    """The 2xx of an INVITE: upstream with the callee's flow, ``answered``, the dialog record."""
    # The tags, Call-ID, CSeq and Contact are read from the 2xx as it came:
    # the edited copies have the same, but each edit starts a new parse cache.
    to_tag, from_tag = resp.to_tag, resp.from_tag
    record_route, token, callee, record_routes = _add_callee_flow(resp, env, ctx, inp)
    callee_tag = (to_tag or b"").decode("latin-1")
    caller_tag = (from_tag or b"").decode("latin-1")
    record = dialog_record(ctx, caller_tag=caller_tag, callee_tag=callee_tag, now=inp.now)
    answered = call_event(ctx, "answered", now=inp.now, detail="2xx", ringing_at=_rang(env, ctx))
    up = _upstream(
        resp,
        ctx,
        "answered",
        events=(answered,),
        secret=inp.policy.secret,
        record_route=record_route,
    )
    reply = up.reply
    hint = None
    if isinstance(reply, SendResponse) and ackroute.eligible(env, ctx):
        if record_routes is None:
            record_routes = resp.headers.get_all(b"record-route")
        hint = ackroute.ack_route(
            env,
            resp,
            ctx,
            tags=(to_tag, from_tag),
            record_routes=record_routes,
            token=token,
            callee=callee,
            policy=inp.policy,
        )
        if hint is not None:
            reply = msgspec.structs.replace(reply, ack_route=hint)
    decision = Decision(
        reply=reply,
        outcome=up.outcome,
        events=up.events,
        dialog_put=(dialog_key(ctx.call_id), record),
        setup_seconds=_setup(env, ctx),
    )
    # An anchored call's hint stands whatever the media service answers: the
    # SDP it swaps in is the 2xx's body, which the ACK's route does not read.
    # The body, Call-ID and tags the media service reads are the 2xx's as it came.
    return _with_answer(decision, env, resp, ctx)


def _rang(env: Envelope, ctx: RouteContext) -> float | None:
    """When the attempt a final of an initial INVITE ends first rang, if it did.

    The edge relays a 180 without SDP by itself and sets ``env.ringing_at``
    on the final (2xx, failure, or the 487 of a CANCEL) to when the response
    context first got a 180 or 183, by its clock. The final's event carries
    it (``CallEvent.ringing_at``) instead of a ``ringing`` event of its own,
    one JetStream write per call less; the CDR service takes the earliest of
    the two, so a 183 with SDP we did see and published as ``ringing`` agrees.
    Under topology hiding every provisional reached us and rang already.
    """
    at = env.ringing_at
    if at is None or ctx.in_dialog or ctx.hide or ctx.method != "INVITE":
        return None
    return at


def _failed_by(resp: Response, ctx: RouteContext) -> HangupSide | None:
    """Who ended an INVITE that failed, when the final response tells.

    - 487: the INVITE was cancelled (§9.2), and the only CANCEL whose 487
      reaches us is the caller's: the edge cancels other branches only after
      a 2xx or a 6xx (and then does not ask about them), and reports a branch
      it gave up on as a 408.
    - a 408 the edge made up: nobody answered in time and the edge gave up
      (Timer B/C, §16.8): neither party ended the call, the system did.
    """
    if ctx.in_dialog:
        return None
    if resp.status == 487:
        return "caller"
    if resp.status == 408 and edge_made(resp):
        return "system"
    return None


def _setup(env: Envelope, ctx: RouteContext) -> float | None:
    """INVITE to 2xx in seconds, both times by the edge's clock (it holds both transactions)."""
    if ctx.in_dialog or ctx.received_at <= 0 or env.received_at < ctx.received_at:
        return None
    return env.received_at - ctx.received_at


def _with_answer(decision: Decision, env: Envelope, resp: Response, ctx: RouteContext) -> Decision:
    """Ask the media service to anchor the answer in ``resp`` (a 183 or 2xx with SDP)."""
    if not ctx.media or not isinstance(decision.reply, SendResponse):
        return decision
    sdp = media.sdp_of(resp)
    if sdp is None:
        return decision
    natted = ctx.callee_is_phone and media.looks_natted(env.source_host, sdp=sdp)
    request = media.answer(
        call_id=ctx.call_id,
        msg=resp,
        sdp=sdp,
        instance=ctx.media_instance,
        natted_from=env.source_host if natted else None,
    )
    return msgspec.structs.replace(decision, media=request)


def _context(env: Envelope) -> RouteContext | None:
    if not env.context:
        return None
    try:
        return decode_context(env.context)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _upstream(
    resp: Response,
    ctx: RouteContext | None,
    outcome: str,
    *,
    events: tuple[CallEvent, ...] = (),
    secret: bytes = b"",
    record_route: bytes | None = None,
) -> Decision:
    """``resp`` on its way upstream (§16.7 step 3), its Record-Route first set
    to ``record_route`` when given (a 2xx: see :func:`_add_callee_flow`)."""
    up = resp
    if ctx is not None and (ctx.hidden_vias or ctx.hidden_record_routes):
        if record_route is not None:
            up = up.replace_header(b"Record-Route", record_route)
            record_route = None
        # First put back what hiding removed: with hidden Vias the response
        # holds our Via alone, which step 3 then removes.
        up = proxy.restore_response(up, ctx.hidden_vias, ctx.hidden_record_routes)
    try:
        if record_route is None:
            up = proxy.strip_top_via(up)
        else:
            up = proxy.strip_top_via_of_2xx(up, record_route=record_route)
    except ParseError:
        return Decision(
            reply=Drop(reason="response without a Via for upstream"), outcome="bad_response"
        )
    if ctx is not None and ctx.hide and secret:
        up = proxy.with_contact(up, secret=secret, host=ctx.self_host, port=ctx.self_port)
    return Decision(reply=SendResponse(data=bytes(up)), outcome=outcome, events=events)


def _failover(ctx: RouteContext, inp: Inputs, status: int) -> Decision:
    """Forward the stored request to the next leg, with a fresh branch on our Via."""
    leg, rest = ctx.remaining[0], ctx.remaining[1:]
    attempt = ctx.attempt + 1
    req = parse(ctx.request)
    if not isinstance(req, Request):
        return Decision(reply=Drop(reason="stored request unreadable"), outcome="bad_context")
    vias = req.headers.get_all(b"via")
    branch = proxy.branch_for(ctx.caller_branch.encode("latin-1"), req.call_id, attempt)
    top = proxy.replace_branch(vias[0], branch)
    req = req.replace_header(b"Via", b", ".join([top, *vias[1:]]))
    stored = bytes(req)
    data = bytes(proxy.add_routes(req, leg.routes)) if leg.routes else stored
    new = msgspec.structs.replace(
        ctx, request=stored if rest else b"", remaining=rest, attempt=attempt, leg=leg
    )
    attempt_event = call_event(
        new, "attempt", now=inp.now, detail=f"{ctx.caller_branch[-24:] or 'x'}-{attempt}"
    )
    fwd = Forward(
        data=data,
        targets=leg.targets,
        timer_c=inp.policy.timer_c,
        context=encode_context(new),
        all_responses=all_responses(new),
    )
    return Decision(reply=fwd, outcome=f"failover_{status}", events=(attempt_event,))


def _add_callee_flow(
    resp: Response, env: Envelope, ctx: RouteContext, inp: Inputs
) -> tuple[bytes | None, bytes, Flow | None, list[bytes] | None]:
    """Put the callee phone's flow into our Record-Route of the 2xx (NAT, see context.py).

    The caller builds its route set from the 2xx's Record-Route (§12.1.2), so
    its in-dialog requests carry the token with the callee's flow back to us.

    Returns:
        The 2xx's new Record-Route value (None: unchanged; :func:`_upstream`
        sets it in the copy it makes anyway), the sealed token now in our
        Record-Route, the callee's flow when the token holds it, and then the
        2xx's Record-Route values as they leave (None: unchanged, not read).
    """
    old = ctx.token.encode("ascii")
    if not ctx.callee_is_phone or not ctx.token:
        return None, old, None, None
    call_id = ctx.call_id.encode("utf-8", "surrogateescape")
    secret = inp.policy.secret
    token = open_token(old, secret=secret, call_id=call_id)
    if token is None:
        return None, old, None, None
    flow = Flow(
        host=env.source_host,
        port=env.source_port,
        transport=env.transport,
        connection_id=env.connection_id,
        edge_id=env.edge_id,
    )
    sealed = seal_token(msgspec.structs.replace(token, callee=flow), secret=secret, call_id=call_id)
    values = resp.headers.get_all(b"record-route")
    if not any(old in v for v in values):
        return None, old, None, values
    new_values = [v.replace(old, sealed) for v in values]
    return b", ".join(new_values), sealed, flow, new_values
