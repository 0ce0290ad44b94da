"""Digest access authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

Three layers, all pure:

- value types :class:`Challenge` (a ``WWW-Authenticate`` / ``Proxy-Authenticate``
  value) and :class:`Credentials` (an ``Authorization`` / ``Proxy-Authorization``
  value), with :func:`parse_challenge`, :func:`parse_credentials` and ``bytes()``;
- the hash arithmetic: :func:`ha1`, :func:`compute_response`, :func:`verify` for a
  server that stores HA1 and never passwords, :func:`build_authorization` for a
  client;
- stateless nonces (:class:`NonceManager` in ``_nonce.py``), re-exported here.

A SIP header value holds exactly one challenge or one set of credentials:
several challenges travel as several header lines (RFC 8760 §2.4: one header
field per algorithm, the most preferred first).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

from ._abnf import TOKEN, WS, is_token, quote, slot_setters, split_comma, unquote
from ._errors import LocalProtocolError, ParseError
from ._native import python_class
from ._nonce import NonceManager, NonceStatus, nc_key

__all__ = [
    "Challenge",
    "Credentials",
    "NonceManager",
    "NonceStatus",
    "build_authorization",
    "challenge_for",
    "challenges_for",
    "compute_response",
    "ha1",
    "ha1_md5",
    "ha1_sha256",
    "hash_family",
    "nc_key",
    "parse_challenge",
    "parse_credentials",
    "userhash",
    "verify",
]

AuthParams = tuple[tuple[bytes, bytes], ...]
"""auth-params in wire order: (lower-cased name, raw value, quotes included)."""

# RFC 7616 §3.2 / RFC 8760 §2: "algorithm" names to hashlib names. The -sess
# variants hash with the same function; they only change how HA1 is derived.
_HASHES: Final[dict[bytes, str]] = {
    b"MD5": "md5",
    b"SHA-256": "sha256",
    b"SHA-512-256": "sha512_256",
}
_SESS: Final = b"-SESS"
_QOPS: Final = (b"auth", b"auth-int")

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
_QUOTED_RE: Final = re.compile(
    rb'\A"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"\Z'
)
# nc-value = 8LHEX (RFC 3261 §25); upper-case hex is tolerated on input.
_NC_RE: Final = re.compile(rb"\A[0-9A-Fa-f]{8}\Z")
_SCHEME_RE: Final = re.compile(rb"\A([^ \t]+)(?:[ \t]+(.*))?\Z", re.DOTALL)
# The usual shape of one auth-param, token "=" (token / quoted-string), with
# no white space around "=". re.split on it yields the separators between
# the params next to the names and values; when every separator is a comma
# with optional blanks the list has the usual shape (see _fast_auth_params).
_QDTEXT: Final = rb'[^"\\\x00-\x08\x0a-\x1f\x7f]*'
_QUOTED: Final = rb'"' + _QDTEXT + rb"(?:\\[\x00-\x09\x0b\x0c\x0e-\x7f]" + _QDTEXT + rb')*"'
_AUTH_PARAM_RE: Final = re.compile(rb"(" + TOKEN + rb")=(" + TOKEN + rb"|" + _QUOTED + rb")")

# RFC 2617 §3.2.2 / RFC 3261 §25 dig-resp: what a Digest response must carry.
_CREDENTIALS_REQUIRED: Final = (b"username", b"realm", b"nonce", b"uri", b"response")
_CREDENTIALS_REQUIRED_SET: Final = frozenset(_CREDENTIALS_REQUIRED)
_CHALLENGE_KNOWN: Final = frozenset(
    {b"realm", b"nonce", b"opaque", b"stale", b"algorithm", b"qop", b"domain", b"userhash"}
)
_CREDENTIALS_KNOWN: Final = frozenset(
    {
        b"username",
        b"realm",
        b"nonce",
        b"uri",
        b"response",
        b"algorithm",
        b"cnonce",
        b"opaque",
        b"qop",
        b"nc",
        b"userhash",
    }
)


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """One ``WWW-Authenticate`` or ``Proxy-Authenticate`` value (RFC 3261 §25 challenge).

    String fields hold the unquoted values. For a scheme other than Digest
    only ``scheme`` and ``params`` are meaningful.
    """

    scheme: bytes = b"Digest"
    #: The auth-scheme as sent; compare case-insensitively.
    realm: bytes = b""
    nonce: bytes = b""
    opaque: bytes | None = None
    stale: bool = False
    #: True when the challenge carries ``stale=true``: the credentials were
    #: right but the nonce expired, so the client retries without prompting.
    algorithm: bytes | None = None
    #: As sent; None when absent, which means MD5 (RFC 2617 §3.2.1).
    qop: tuple[bytes, ...] = ()
    #: The qop-options offered; empty for an RFC 2069 style challenge.
    domain: bytes | None = None
    userhash: bool = False
    #: RFC 7616 §3.3: the server supports hashed user names.
    params: AuthParams = ()
    #: Every auth-param as received, extension ones included; empty for a
    #: value built in code. ``bytes()`` renders the typed fields, then the
    #: extension params.

    def __bytes__(self) -> bytes:
        if self.scheme.lower() != b"digest":
            return _render(self.scheme, list(self.params))
        items: list[tuple[bytes, bytes]] = [
            (b"realm", quote(self.realm)),
            (b"nonce", quote(self.nonce)),
        ]
        if self.opaque is not None:
            items.append((b"opaque", quote(self.opaque)))
        if self.stale:
            items.append((b"stale", b"true"))
        if self.algorithm is not None:
            items.append((b"algorithm", self.algorithm))
        if self.qop:
            items.append((b"qop", quote(b",".join(self.qop))))
        if self.domain is not None:
            items.append((b"domain", quote(self.domain)))
        if self.userhash:
            items.append((b"userhash", b"true"))
        items.extend((n, v) for n, v in self.params if n not in _CHALLENGE_KNOWN)
        return _render(self.scheme, items)


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """One ``Authorization`` or ``Proxy-Authorization`` value (RFC 3261 §25 credentials).

    String fields hold the unquoted values. For a scheme other than Digest
    only ``scheme`` and ``params`` are meaningful.
    """

    scheme: bytes = b"Digest"
    username: bytes = b""
    #: The user name, or its hash when ``userhash`` is True (RFC 7616 §3.4.4).
    realm: bytes = b""
    nonce: bytes = b""
    uri: bytes = b""
    #: The digest-uri as sent; a server compares it with the Request-URI.
    response: bytes = b""
    #: The request-digest, lower-case hex on the wire.
    algorithm: bytes | None = None
    cnonce: bytes | None = None
    opaque: bytes | None = None
    qop: bytes | None = None
    nc: int | None = None
    #: The nonce-count, parsed from its 8 hex digits.
    userhash: bool = False
    params: AuthParams = ()

    def __bytes__(self) -> bytes:
        if self.scheme.lower() != b"digest":
            return _render(self.scheme, list(self.params))
        items: list[tuple[bytes, bytes]] = [
            (b"username", quote(self.username)),
            (b"realm", quote(self.realm)),
            (b"nonce", quote(self.nonce)),
            (b"uri", quote(self.uri)),
            (b"response", quote(self.response)),
        ]
        # RFC 7616 §3.4: "a sender MUST NOT generate the quoted string syntax
        # for the following parameters: algorithm, qop, and nc".
        if self.algorithm is not None:
            items.append((b"algorithm", self.algorithm))
        if self.cnonce is not None:
            items.append((b"cnonce", quote(self.cnonce)))
        if self.opaque is not None:
            items.append((b"opaque", quote(self.opaque)))
        if self.qop is not None:
            items.append((b"qop", self.qop))
        if self.nc is not None:
            items.append((b"nc", _nc_text(self.nc)))
        if self.userhash:
            items.append((b"userhash", b"true"))
        items.extend((n, v) for n, v in self.params if n not in _CREDENTIALS_KNOWN)
        return _render(self.scheme, items)


def _render(scheme: bytes, items: list[tuple[bytes, bytes]]) -> bytes:
    if not items:
        return scheme
    return scheme + b" " + b", ".join(n + b"=" + v for n, v in items)


# --- parsing ---------------------------------------------------------------


def _parse_auth(value: bytes, header: str) -> tuple[bytes, AuthParams]:
    """Split ``scheme auth-param *(COMMA auth-param)`` (RFC 3261 §25, RFC 7616 §3.3-3.4)."""
    scheme, names, values = _split_auth(value, header)
    return scheme, tuple(zip(names, values, strict=False))


def _split_auth(value: bytes, header: str) -> tuple[bytes, list[bytes], list[bytes]]:
    """:func:`_parse_auth` as the scheme, the lower-case names and the raw values."""
    value = value.strip(WS)
    if value[:7] == b"Digest ":
        # The usual scheme, spelled as usual: what the regex below would give.
        scheme, rest = value[:6], value[7:].lstrip(WS)
    else:
        m = _SCHEME_RE.match(value)
        if m is None or not is_token(m.group(1)):
            raise ParseError("missing or bad auth-scheme", header=header)
        scheme, rest = m.group(1), m.group(2) or b""
    fast = _fast_auth_lists(rest)
    if fast is not None:
        return scheme, fast[0], fast[1]
    params = _auth_params(rest, header)
    return scheme, [n for n, _ in params], [v for _, v in params]


def _fast_auth_params(rest: bytes) -> AuthParams | None:
    """The auth-params of the usual shape in one C-level pass, else None.

    None means "not the usual shape": :func:`_auth_params` decides, and gives
    the same result whenever this one gives any (a property test checks it).
    """
    lists = _fast_auth_lists(rest)
    return None if lists is None else tuple(zip(*lists, strict=False))


def _fast_auth_lists(rest: bytes) -> tuple[list[bytes], list[bytes]] | None:
    """:func:`_fast_auth_params` as two lists: the lower-case names and the raw values."""
    parts = _AUTH_PARAM_RE.split(rest)
    if parts[0] or parts[-1].strip(WS):
        return None
    names = parts[1::3]
    if not names:
        return [], []
    seps = parts[3:-1:3]
    # The usual separators (", ", or "," as SIPp writes them), else each is checked.
    if seps.count(b", ") + seps.count(b",") != len(seps):
        for sep in seps:
            if sep.strip(WS) != b",":
                return None
    # Names are tokens (no space in them): lower-cased in one call.
    lowered = b" ".join(names).lower().split(b" ")
    if len(set(lowered)) != len(lowered):
        return None
    return lowered, parts[2::3]


def _auth_params(rest: bytes, header: str) -> AuthParams:
    """Split ``auth-param *(COMMA auth-param)`` in full generality."""
    try:
        elements = split_comma(rest)
    except ParseError as exc:
        raise ParseError(exc.reason, header=header) from None
    params: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    for element in elements:
        name, eq, raw = element.partition(b"=")
        # EQUAL = SWS "=" SWS
        name, raw = name.strip(WS), raw.strip(WS)
        if not eq or not is_token(name):
            raise ParseError(f"bad auth-param {element[:40]!r}", header=header)
        if not (is_token(raw) or _QUOTED_RE.match(raw)):
            raise ParseError(f"bad value for auth-param {name!r}", header=header)
        lname = name.lower()
        # RFC 7616 §3.4 lists each directive once; two "response" or "nonce"
        # directives can only be a mistake or an attempt to confuse a proxy.
        if lname in seen:
            raise ParseError(f"duplicate auth-param {name!r}", header=header)
        seen.add(lname)
        params.append((lname, raw))
    return tuple(params)


def _get(params: AuthParams, name: bytes) -> bytes | None:
    for n, v in params:
        if n == name:
            return unquote(v)
    return None


def _flag(params: AuthParams, name: bytes) -> bool:
    value = _get(params, name)
    return value is not None and value.lower() == b"true"


def parse_challenge(value: bytes, *, header: str = "www-authenticate") -> Challenge:
    """Parse one ``WWW-Authenticate`` / ``Proxy-Authenticate`` header value.

    Args:
        value: the header value, folding already undone.
        header: the header name to report in errors.

    Returns:
        The challenge. ``realm`` and ``nonce`` are required for Digest
        (RFC 3261 §25 digest-cln); other schemes keep only their params.

    Raises:
        ParseError: (400) the value is not a challenge.
    """
    scheme, params = _parse_auth(value, header)
    if scheme.lower() != b"digest":
        return Challenge(scheme=scheme, params=params)
    realm, nonce = _get(params, b"realm"), _get(params, b"nonce")
    if realm is None or nonce is None:
        raise ParseError("Digest challenge without realm or nonce", header=header)
    qop = _get(params, b"qop")
    return Challenge(
        scheme=scheme,
        realm=realm,
        nonce=nonce,
        opaque=_get(params, b"opaque"),
        # RFC 2617 §3.2.1: "If stale is TRUE (case-insensitive) ...".
        stale=_flag(params, b"stale"),
        algorithm=_get(params, b"algorithm"),
        qop=tuple(q.strip(WS) for q in qop.split(b",") if q.strip(WS)) if qop else (),
        domain=_get(params, b"domain"),
        userhash=_flag(params, b"userhash"),
        params=params,
    )


def parse_credentials(value: bytes, *, header: str = "authorization") -> Credentials:
    """Parse one ``Authorization`` / ``Proxy-Authorization`` header value.

    Args:
        value: the header value, folding already undone.
        header: the header name to report in errors.

    Returns:
        The credentials. For Digest, username, realm, nonce, uri and response
        are required (RFC 2617 §3.2.2); ``nc`` must be 8 hex digits.

    Raises:
        ParseError: (400) the value is not credentials.
    """
    scheme, names, values = _split_auth(value, header)
    params = tuple(zip(names, values, strict=False))
    if scheme.lower() != b"digest":
        return Credentials(scheme=scheme, params=params)
    if value.find(b"\\") >= 0:
        plain = [unquote(v) for v in values]
    else:
        # No quoted-pair: each value is a token or a quoted-string with no
        # DQUOTE inside (both paths checked that), and neither holds NUL
        # (qdtext excludes %x00-08): removing every DQUOTE unquotes them all.
        plain = b"\x00".join(values).replace(b'"', b"").split(b"\x00")
    # Names are unique (_split_auth rejects duplicates), so a dict loses nothing.
    found = dict(zip(names, plain, strict=False))
    if not found.keys() >= _CREDENTIALS_REQUIRED_SET:
        missing = [n.decode() for n in _CREDENTIALS_REQUIRED if n not in found]
        raise ParseError(f"Digest credentials without {', '.join(missing)}", header=header)
    nc_raw = found.get(b"nc")
    if nc_raw is not None and not _NC_RE.match(nc_raw):
        raise ParseError("nc is not 8 hex digits", header=header)
    userhash = found.get(b"userhash")
    # Built through the slot setters: every field is checked above, and the
    # frozen dataclass __init__ would cost more than the rest of this function.
    creds = object.__new__(Credentials)
    set_ = _CREDENTIALS_SETTERS
    set_[0](creds, scheme)
    set_[1](creds, found[b"username"])
    set_[2](creds, found[b"realm"])
    set_[3](creds, found[b"nonce"])
    set_[4](creds, found[b"uri"])
    set_[5](creds, found[b"response"])
    set_[6](creds, found.get(b"algorithm"))
    set_[7](creds, found.get(b"cnonce"))
    set_[8](creds, found.get(b"opaque"))
    set_[9](creds, found.get(b"qop"))
    set_[10](creds, None if nc_raw is None else int(nc_raw, 16))
    set_[11](creds, userhash is not None and userhash.lower() == b"true")
    set_[12](creds, params)
    return creds


_CREDENTIALS_SETTERS: Final = slot_setters(
    Credentials,
    *("scheme", "username", "realm", "nonce", "uri", "response", "algorithm", "cnonce"),
    *("opaque", "qop", "nc", "userhash", "params"),
)


# --- hashing ---------------------------------------------------------------


def hash_family(algorithm: bytes | None) -> bytes | None:
    """The algorithm an HA1 for ``algorithm`` is computed with.

    ``MD5`` and ``MD5-sess`` both use an MD5 HA1, and so on. A server that
    stores one HA1 per family picks it with this.

    Returns:
        ``b"MD5"``, ``b"SHA-256"`` or ``b"SHA-512-256"``; None for an
        algorithm this module does not support. None in means MD5 (RFC 2617
        §3.2.1: "If this is not present it is assumed to be MD5").
    """
    if algorithm is None:
        return b"MD5"
    name = algorithm.upper()
    name = name.removesuffix(_SESS)
    return name if name in _HASHES else None


def _hash(family: bytes, data: bytes) -> bytes:
    # The named constructors where there is one: hashlib.new looks the name up
    # on every call (an MD5 then costs ~0.95 µs instead of ~0.5).
    if family == b"MD5":
        # MD5 is the algorithm the peer chose (RFC 7616 §3.3), as hashlib.new("md5") was.
        return hashlib.md5(data).hexdigest().encode("ascii")  # noqa: S324
    if family == b"SHA-256":
        return hashlib.sha256(data).hexdigest().encode("ascii")
    return hashlib.new(_HASHES[family], data).hexdigest().encode("ascii")


def _family_or_raise(algorithm: bytes | None) -> bytes:
    family = hash_family(algorithm)
    if family is None:
        raise LocalProtocolError(f"unsupported digest algorithm {algorithm!r}")
    return family


def ha1(username: bytes, realm: bytes, password: bytes, algorithm: bytes = b"MD5") -> bytes:
    """``H(username ":" realm ":" password)`` as lower-case hex (RFC 7616 §3.4.2).

    This is what a server stores instead of the password, one per hash
    family. For the ``-sess`` algorithms it is the stored value too: the
    session key is derived from it per request by :func:`compute_response`.

    Raises:
        LocalProtocolError: the algorithm is not supported.
    """
    return _hash(_family_or_raise(algorithm), username + b":" + realm + b":" + password)


def ha1_md5(username: bytes, realm: bytes, password: bytes) -> bytes:
    """The MD5 HA1 (RFC 2617 §3.2.2.2)."""
    return ha1(username, realm, password, b"MD5")


def ha1_sha256(username: bytes, realm: bytes, password: bytes) -> bytes:
    """The SHA-256 HA1 (RFC 7616 §3.4.2, RFC 8760 §2.2)."""
    return ha1(username, realm, password, b"SHA-256")


def userhash(username: bytes, realm: bytes, algorithm: bytes = b"SHA-256") -> bytes:
    """The hashed user name: ``H(unq(username) ":" unq(realm))`` (RFC 7616 §3.4.4)."""
    return _hash(_family_or_raise(algorithm), username + b":" + realm)


def _nc_text(nc: int) -> bytes:
    if not 0 <= nc <= 0xFFFFFFFF:
        raise LocalProtocolError(f"nonce-count {nc} does not fit 8 hex digits")
    return b"%08x" % nc


def _is_sess(algorithm: bytes | None) -> bool:
    return algorithm is not None and algorithm.upper().endswith(_SESS)


def _response(
    family: bytes,
    sess: bool,
    ha1_hex: bytes,
    *,
    nonce: bytes,
    method: bytes,
    uri: bytes,
    qop: bytes | None,
    nc_text: bytes | None,
    cnonce: bytes | None,
    body: bytes,
) -> bytes:
    if sess:
        # RFC 7616 §3.4.2: A1 = H(unq(username):unq(realm):passwd)
        #                       ":" unq(nonce-prime) ":" unq(cnonce-prime)
        if cnonce is None:
            raise LocalProtocolError("a -sess algorithm needs a cnonce")
        ha1_hex = _hash(family, ha1_hex + b":" + nonce + b":" + cnonce)
    # RFC 7616 §3.4.3: A2 = Method ":" request-uri, and for auth-int
    # A2 = Method ":" request-uri ":" H(entity-body).
    a2 = method + b":" + uri
    if qop is not None and qop.lower() == b"auth-int":
        a2 += b":" + _hash(family, body)
    ha2 = _hash(family, a2)
    if qop is None:
        # RFC 2617 §3.2.2.1: without qop, "compatibility with RFC 2069":
        # request-digest = KD(H(A1), unq(nonce-value) ":" H(A2)).
        return _hash(family, ha1_hex + b":" + nonce + b":" + ha2)
    if nc_text is None or cnonce is None:
        raise LocalProtocolError("qop needs nc and cnonce")
    return _hash(family, b":".join((ha1_hex, nonce, nc_text, cnonce, qop, ha2)))


def compute_response(
    *,
    ha1: bytes,
    nonce: bytes,
    method: bytes,
    uri: bytes,
    algorithm: bytes | None = b"MD5",
    qop: bytes | None = None,
    nc: int | None = None,
    cnonce: bytes | None = None,
    body: bytes = b"",
) -> bytes:
    """The request-digest (the ``response`` directive) as lower-case hex.

    Args:
        ha1: ``H(user:realm:password)`` in the algorithm's family, hex.
        nonce, method, uri: as in the request; ``uri`` is the digest-uri.
        algorithm: None or ``MD5``, ``MD5-sess``, ``SHA-256``, ``SHA-256-sess``,
            ``SHA-512-256``, ``SHA-512-256-sess``.
        qop: None (RFC 2069 compatibility), ``b"auth"`` or ``b"auth-int"``.
        nc, cnonce: required with a qop and with the -sess algorithms.
        body: the message body, hashed for ``auth-int`` only.

    Raises:
        LocalProtocolError: unsupported algorithm or qop, or a missing
            nc / cnonce.
    """
    family = _family_or_raise(algorithm)
    if qop is not None and qop.lower() not in _QOPS:
        raise LocalProtocolError(f"unsupported qop {qop!r}")
    return _response(
        family,
        _is_sess(algorithm),
        ha1,
        nonce=nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc_text=None if nc is None else _nc_text(nc),
        cnonce=cnonce,
        body=body,
    )


def verify(credentials: Credentials, *, method: bytes, ha1: bytes, body: bytes = b"") -> bool:
    """Check the request-digest of Digest credentials in constant time.

    Only the arithmetic is checked. The caller also checks the nonce with
    :meth:`NonceManager.check`, the realm, that ``credentials.uri`` matches the
    Request-URI, and the nonce-count against replay (see :func:`nc_key`).

    Args:
        credentials: as parsed from the request.
        method: the method of the request carrying the credentials.
        ha1: the stored HA1 of :func:`hash_family` ``(credentials.algorithm)``.
        body: the request body, used for ``qop=auth-int``.

    Returns:
        True when the response matches. False for anything unverifiable: a
        scheme other than Digest, an unknown algorithm or qop, a qop without
        nc/cnonce, a -sess algorithm without cnonce.
    """
    if credentials.scheme.lower() != b"digest":
        return False
    family = hash_family(credentials.algorithm)
    sess = _is_sess(credentials.algorithm)
    qop = credentials.qop
    nc_text = _nc_as_sent(credentials)
    if family is None or (qop is not None and qop.lower() not in _QOPS):
        return False
    if (qop is not None and (nc_text is None or credentials.cnonce is None)) or (
        sess and credentials.cnonce is None
    ):
        return False
    expected = _response(
        family,
        sess,
        ha1.lower(),
        nonce=credentials.nonce,
        method=method,
        uri=credentials.uri,
        qop=qop,
        nc_text=nc_text,
        cnonce=credentials.cnonce,
        body=body,
    )
    return hmac.compare_digest(expected, credentials.response.lower())


def _nc_as_sent(credentials: Credentials) -> bytes | None:
    # The digest covers the nc text the client sent; it may be upper-case hex.
    if credentials.nc is None or not 0 <= credentials.nc <= 0xFFFFFFFF:
        return None
    raw = _get(credentials.params, b"nc")
    if raw is not None and _NC_RE.match(raw) and int(raw, 16) == credentials.nc:
        return raw
    return _nc_text(credentials.nc)


def build_authorization(
    challenge: Challenge,
    *,
    username: bytes,
    method: bytes,
    uri: bytes,
    cnonce: bytes,
    nc: int = 1,
    password: bytes | None = None,
    ha1: bytes | None = None,
    body: bytes = b"",
    qop: bytes | None = None,
    use_userhash: bool = False,
) -> Credentials:
    """Answer a Digest challenge (the client side, RFC 7616 §3.4).

    Args:
        challenge: the challenge to answer; pick the first one whose
            :func:`hash_family` is not None when several came.
        username: the user name (hashed on the wire when ``use_userhash`` and
            the challenge allows it).
        method, uri: the request's method and Request-URI.
        cnonce: a fresh client nonce (the caller supplies the randomness).
        nc: the nonce-count: 1 for the first request with this nonce.
        password, ha1: exactly one of them.
        body: the request body, for ``auth-int``.
        qop: the qop to use; by default ``auth`` when offered, else
            ``auth-int``, else none when the challenge offers no qop.

    Raises:
        LocalProtocolError: not a Digest challenge, an unsupported algorithm,
            no qop we support among those offered, or not exactly one of
            password and ha1.
    """
    if challenge.scheme.lower() != b"digest":
        raise LocalProtocolError("only Digest challenges can be answered")
    family = _family_or_raise(challenge.algorithm)
    if password is not None and ha1 is None:
        key = _hash(family, username + b":" + challenge.realm + b":" + password)
    elif ha1 is not None and password is None:
        key = ha1
    else:
        raise LocalProtocolError("pass exactly one of password and ha1")
    qop = _choose_qop(challenge.qop, qop)
    response = compute_response(
        ha1=key,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc if qop is not None else None,
        cnonce=cnonce if qop is not None or _is_sess(challenge.algorithm) else None,
        body=body,
    )
    hashed = use_userhash and challenge.userhash
    return Credentials(
        username=_hash(family, username + b":" + challenge.realm) if hashed else username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        cnonce=cnonce if qop is not None or _is_sess(challenge.algorithm) else None,
        opaque=challenge.opaque,
        qop=qop,
        nc=nc if qop is not None else None,
        userhash=hashed,
    )


def _choose_qop(offered: tuple[bytes, ...], wanted: bytes | None) -> bytes | None:
    if not offered:
        # RFC 2617 §3.2.2: without qop-options the client answers RFC 2069 style.
        return None
    lowered = tuple(q.lower() for q in offered)
    if wanted is not None:
        if wanted not in lowered:
            raise LocalProtocolError(f"qop {wanted!r} not offered")
        return wanted
    for q in _QOPS:
        if q in lowered:
            return q
    raise LocalProtocolError(f"no supported qop among {offered!r}")


def challenge_for(
    realm: bytes,
    nonce: bytes,
    *,
    algorithm: bytes = b"SHA-256",
    stale: bool = False,
    qop: tuple[bytes, ...] = (b"auth",),
    opaque: bytes | None = None,
) -> Challenge:
    """A server challenge with the usual directives.

    Args:
        realm: the protection realm, usually the domain (RFC 3261 §22.1).
        nonce: from :meth:`NonceManager.issue`.
        algorithm: one of the supported algorithms.
        stale: set when :meth:`NonceManager.check` said STALE and the digest
            was right (RFC 2617 §3.2.1).
        qop: the qop-options; RFC 3261 §22.4 "the qop parameter MUST always
            be used" by servers, so an empty tuple is for tests only.
        opaque: echoed back by the client unchanged.

    Raises:
        LocalProtocolError: unsupported algorithm.
    """
    _family_or_raise(algorithm)
    return Challenge(
        realm=realm, nonce=nonce, opaque=opaque, stale=stale, algorithm=algorithm, qop=qop
    )


def challenges_for(
    realm: bytes,
    nonce: bytes,
    *,
    algorithms: tuple[bytes, ...] = (b"SHA-256", b"MD5"),
    stale: bool = False,
    qop: tuple[bytes, ...] = (b"auth",),
    opaque: bytes | None = None,
) -> tuple[Challenge, ...]:
    """One challenge per algorithm, most preferred first (RFC 8760 §2.4).

    Send each as its own ``WWW-Authenticate`` (or ``Proxy-Authenticate``)
    header line, in this order. Old clients that only know MD5 skip the
    SHA-256 challenge; RFC 7616 §3.7 clients pick the first they support.
    """
    return tuple(
        challenge_for(realm, nonce, algorithm=a, stale=stale, qop=qop, opaque=opaque)
        for a in algorithms
    )
