"""The usual REGISTER answered from raw header values: the registrar's hot path.

:func:`sipmesh_registrar.core.admit` and :func:`~sipmesh_registrar.core.apply_bindings`
decide every REGISTER, good or bad, through typed values and build each answer
with ``sipmsg.make_response``. That costs ~55 us for a 401 and ~115 us for an
authenticated REGISTER, most of it spent re-validating and re-serialising
headers the answer copies unchanged. :class:`FastPath` answers the two
messages of a normal registration, the first REGISTER (401) and the one with
good credentials (200; or the only REGISTER when authentication is off), for
the same bytes at a fraction of the cost:

- the answer's Via, From, To, Call-ID and CSeq lines are copied from the
  request's raw values (RFC 3261 §8.2.6.2: they "MUST equal" the request's),
  the To tag derived as ``make_response`` derives it;
- what is stable per phone (its To, From without its tag, top Via without its
  branch, Contact, the Request-URI) is parsed by the same ``sipmsg`` functions
  as the typed accessors, once per distinct value (bounded memos of pure
  functions);
- the WWW-Authenticate value is a per-realm template around the fresh nonce.

Whatever it does not handle exactly as the typed path would (any failure,
``Contact: *``, a query, Path, a nonce-count seen before, a conflict of
ordering ...) it hands back as None, and the caller runs the typed path: so
every answer but the two common ones, and every error, comes from
:mod:`.core` unchanged. It accepts only what the typed path accepts (every
check of the typed path is made, some in another order, all of them only able
to step aside); ``tests/test_registrar_fastpath.py`` compares the two byte for
byte.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import msgspec

from sipmesh_bus.records import Binding, BindingSet, SeenNonce, Subscriber, aor_key
from sipmesh_bus.schema import Envelope
from sipmsg import ParseError, Request
from sipmsg._abnf import TOKEN_CHARS, format_params, param, unquote
from sipmsg.address import Address, Star, parse_address, parse_contact_list
from sipmsg.digest import NonceManager, challenges_for, hash_family, parse_credentials, verify
from sipmsg.uri import SipUri, parse_uri, unescape
from sipmsg.via import Via, parse_via_list

from .bindings import _contact_value, _http_date, _match, _ordering, new_binding
from .core import canonical_domain
from .model import KEY_TTL_MARGIN, ContactSpec, Policy
from .replay import counted, remember, seen_nonce

__all__ = ["FastAdmitted", "FastPath", "FastRegistered", "branch_template"]

T = TypeVar("T")

_MEMO_SIZE = 32_768  # not Final: mypyc would inline it, and a test lowers it
#: Entries per memo, about one per phone (To, From, Contact). Past it the
#: older half is dropped; a miss costs only the typed parse.
_ONE_HOUR: Final = 3600
_OWN_PARAMS: Final = frozenset({b"expires", b"q"})
_SCHEMES: Final = (b"sip", b"sips")
_SENTINEL: Final = b"SIPMESHNONCESENTINEL"
_DUMMY_FAMILIES: Final = frozenset({b"MD5", b"SHA-256"})
_STATUS_401: Final = b"SIP/2.0 401 Unauthorized\r\n"
_STATUS_200: Final = b"SIP/2.0 200 OK\r\n"
_END: Final = b"Content-Length: 0\r\n\r\n"
# Headers whose presence sends a request to the typed path: Content-Type
# (validate_request parses it), Path (stored parsed), Require (420 checks).
_TYPED_ONLY: Final = (b"content-type", b"path", b"require")


class _Memo(Generic[T]):
    """A pure parse function's results by input, bounded."""

    __slots__ = ("_fn", "_table")

    def __init__(self, fn: Callable[[bytes], T]) -> None:
        self._fn = fn
        self._table: dict[bytes, T] = {}

    def __call__(self, raw: bytes) -> T:
        table = self._table
        value = table.get(raw)
        if value is None:
            value = self._fn(raw)  # raises as the function does; nothing is kept then
            _bound(table)
            table[raw] = value
        return value


def _bound(table: dict[Any, Any]) -> None:
    """Make room in a memo: drop its older half (dicts keep insertion order)."""
    if len(table) >= _MEMO_SIZE:
        for key in list(itertools.islice(table, len(table) // 2)):
            del table[key]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Contact:
    """One Contact address as a binding needs it (its expiry granted per request)."""

    address: Address
    requested: int | None
    #: Its ``expires`` parameter.
    uri: str
    params: str
    q: float | None
    instance: str | None
    reg_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _AoR:
    """What a To value names: the AoR (§10.3 step 5) and its KV key."""

    user: str
    domain: str
    tag: bytes | None
    aor: str
    key: str
    username: bytes
    #: ``user`` as a digest username.


class FastAdmitted(msgspec.Struct, frozen=True, kw_only=True):
    """An admitted REGISTER with plain contacts, ready for its bindings.

    A Struct, not a dataclass: built once per REGISTER, it is ten times cheaper.
    """

    aor: str
    key: str
    head: bytes
    #: The answer's copied lines: Via ... CSeq, CRLF-terminated.
    contacts: tuple[ContactSpec, ...]
    #: Each contact with its granted expiry.
    replay: SeenNonce | None
    #: The nonce-count to record (None: authentication is off).
    call_id: str
    cseq: int
    outbound: bool
    #: The UA supports outbound (RFC 5626): bindings match by instance and reg-id.
    require_outbound: bool
    #: The 200 carries ``Require: outbound`` (a reg-id was used).
    user_agent: str | None


class FastRegistered(msgspec.Struct, frozen=True, kw_only=True):
    """Store ``record`` (None: delete the key) with ``ttl``, then send ``response``."""

    response: bytes
    record: BindingSet | None
    ttl: int


def _aor_of(policy: Policy) -> Callable[[bytes], _AoR | None]:
    def aor(raw: bytes) -> _AoR | None:
        to = parse_address(raw)
        uri = to.uri
        if not isinstance(uri, SipUri) or not uri.user:
            return None
        try:
            user = unescape(uri.user).decode("utf-8")
        except UnicodeDecodeError:
            return None
        domain = canonical_domain(uri.host, policy)
        if not domain:
            return None  # no KV key (aor_key refuses it): the typed path decides
        return _AoR(
            user=user,
            domain=domain,
            tag=to.tag,
            aor=f"sip:{user}@{domain}",
            key=aor_key(user, domain),
            username=user.encode("utf-8"),
        )

    return aor


def _contacts(raw: bytes) -> tuple[_Contact, ...] | None:
    parsed = parse_contact_list(raw)
    if isinstance(parsed, Star):
        return None
    out = []
    for address in parsed:
        instance = param(address.params, b"+sip.instance")
        raw_reg_id = param(address.params, b"reg-id")
        reg_id = None
        if raw_reg_id is not None:
            if not raw_reg_id.isdigit() or not 0 < int(raw_reg_id) < 2**31 or instance is None:
                return None  # the typed path answers 400
            reg_id = int(raw_reg_id)
        others = tuple(p for p in address.params if p[0] not in _OWN_PARAMS)
        out.append(
            _Contact(
                address=address,
                requested=address.expires,
                uri=bytes(address.uri).decode("ascii", "replace"),
                params=format_params(others).decode("utf-8", "replace"),
                q=address.q,
                instance=None if instance is None else unquote(instance).decode("utf-8", "replace"),
                reg_id=reg_id,
            )
        )
    return tuple(out)


def branch_template(line: bytes) -> tuple[bytes, bytes] | None:
    """``line`` with its branch value replaced by a fixed token, and that value.

    None unless the line has the plain shape where the branch value cannot
    change how the rest parses: one via-parm (no comma), no quotes, no white
    space but the one after sent-protocol, one ``branch`` parameter whose value
    is a token. sipmsg's Via parser then checks the value for token characters
    only, so the line parses exactly when its template does, and the template
    is the same for every request of a phone.
    """
    if b"," in line or b'"' in line or b"\t" in line or line.count(b" ") != 1:
        return None
    at = line.find(b";branch=")
    if at < 0 or line.lower().count(b";branch=") != 1:
        return None
    start = at + 8
    end = line.find(b";", start)
    if end < 0:
        end = len(line)
    branch = line[start:end]
    if not branch or branch.translate(None, TOKEN_CHARS):
        return None
    return line[:start] + b"z9hG4bK" + line[end:], branch


def _tag_template(value: bytes) -> tuple[bytes, bytes] | None:
    """A From value with its tag swapped for a fixed token, and the tag.

    From's tag changes with every call while the rest stays (RFC 3261 §8.1.1.3);
    the template is what the memo keeps. None unless the tag is the one
    ``tag`` parameter after the closing ``>``, a token, in a tail without
    quotes or white space: sipmsg's address parser then checks that value for
    token characters only, so the value parses exactly when its template does.
    """
    gt = value.rfind(b">")
    if gt < 0:
        return None
    tail = value[gt + 1 :]
    if b'"' in tail or b" " in tail or b"\t" in tail:
        return None
    items = tail.split(b";")
    if items[0]:
        return None
    found = 0
    tag = b""
    for i in range(1, len(items)):
        name, eq, val = items[i].partition(b"=")
        if name.lower() == b"tag":
            if found or not eq or not val or val.translate(None, TOKEN_CHARS):
                return None
            found, tag = i, val
            items[i] = name + b"=x"
    if not found:
        return None
    return value[: gt + 1] + b";".join(items), tag


def _request_uri(raw: bytes) -> bytes | None:
    """The Request-URI's host, None when the typed path must answer (416, 400)."""
    if raw.partition(b":")[0].lower() not in _SCHEMES:
        return None
    uri = parse_uri(raw)
    if not isinstance(uri, SipUri) or uri.headers:
        return None
    return uri.host


def _live(bindings: list[Binding], now: float) -> list[Binding]:
    """``records.live_bindings`` of a list, compiled: the same bindings in the same order."""
    live = [b for b in bindings if b.expires_at > now]
    if len(live) > 1:
        live.sort(key=_best_first)  # stable, as there
    return live


def _horizon(live: list[Binding], seen: list[SeenNonce], floor: float) -> float:
    """``max`` of the bindings' expiries, the nonces' ``until`` and ``floor``, in that order.

    What ``max([...] + [...] + [floor])`` gives (the first of equal values,
    ``>`` as the only comparison), without building the three lists.
    """
    found = False
    top = 0.0
    for b in live:
        if not found or b.expires_at > top:
            top, found = b.expires_at, True
    for e in seen:
        if not found or e.until > top:
            top, found = e.until, True
    return floor if not found or floor > top else top


def _best_first(b: Binding) -> tuple[float, float]:
    """``records.live_bindings``' order: best q first, none last, then the newest."""
    return (-(b.q if b.q is not None else -1.0), -b.registered_at)


class FastPath:
    """The hot path of one registrar replica; its memos are its only state.

    Args:
        policy: the registrar's settings.
        nonces: the nonce issuer and checker the replicas share.
        keep_issued: remember the nonces this instance's 401s give out, so that
            their answers skip the HMAC check. False where the answers go to
            another process (the edge's challenges, ``sipmesh_edge.challenge``):
            there the table would only fill up.
    """

    def __init__(self, policy: Policy, nonces: NonceManager, *, keep_issued: bool = True) -> None:
        self.policy = policy
        self.nonces = nonces
        self._keep_issued = keep_issued
        self._to = _Memo(_aor_of(policy))
        self._from = _Memo(parse_address)
        self._contact = _Memo(_contacts)
        self._granted_memo: dict[tuple[bytes, int | None], tuple[ContactSpec, ...] | None] = {}
        self._via = _Memo(parse_via_list)
        self._ruri = _Memo(_request_uri)
        self._target = _Memo(lambda host: canonical_domain(host, policy))
        self._templates: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self._issued: dict[bytes, tuple[bytes, float]] = {}
        # nonce -> (realm, issue time) for the nonces this replica's 401s gave
        # out and nobody answered yet: their answer needs no HMAC check.

    # -- admission ------------------------------------------------------------

    def admit(
        self,
        req: Request,
        *,
        subscribers: Mapping[str, Subscriber],
        now: float,
        entropy: bytes,
        top_via: bytes | None = None,
    ) -> bytes | FastAdmitted | None:
        """The 401 for a REGISTER without credentials, the admitted REGISTER, or None.

        None: let :func:`sipmesh_registrar.core.admit` decide (anything else).
        ``top_via``: the first Via line's value for the answer in place of the
        request's (the edge's stamped one, ``sipmesh_edge.challenge``).
        """
        try:
            return self._admit(req, subscribers, now, entropy, top_via)
        except ParseError:
            return None

    def _admit(
        self,
        req: Request,
        subscribers: Mapping[str, Subscriber],
        now: float,
        entropy: bytes,
        top_via: bytes | None,
    ) -> bytes | FastAdmitted | None:
        policy = self.policy
        if req.method != b"REGISTER":
            return None
        headers = req.headers
        keys = headers.keys()
        for key in _TYPED_ONLY:
            if key in keys:
                return None
        host = self._ruri(req.uri)
        n_to, raw_to = headers.single(b"to")
        n_from, raw_from = headers.single(b"from")
        if host is None or n_to != 1 or n_from != 1 or raw_to is None or raw_from is None:
            return None
        aor = self._to(raw_to)
        if aor is None:
            return None
        domain = aor.domain
        served = policy.domains
        if served and domain not in served:
            return None
        target = self._target(host)
        if target != domain and (not served or target in served):
            return None  # §10.3 step 3: 404
        plain = _tag_template(raw_from)
        if plain is None:
            from_tag = self._from(raw_from).tag
        else:
            self._from(plain[0])
            from_tag = plain[1]
        cseq = req.cseq
        call_id = req.call_id
        vias = headers.get_lines(b"via")
        if not vias:
            return None
        top = self._top_branch(vias)
        realm = domain.encode("utf-8")
        to = raw_to
        if aor.tag is None:
            # As sipmsg.make_response derives it: the same request, the same tag.
            seed = b"|".join((call_id, from_tag or b"", b"%d" % cseq.seq, top or b"", b"REGISTER"))
            to += b";tag=" + hashlib.blake2s(seed, digest_size=8).hexdigest().encode()
        lines = vias if top_via is None else [top_via, *vias[1:]]
        head = b"".join(
            [b"Via: " + v + b"\r\n" for v in lines]
            + [
                b"From: " + raw_from + b"\r\nTo: " + to + b"\r\nCall-ID: " + call_id,
                b"\r\nCSeq: " + headers.single(b"cseq")[1] + b"\r\n",  # type: ignore[operator]
            ]
        )
        if not policy.auth:
            return self._admitted(req, aor, head, None)
        if not headers.get_lines(b"authorization"):
            www = self._www_authenticate(realm, now, entropy)
            return None if www is None else _STATUS_401 + head + www + _END
        replay = self._authenticate(req, aor=aor, realm=realm, subscribers=subscribers, now=now)
        return None if replay is None else self._admitted(req, aor, head, replay)

    def _top_branch(self, vias: list[bytes]) -> bytes | None:
        """The top Via's branch; every Via line checked as ``req.via`` checks them."""
        top: bytes | None = None
        for i, line in enumerate(vias):
            plain = branch_template(line)
            if plain is None:
                parsed: tuple[Via, ...] = parse_via_list(line)
                branch = parsed[0].branch
            else:
                self._via(plain[0])
                branch = plain[1]
            if i == 0:
                top = branch
        return top

    def _www_authenticate(self, realm: bytes, now: float, entropy: bytes) -> bytes | None:
        """A WWW-Authenticate line per algorithm (RFC 8760 §2.4), as auth.challenge has them."""
        templates = self._templates.get(realm)
        if templates is None:
            templates = []
            for c in challenges_for(realm, _SENTINEL, algorithms=self.policy.algorithms):
                value = bytes(c)
                if value.count(_SENTINEL) != 1:
                    return None  # not a template (cannot happen with lower-case realms)
                before, _, after = value.partition(_SENTINEL)
                templates.append((b"WWW-Authenticate: " + before, after + b"\r\n"))
            if len(self._templates) >= 256:
                self._templates.clear()
            self._templates[realm] = templates
        nonce = self.nonces.issue(now, entropy=entropy, realm=realm)
        if self._keep_issued:
            issued = self._issued
            _bound(issued)
            # As NonceManager.issued_at reads the time back: whole milliseconds.
            issued[nonce] = (realm, int(now * 1000) / 1000.0)
        return b"".join([before + nonce + after for before, after in templates])

    def _issued_at(self, nonce: bytes, realm: bytes) -> float | None:
        """``NonceManager.issued_at``, without its HMAC for a nonce issued here.

        A nonce found in the table is one :meth:`_www_authenticate` issued
        (the HMAC would only say so again); it is forgotten at its first
        answer, later ones (and other replicas' nonces) are checked in full.
        """
        known = self._issued.pop(nonce, None)
        if known is not None and known[0] == realm:
            return known[1]
        return self.nonces.issued_at(nonce, realm=realm)

    def _authenticate(
        self,
        req: Request,
        *,
        aor: _AoR,
        realm: bytes,
        subscribers: Mapping[str, Subscriber],
        now: float,
    ) -> SeenNonce | None:
        """auth.authenticate's acceptance; None for anything it would not accept."""
        lines = req.headers.get_lines(b"authorization")
        # One line (the usual case) is parsed as req.authorization would.
        found = (parse_credentials(lines[0]),) if len(lines) == 1 else req.authorization
        creds = None
        for c in found:
            if c.scheme.lower() == b"digest" and c.realm == realm:
                creds = c
                break
        if creds is None or creds.uri != req.uri:
            return None
        nonces = self.nonces
        # NonceManager.check, with the one HMAC check (none for a nonce issued
        # here) that also gives the expiry.
        issued = self._issued_at(creds.nonce, realm)
        if issued is None or not -nonces.max_skew <= now - issued <= nonces.ttl:
            return None
        if creds.qop is None or creds.qop.lower() != b"auth" or creds.nc is None:
            return None
        family = hash_family(creds.algorithm)
        if family not in _DUMMY_FAMILIES:
            return None
        if creds.username == aor.username:
            subscriber = subscribers.get(aor.key)
        else:
            return None  # the typed path answers 403 (or 401) for someone else's AoR
        if subscriber is None or not subscriber.enabled or subscriber.user != aor.user:
            return None
        ha1 = (subscriber.ha1_md5 if family == b"MD5" else subscriber.ha1_sha256).encode()
        if not verify(creds, method=req.method, ha1=ha1, body=req.body):
            return None
        return seen_nonce(creds.nonce, creds.nc, until=issued + nonces.ttl + nonces.max_skew)

    def _admitted(
        self, req: Request, aor: _AoR, head: bytes, replay: SeenNonce | None
    ) -> FastAdmitted | None:
        # What validate_request checks beyond _admit; the typed path sorts out failures.
        if req.cseq.method != b"REGISTER":
            return None
        _ = req.max_forwards
        contacts = self._granted(req)
        if contacts is None:
            return None
        supported = {t.lower() for t in req.supported}
        outbound = b"outbound" in supported
        user_agent = req.user_agent
        return FastAdmitted(
            aor=aor.aor,
            key=aor.key,
            head=head,
            contacts=contacts,
            replay=replay,
            call_id=req.call_id.decode("ascii", "replace"),
            cseq=req.cseq.seq,
            outbound=outbound,
            require_outbound=outbound and any(c.reg_id is not None for c in contacts),
            user_agent=None if user_agent is None else user_agent.decode("utf-8", "replace"),
        )

    def _granted(self, req: Request) -> tuple[ContactSpec, ...] | None:
        """Each contact with the expiry granted (§10.3 step 7), as validate_contacts does."""
        lines = req.headers.get_lines(b"contact")
        if not lines:
            return None  # a query
        header_expires = req.expires
        if len(lines) != 1:
            out: list[ContactSpec] = []
            for line in lines:
                specs = self._grant(line, header_expires)
                if specs is None:
                    return None
                out += specs
            return tuple(out)
        memo = self._granted_memo
        key = (lines[0], header_expires)
        specs = memo.get(key)
        if specs is None:
            specs = self._grant(lines[0], header_expires)
            if specs is None:
                return None
            _bound(memo)
            memo[key] = specs
        return specs

    def _grant(self, line: bytes, header_expires: int | None) -> tuple[ContactSpec, ...] | None:
        parsed = self._contact(line)
        if parsed is None:
            return None
        policy = self.policy
        out = []
        for contact in parsed:
            requested = contact.requested
            if requested is None:
                requested = header_expires if header_expires is not None else policy.default_expires
            if 0 < requested < _ONE_HOUR and requested < policy.min_expires:
                return None  # 423
            out.append(
                ContactSpec(
                    address=contact.address,
                    expires=min(requested, policy.max_expires),
                    uri=contact.uri,
                    params=contact.params,
                    q=contact.q,
                    instance=contact.instance,
                    reg_id=contact.reg_id,
                )
            )
        return tuple(out)

    # -- bindings -----------------------------------------------------------------

    def apply(
        self, admitted: FastAdmitted, stored: BindingSet | None, envelope: Envelope, *, now: float
    ) -> FastRegistered | None:
        """The record to write and the 200, as apply_bindings gives them; None otherwise.

        None for a replayed nonce-count, a retransmission or an out-of-order
        request, too many contacts: :func:`sipmesh_registrar.core.apply_bindings`
        answers those.
        """
        replay = admitted.replay
        if replay is None:
            seen, floor = remember(stored, None, now=now)
        else:
            count = counted(stored, replay, now=now)
            if count is None:
                return None  # a replay: the typed path answers it
            seen, floor = count
        contacts = admitted.contacts
        current = [] if stored is None else _live(stored.bindings, now)
        matched, kept = _match(current, contacts, admitted.outbound)
        if _ordering(matched, admitted.call_id, admitted.cseq) != "ok":
            return None
        for spec in contacts:
            if spec.expires > 0:
                kept.append(
                    new_binding(
                        spec,
                        envelope,
                        now,
                        call_id=admitted.call_id,
                        cseq=admitted.cseq,
                        path=[],
                        user_agent=admitted.user_agent,
                    )
                )
        if len(kept) > self.policy.max_contacts:
            return None
        live = _live(kept, now)
        # §10.3 step 8: "The response MUST contain Contact header field values
        # enumerating all current bindings" (bindings.build_ok's lines).
        lines = [b"Contact: " + _contact_value(b, now) + b"\r\n" for b in live]
        lines.append(b"Date: " + _http_date(int(now)) + b"\r\n")
        if admitted.require_outbound:
            lines.append(b"Require: outbound\r\n")
        response = _STATUS_200 + admitted.head + b"".join(lines) + _END
        horizon = _horizon(live, seen, floor)
        if horizon <= now:
            return FastRegistered(response=response, record=None, ttl=0)
        record = BindingSet(aor=admitted.aor, bindings=live, seen_nonces=seen, nonce_floor=floor)
        return FastRegistered(
            response=response, record=record, ttl=math.ceil(horizon - now) + KEY_TTL_MARGIN
        )
