"""Contacts in, bindings out: RFC 3261 §10.3 steps 6-8, pure.

- :func:`validate_contacts`: step 6 (``*``) and the expiry of each contact;
- :func:`apply_bindings`: step 7, against the AoR's stored bindings;
- :func:`build_ok`: step 8, the 200 (OK) listing every current binding.
"""

from __future__ import annotations

import email.utils
import functools
import math
from typing import Final

from sipmesh_bus.records import Binding, BindingSet, live_bindings
from sipmesh_bus.schema import Envelope
from sipmsg import ParseError, Request, Response, make_response
from sipmsg._abnf import format_params, param, unquote
from sipmsg.address import Address, Star
from sipmsg.uri import parse_uri

from .model import (
    KEY_TTL_MARGIN,
    Admitted,
    Answer,
    ContactSpec,
    Policy,
    Registered,
    Replayed,
    answer,
)
from .replay import is_replay, remember

__all__ = ["apply_bindings", "build_ok", "new_binding", "validate_contacts"]

_ONE_HOUR: Final = 3600
# Contact parameters the registrar sets itself in the 200 (OK).
_OWN_PARAMS: Final = frozenset({b"expires", b"q"})


def validate_contacts(
    req: Request, policy: Policy
) -> tuple[ContactSpec, ...] | Star | Answer | None:
    """Check the Contacts and grant each its expiry (§10.3 steps 6 and 7).

    Returns:
        None for a query (no Contact), the Star, the contacts, or the answer:
        400 for ``*`` misused or a bad reg-id, 423 for too short an expiry.

    Raises:
        ParseError: a malformed Contact, ``expires`` or ``q`` (400).
    """
    if req.headers.get(b"contact") is None:
        return None
    contacts = req.contact
    header_expires = req.expires
    if isinstance(contacts, Star):
        # Step 6: "If the request has additional Contact fields or an expiration
        # time other than zero, the request is invalid, and the server MUST
        # return a 400 (Invalid Request)".
        if header_expires != 0:
            return answer(req, 400, "bad_request", reason=b"Contact * Needs Expires: 0")
        return contacts
    specs = []
    for address in contacts:
        # Step 7: the "expires" parameter, else the Expires header, else "a
        # locally-configured default value MUST be taken".
        requested = address.expires
        if requested is None:
            requested = header_expires if header_expires is not None else policy.default_expires
        # "If and only if the requested expiration interval is greater than zero
        # AND smaller than one hour AND less than a registrar-configured minimum,
        # the registrar MAY reject the registration with a response of 423".
        if 0 < requested < _ONE_HOUR and requested < policy.min_expires:
            return answer(
                req,
                423,
                "interval_too_brief",
                headers=((b"Min-Expires", b"%d" % policy.min_expires),),
            )
        spec = _spec(address, min(requested, policy.max_expires))
        if isinstance(spec, str):
            return answer(req, 400, "bad_request", reason=spec.encode("ascii"))
        specs.append(spec)
    return tuple(specs)


def _spec(address: Address, granted: int) -> ContactSpec | str:
    instance = param(address.params, b"+sip.instance")
    raw_reg_id = param(address.params, b"reg-id")
    reg_id = None
    if raw_reg_id is not None:
        # RFC 5626 §4.2: reg-id = "reg-id" EQUAL 1*DIGIT ; 1 to (2^31 - 1)
        if not raw_reg_id.isdigit() or not 0 < int(raw_reg_id) < 2**31:
            return "Bad reg-id"
        reg_id = int(raw_reg_id)
        if instance is None:
            # RFC 5626 §6: a reg-id without +sip.instance is an error (400).
            return "reg-id Without +sip.instance"
    others = tuple(p for p in address.params if p[0] not in _OWN_PARAMS)
    return ContactSpec(
        address=address,
        expires=granted,
        uri=bytes(address.uri).decode("ascii", "replace"),
        params=format_params(others).decode("utf-8", "replace"),
        q=address.q,
        instance=None if instance is None else unquote(instance).decode("utf-8", "replace"),
        reg_id=reg_id,
    )


def apply_bindings(
    admitted: Admitted,
    stored: BindingSet | None,
    envelope: Envelope,
    policy: Policy,
    *,
    now: float,
) -> Registered | Answer | Replayed:
    """Apply the request's contacts to the AoR's bindings (§10.3 step 7).

    An authenticated request is first checked against the nonce-counts the
    record holds (:mod:`.replay`); a write then records its own.

    Args:
        admitted: from :func:`sipmesh_registrar.core.admit`.
        stored: the AoR's value in KV, or None; expired bindings are ignored.
        envelope: where the REGISTER came from (stored for NAT traversal).
        policy: the contact limit.
        now: wall-clock seconds.

    Returns:
        What to store and the 200, or the answer: 500 for a request older than
        a stored binding, 403 when the AoR would hold too many contacts; or
        :class:`Replayed` for a nonce-count used before.
    """
    req = admitted.request
    if admitted.replay is not None and is_replay(stored, admitted.replay):
        return Replayed(nc=admitted.replay.nc)
    current = live_bindings(stored, now)
    contacts = admitted.contacts
    if contacts is None:
        # Not recorded: a query changes nothing (see the replay module).
        return _registered(admitted, stored, current, now, result="query", changed=False)
    call_id = req.call_id.decode("ascii", "replace")
    cseq = req.cseq.seq
    outbound = b"outbound" in (t.lower() for t in req.supported)
    if isinstance(contacts, Star):
        matched = current
        kept: list[Binding] = []
    else:
        matched, kept = _match(current, contacts, outbound)
    order = _ordering(matched, call_id, cseq)
    if order == "retransmission":
        # Bindings unchanged; still written when authenticated, to use up the
        # nonce-count.
        changed = admitted.replay is not None
        return _registered(admitted, stored, current, now, result="retransmission", changed=changed)
    if order == "out_of_order":
        return answer(req, 500, "out_of_order", reason=b"Out Of Order Request")
    if not isinstance(contacts, Star):
        kept += [_binding(s, req, envelope, now) for s in contacts if s.expires > 0]
    if len(kept) > policy.max_contacts:
        if not policy.evict_oldest:
            # No RFC code for this policy refusal. Kamailio answers 503, which
            # makes RFC 3263 clients fail over and retry in vain; §21.4.4 403:
            # "Authorization will not help, and the request SHOULD NOT be repeated."
            return answer(req, 403, "too_many_contacts", reason=b"Too Many Registered Contacts")
        kept.sort(key=lambda b: b.registered_at)
        del kept[: len(kept) - policy.max_contacts]
    return _registered(admitted, stored, kept, now, result="ok", changed=True)


def _match(
    current: list[Binding], contacts: tuple[ContactSpec, ...], outbound: bool
) -> tuple[list[Binding], list[Binding]]:
    """Split ``current`` into the bindings the contacts name and the others."""
    matched: list[Binding] = []
    kept: list[Binding] = []
    for binding in current:
        if any(_same(binding, spec, outbound) for spec in contacts):
            matched.append(binding)
        else:
            kept.append(binding)
    return matched, kept


def _same(binding: Binding, spec: ContactSpec, outbound: bool) -> bool:
    if outbound and spec.reg_id is not None and binding.reg_id is not None:
        # RFC 5626 §6: with outbound, a binding is identified by the AoR, the
        # instance-id and the reg-id; a new flow replaces the old one.
        return binding.instance == spec.instance and binding.reg_id == spec.reg_id
    # §10.3 step 7: "searches the list of current bindings using the URI
    # comparison rules" (§19.1.4).
    if binding.contact == spec.uri:
        return True
    try:
        return parse_uri(binding.contact.encode("ascii", "replace")) == spec.address.uri
    except ParseError:
        return False


def _ordering(matched: list[Binding], call_id: str, cseq: int) -> str:
    """``ok``, ``retransmission`` or ``out_of_order`` for the bindings a request touches.

    §10.3 step 7: "If the Call-ID value in the existing binding differs from the
    Call-ID value in the request, the binding MUST be removed if the expiration
    time is zero and updated otherwise. If they are the same, the registrar
    compares the CSeq value. If the value is higher than that of the existing
    binding, it MUST update or remove the binding as above. If not, the update
    MUST be aborted and the request fails." The RFC names no status: a lower
    CSeq is answered 500 (the request is stale, retrying it cannot help); an
    equal one is this very transaction again (a retransmission that reached
    another replica), answered 200 with the bindings unchanged, as Kamailio does.
    """
    same_call = [b.cseq for b in matched if b.call_id == call_id]
    if any(stored > cseq for stored in same_call):
        return "out_of_order"
    if any(stored == cseq for stored in same_call):
        return "retransmission"
    return "ok"


def _binding(spec: ContactSpec, req: Request, envelope: Envelope, now: float) -> Binding:
    user_agent = req.user_agent
    return new_binding(
        spec,
        envelope,
        now,
        call_id=req.call_id.decode("ascii", "replace"),
        cseq=req.cseq.seq,
        path=[bytes(a).decode("utf-8", "replace") for a in req.path],
        user_agent=None if user_agent is None else user_agent.decode("utf-8", "replace"),
    )


def new_binding(
    spec: ContactSpec,
    envelope: Envelope,
    now: float,
    *,
    call_id: str,
    cseq: int,
    path: list[str],
    user_agent: str | None,
) -> Binding:
    """The binding ``spec`` grants, with where the REGISTER came from (NAT, edge)."""
    return Binding(
        contact=spec.uri,
        expires_at=now + spec.expires,
        call_id=call_id,
        cseq=cseq,
        registered_at=now,
        source_host=envelope.source_host,
        source_port=envelope.source_port,
        transport=envelope.transport,
        edge_id=envelope.edge_id,
        connection_id=envelope.connection_id,
        q=spec.q,
        params=spec.params,
        instance=spec.instance,
        reg_id=spec.reg_id,
        path=path,
        user_agent=user_agent,
    )


def _registered(
    admitted: Admitted,
    stored: BindingSet | None,
    bindings: list[Binding],
    now: float,
    *,
    result: str,
    changed: bool,
) -> Registered:
    live = live_bindings(BindingSet(aor=admitted.aor, bindings=bindings), now)
    response = build_ok(admitted.request, live, now)
    if not changed:
        current = BindingSet(aor=admitted.aor, bindings=live)
        return Registered(response=response, result=result, bindings=current, changed=False)
    seen, floor = remember(stored, admitted.replay, now=now)
    # The key outlives its last binding and its last remembered nonce: an
    # unregistered AoR keeps its record (no binding) until its nonces expire,
    # or a replay of an earlier REGISTER would be accepted again.
    horizon = max([b.expires_at for b in live] + [e.until for e in seen] + [floor])
    if horizon <= now:
        return Registered(response=response, result=result, changed=True)
    record = BindingSet(aor=admitted.aor, bindings=live, seen_nonces=seen, nonce_floor=floor)
    return Registered(
        response=response,
        result=result,
        bindings=record,
        changed=True,
        ttl=math.ceil(horizon - now) + KEY_TTL_MARGIN,
    )


def _contact_value(binding: Binding, now: float) -> bytes:
    out = b"<" + binding.contact.encode("utf-8") + b">" + binding.params.encode("utf-8")
    if binding.q is not None:
        out += b";q=" + (f"{binding.q:.3f}".rstrip("0").rstrip(".") or "0").encode("ascii")
    # Binding.remaining(now), computed here: compiled, without a Python method call.
    left = binding.expires_at - now
    return out + b";expires=%d" % (0 if left <= 0 else max(1, int(left + 0.5)))


@functools.lru_cache(maxsize=4)
def _http_date(second: int) -> bytes:
    # One formatting per second, not per REGISTER (it was 1.7 % of the
    # registrar's CPU under load).
    return email.utils.formatdate(second, usegmt=True).encode("ascii")


def build_ok(req: Request, bindings: list[Binding], now: float) -> Response:
    """The 200 (OK) to a REGISTER (§10.3 step 8).

    "The response MUST contain Contact header field values enumerating all
    current bindings. Each Contact value MUST feature an "expires" parameter
    indicating its expiration interval chosen by the registrar. The response
    SHOULD include a Date header field." The request's Path values are echoed
    when the UA supports path (RFC 3327 §5.3), and ``Require: outbound`` is
    added when the request used outbound (RFC 5626 §6).

    Args:
        req: the REGISTER.
        bindings: the live bindings after the request.
        now: wall-clock seconds.
    """
    headers = [(b"Contact", _contact_value(b, now)) for b in bindings]
    headers.append((b"Date", _http_date(int(now))))
    supported = {t.lower() for t in req.supported}
    if b"path" in supported:
        headers += [(b"Path", v) for v in req.headers.get_lines(b"path")]
    if b"outbound" in supported and _uses_outbound(req):
        headers.append((b"Require", b"outbound"))
    return make_response(req, 200, headers=headers)


def _uses_outbound(req: Request) -> bool:
    contacts = req.contact
    return not isinstance(contacts, Star) and any(
        param(a.params, b"reg-id") is not None for a in contacts
    )
