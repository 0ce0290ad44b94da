"""The registrar's decisions (RFC 3261 §10.3), pure: no await, no NATS, no clock.

The shell (:mod:`sipmesh_registrar.app`) calls, in order:

1. :func:`admit` with the parsed REGISTER, the subscriber table and ``now``:
   steps 1-6 of §10.3 and digest authentication (:mod:`.auth`). It returns an
   :class:`Answer` to send now (400, 401, 403, 404, 420, 423 ...) or an
   :class:`Admitted`.
2. :func:`apply_bindings` with the AoR's stored :class:`BindingSet` (step 7):
   a :class:`Registered` (the 200 and the set to store, which records the
   request's nonce-count: :mod:`.replay`), an :class:`Answer`, or
   :class:`Replayed` when the record already holds that nonce-count; the shell
   then sends :func:`replayed`. When the store refuses the write because
   another replica changed the AoR meanwhile, the shell reads again and calls
   :func:`apply_bindings` again.

Every decision carries ``result``, a short label the shell counts in metrics.
"""

from __future__ import annotations

from collections.abc import Mapping

from sipmesh_bus.records import BindingSet, SeenNonce, Subscriber, aor_key
from sipmsg import ParseError, Request, Response, make_response, validate_request
from sipmsg.digest import NonceManager
from sipmsg.uri import SipUri, unescape

from .auth import authenticate, challenge, replayed
from .bindings import apply_bindings, build_ok, validate_contacts
from .model import Admitted, Answer, ContactSpec, Policy, Registered, Replayed, answer

__all__ = [
    "SUPPORTED",
    "Admitted",
    "Answer",
    "BindingSet",
    "ContactSpec",
    "Policy",
    "Registered",
    "Replayed",
    "admit",
    "answer",
    "apply_bindings",
    "build_ok",
    "canonical_domain",
    "challenge",
    "replayed",
    "server_error",
]

SUPPORTED = (b"path", b"outbound")
"""The option-tags this registrar understands (§10.3 step 2, §8.2.2.3)."""
_SCHEMES = (b"sip", b"sips")


def canonical_domain(host: bytes, policy: Policy) -> str:
    """A host as a canonical domain: lower-case, no trailing dot, aliases applied.

    RFC 3261 §19.1.4: "Comparisons of scheme name, domain names, parameter
    names, and header names are case-insensitive".
    """
    name = host.decode("ascii", "replace").lower().rstrip(".")
    return policy.aliases.get(name, name)


def _served(domain: str, policy: Policy) -> bool:
    return not policy.domains or domain in policy.domains


def admit(
    req: Request,
    policy: Policy,
    *,
    subscribers: Mapping[str, Subscriber],
    nonces: NonceManager,
    now: float,
    entropy: bytes,
) -> Admitted | Answer:
    """Run RFC 3261 §10.3 steps 1-6 and digest authentication.

    Args:
        req: the parsed REGISTER.
        policy: domains, expiry limits, auth on/off.
        subscribers: KV key -> subscriber (the shell's watched cache).
        nonces: issues and checks the stateless nonces.
        now: wall-clock seconds.
        entropy: fresh random bytes for a new nonce.

    Returns:
        The response to send now, or the admitted request.

    Raises:
        ParseError: a header every response copies (From, To, CSeq, Call-ID,
            Via) is broken, so no response can be built; drop the request.
    """
    try:
        if policy.auth and req.headers.get(b"authorization") is None:
            # Headed for a 401: parse only what the challenge needs (To, the
            # Request-URI, and what make_response copies). The edge validated
            # the whole request before the bus; the authenticated REGISTER is
            # checked in full here. Saves ~13 us of the challenge's ~65 us.
            _check_scheme(req)
        else:
            validate_request(req, schemes=_SCHEMES)
    except ParseError as exc:
        return _bad_request(req, exc)
    if req.method != b"REGISTER":
        return answer(req, 405, "bad_request", headers=((b"Allow", b"REGISTER"),))
    try:
        return _admit(req, policy, subscribers=subscribers, nonces=nonces, now=now, entropy=entropy)
    except ParseError as exc:
        return _bad_request(req, exc)


def _check_scheme(req: Request) -> None:
    # §8.2.2.1: "it SHOULD reject the request with a 416 (Unsupported URI Scheme)".
    if req.uri.partition(b":")[0].lower() not in _SCHEMES:
        raise ParseError("unsupported URI scheme", status_hint=416)
    uri = req.request_uri
    if isinstance(uri, SipUri) and uri.headers:
        raise ParseError("bad Request-URI: it carries headers")


def _bad_request(req: Request, exc: ParseError) -> Answer:
    status = exc.status_hint if exc.status_hint in (400, 416) else 400
    reason = "".join(c if " " <= c < "\x7f" else "?" for c in exc.reason[:80])
    return answer(req, status, "bad_request", reason=reason.encode("ascii"))


def _admit(
    req: Request,
    policy: Policy,
    *,
    subscribers: Mapping[str, Subscriber],
    nonces: NonceManager,
    now: float,
    entropy: bytes,
) -> Admitted | Answer:
    to_uri = req.to.uri
    if not isinstance(to_uri, SipUri) or not to_uri.user:
        # §10.2: To "contains the address of record ... This address-of-record
        # MUST be a SIP URI or SIPS URI"; and an AoR without a user names nobody.
        return answer(req, 400, "bad_request", reason=b"Bad To: No SIP AoR")
    domain = canonical_domain(to_uri.host, policy)
    ruri = req.request_uri
    assert isinstance(ruri, SipUri)  # validate_request allowed sip and sips only
    target = canonical_domain(ruri.host, policy)
    # Step 1: is the Request-URI's domain ours; step 3: "If the address-of-record
    # is not valid for the domain in the Request-URI, the registrar MUST send a
    # 404 (Not Found) response." A Request-URI naming no served domain (a bare
    # IP the phone was configured with) is accepted for the To domain.
    if not _served(domain, policy) or (target != domain and _served(target, policy)):
        return answer(req, 404, "not_found", reason=b"Domain Not Served")
    # Step 2: "the registrar MUST process the Require header field values".
    unknown = tuple(tag for tag in req.require if tag.lower() not in SUPPORTED)
    if unknown:
        return answer(req, 420, "bad_extension", headers=((b"Unsupported", b", ".join(unknown)),))
    try:
        user = unescape(to_uri.user).decode("utf-8")
    except UnicodeDecodeError:
        return answer(req, 400, "bad_request", reason=b"Bad To: User Is Not UTF-8")
    realm = domain.encode("utf-8")
    replay: SeenNonce | None = None
    if policy.auth:
        auth = authenticate(
            req,
            user=user,
            realm=realm,
            subscribers=subscribers,
            nonces=nonces,
            policy=policy,
            now=now,
            entropy=entropy,
        )
        if isinstance(auth, Answer):
            return auth
        replay = auth
    contacts = validate_contacts(req, policy)
    if isinstance(contacts, Answer):
        return contacts
    # Step 5: the AoR in canonical form, "all URI parameters MUST be removed
    # (including the user-param), and any escaped characters MUST be converted
    # to their unescaped form".
    return Admitted(
        request=req,
        aor=f"sip:{user}@{domain}",
        key=aor_key(user, domain),
        realm=realm,
        contacts=contacts,
        replay=replay,
    )


def server_error(req: Request, status: int, *, retry_after: int | None = None) -> Response:
    """A 5xx for a failure of ours (NATS down, too much contention).

    RFC 3261 §21.5.4: a 503 server "MAY indicate when the client should retry
    the request in a Retry-After header field".
    """
    headers = () if retry_after is None else ((b"Retry-After", b"%d" % retry_after),)
    return make_response(req, status, headers=headers)
