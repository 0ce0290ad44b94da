"""SIP, SIPS and tel URIs, and any other absolute URI (RFC 3261 §19.1, §25; RFC 3966).

``parse_uri(b)`` returns a :class:`SipUri` for ``sip:``/``sips:``, a
:class:`TelUri` for ``tel:`` and an :class:`AbsoluteUri` for any other
scheme. An unknown scheme is not an error here: RFC 3261 §8.2.2.1 leaves it
to the server to answer 416 (Unsupported URI Scheme) where it matters.

Parsed values keep the bytes they came from, so ``bytes(parse_uri(b)) == b``.
A value built with :func:`dataclasses.replace` (or :meth:`SipUri.with_param`)
forgets them and serializes from its fields.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Final

from ._abnf import (
    ALPHA,
    DIGIT,
    HEXDIG,
    HOSTNAME,
    IPV4ADDRESS,
    Params,
    check_host,
    format_params,
    host_key,
    param,
    param_item,
    remove_param,
    set_param,
    slot_setters,
    split_hostport,
)
from ._errors import ParseError
from ._native import python_class

__all__ = ["AbsoluteUri", "SipUri", "TelUri", "Uri", "parse_uri", "unescape"]

# unreserved  =  alphanum / mark
# mark        =  "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
_UNRESERVED: Final = ALPHA + DIGIT + b"-_.!~*'()"
# reserved    =  ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","
_RESERVED: Final = b";/?:@&=+$,"
# user        =  1*( unreserved / escaped / user-unreserved )
# user-unreserved  =  "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
_USER_CHARS: Final = _UNRESERVED + b"%&=+$,;?/"
# password    =  *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
_PASSWORD_CHARS: Final = _UNRESERVED + b"%&=+$,"
# paramchar   =  param-unreserved / unreserved / escaped
# param-unreserved  =  "[" / "]" / "/" / ":" / "&" / "+" / "$"
# (plus the ";" and "=" that separate the parameters)
_PARAMS_CHARS: Final = _UNRESERVED + b"%[]/:&+$;="
# hname / hvalue chars: hnv-unreserved / unreserved / escaped
# hnv-unreserved  =  "[" / "]" / "/" / "?" / ":" / "+" / "$"
# (plus the "&" and "=" that separate the headers)
_HEADERS_CHARS: Final = _UNRESERVED + b"%[]/?:+$&="
# uric = reserved / unreserved / escaped (RFC 2396), for absoluteURI.
_URIC: Final = _RESERVED + _UNRESERVED + b"%"
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME_CHARS: Final = ALPHA + DIGIT + b"+-."
# RFC 3966: phonedigit = DIGIT / visual-separator; visual-separator = "-" / "." / "(" / ")"
_VISUAL_SEPARATORS: Final = b"-.()"
_LOCAL_DIGITS: Final = HEXDIG + b"*#"

# Octets that stay escaped when URIs are compared. RFC 3261 §19.1.4:
# "Characters other than those in the "reserved" set (see RFC 2396) are
# equivalent to their ""%" HEX HEX" encoding." "%" itself stays escaped so that
# "%2541" does not collide with "%41".
_KEEP_ESCAPED_FOR_EQ: Final = _RESERVED + b"%"
# Octets that stay escaped when a parameter name is normalized: anything but
# unreserved, so that the normalized name still serializes correctly.
_KEEP_ESCAPED_IN_NAME: Final = bytes(c for c in range(256) if c not in _UNRESERVED)

# RFC 3261 §19.1.4: "A user, ttl, or method uri-parameter appearing in only one
# URI never matches, even if it contains the default value." and "A URI that
# includes an maddr parameter will not match a URI that contains no maddr
# parameter." Its examples add transport ("can resolve to different transports").
_MUST_MATCH_PARAMS: Final = frozenset({b"user", b"ttl", b"method", b"maddr", b"transport"})


# The shape of nearly every SIP URI after "sip:", matched and checked in one
# go: [user "@"] host [":" port] *(";" pname ["=" pvalue]), with no
# %-escapes, password, IPv6 reference or headers. Anything else (or a port
# above 65535) takes the general path, which gives the precise error.
_FAST_USER: Final = rb"[A-Za-z0-9\-_.!~*'()&=+$,]+"
_FAST_PCHARS: Final = rb"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+"
# (IPv4 first: the engine then tries no hostname labels on an address.)
FAST_SIP: Final = (
    rb"(?:(" + _FAST_USER + rb")@)?(" + IPV4ADDRESS + rb"|" + HOSTNAME + rb")"
    rb"(?::([0-9]{1,5}))?((?:;" + _FAST_PCHARS + rb"(?:=" + _FAST_PCHARS + rb")?)*)"
)
_FAST_SIP_RE: Final = re.compile(FAST_SIP)
# The parameters whose values _check_known_params checks.
_CHECKED_URI_PARAMS: Final = frozenset({b"ttl", b"maddr"})


def _check_escapes(value: bytes) -> None:
    i = value.find(b"%")
    while i >= 0:
        if i + 2 >= len(value) or value[i + 1] not in HEXDIG or value[i + 2] not in HEXDIG:
            raise ParseError(f"bad %-escape in {value!r}")
        i = value.find(b"%", i + 3)


def _check_chars(value: bytes, allowed: bytes, what: str) -> None:
    if value.translate(None, allowed):
        raise ParseError(f"bad character in URI {what} {value!r}")
    if value.find(b"%") >= 0:
        _check_escapes(value)


def unescape(value: bytes) -> bytes:
    """Decode every ``"%" HEX HEX`` escape of ``value`` (RFC 3261 §19.1.2).

    Raises:
        ParseError: a ``%`` not followed by two hex digits.
    """
    if value.find(b"%") < 0:
        return value
    _check_escapes(value)
    parts = value.split(b"%")
    out = bytearray(parts[0])
    for part in parts[1:]:
        out.append(int(part[:2], 16))
        out += part[2:]
    return bytes(out)


def _normalize_escapes(value: bytes, keep: bytes) -> bytes:
    """Decode the escapes of octets not in ``keep``; upper-case the hex of the rest.

    ``value`` has had its escapes checked.
    """
    if value.find(b"%") < 0:
        return value
    parts = value.split(b"%")
    out = bytearray(parts[0])
    for part in parts[1:]:
        octet = int(part[:2], 16)
        if octet in keep:
            out += b"%" + part[:2].upper()
        else:
            out.append(octet)
        out += part[2:]
    return bytes(out)


def _eq_form(value: bytes | None) -> bytes | None:
    return None if value is None else _normalize_escapes(value, _KEEP_ESCAPED_FOR_EQ)


def _parse_uri_params(value: bytes) -> Params:
    """Parse ``*( ";" uri-parameter )`` without the first ``;``."""
    _check_chars(value, _PARAMS_CHARS, "parameters")
    params: list[tuple[bytes, bytes | None]] = []
    for item in value.split(b";"):
        name, eq, val = item.partition(b"=")
        # pname = 1*paramchar ; pvalue = 1*paramchar
        if not name or (eq and (not val or b"=" in val)):
            raise ParseError(f"bad URI parameter {item!r}")
        if b"%" in name:
            name = _normalize_escapes(name, _KEEP_ESCAPED_IN_NAME)
        params.append((name.lower(), val if eq else None))
    return tuple(params)


def _parse_uri_headers(value: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """Parse ``header *( "&" header )`` where ``header = hname "=" hvalue``."""
    _check_chars(value, _HEADERS_CHARS, "headers")
    headers: list[tuple[bytes, bytes]] = []
    for item in value.split(b"&"):
        name, eq, val = item.partition(b"=")
        if not name or not eq or b"=" in val:
            raise ParseError(f"bad URI header {item!r}")
        headers.append((name, val))
    return tuple(headers)


@python_class
@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SipUri:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 §19.1.1).

    Equality (``==`` and :meth:`equivalent`) is the RFC 3261 §19.1.4
    comparison, not a field-by-field one; the hash agrees with it.
    """

    scheme: bytes = b"sip"
    #: ``b"sip"`` or ``b"sips"``, lower-cased.
    user: bytes | None = None
    #: The user part as written, still %-escaped; None when absent.
    password: bytes | None = None
    #: The password as written, still %-escaped; None when absent.
    host: bytes
    #: A hostname, an IPv4 address, or an IPv6 reference with its brackets.
    port: int | None = None
    #: None when the URI has no port (which is not the same as 5060).
    params: Params = ()
    #: uri-parameters in order: (lower-cased name, raw value or None).
    headers: tuple[tuple[bytes, bytes], ...] = ()
    #: ``?name=value&...`` headers in order, as written.
    _raw: bytes | None = field(default=None, init=False, repr=False)

    def __bytes__(self) -> bytes:
        if self._raw is not None:
            return self._raw
        out = self.scheme + b":"
        if self.user is not None:
            out += self.user
            if self.password is not None:
                out += b":" + self.password
            out += b"@"
        out += self.host
        if self.port is not None:
            out += b":%d" % self.port
        out += format_params(self.params)
        if self.headers:
            out += b"?" + b"&".join(n + b"=" + v for n, v in self.headers)
        return out

    # -- the uri-parameters RFC 3261 §19.1.1 names ----------------------------

    @property
    def transport(self) -> bytes | None:
        """The transport parameter, lower-cased (``b"udp"``, ``b"tcp"``, ...), or None."""
        value = param(self.params, b"transport")
        return None if value is None else unescape(value).lower()

    @property
    def user_param(self) -> bytes | None:
        """The ``user=`` parameter (``b"phone"``, ``b"ip"``, ...), or None."""
        return param(self.params, b"user")

    @property
    def maddr(self) -> bytes | None:
        """The ``maddr=`` parameter, or None."""
        return param(self.params, b"maddr")

    @property
    def ttl(self) -> int | None:
        """The ``ttl=`` parameter (checked to be 0..255 when parsed), or None."""
        value = param(self.params, b"ttl")
        return None if value is None else int(value)

    @property
    def method(self) -> bytes | None:
        """The ``method=`` parameter, or None."""
        return param(self.params, b"method")

    @property
    def lr(self) -> bool:
        """True when the URI carries ``;lr`` (RFC 3261 §19.1.1, loose routing)."""
        return param(self.params, b"lr") is not None

    # -- building --------------------------------------------------------------

    def with_param(self, name: bytes, value: bytes | None = None) -> SipUri:
        """A copy with parameter ``name`` set (replaced in place, or appended).

        ``name`` is lower-case; ``value`` is written as given (None for a flag
        such as ``lr``).
        """
        return dataclasses.replace(self, params=set_param(self.params, name, value))

    def without_param(self, name: bytes) -> SipUri:
        """A copy without any parameter called ``name`` (lower-case)."""
        return dataclasses.replace(self, params=remove_param(self.params, name))

    # -- RFC 3261 §19.1.4 comparison -------------------------------------------

    def equivalent(self, other: object) -> bool:
        """Compare two URIs as RFC 3261 §19.1.4 does.

        "A SIP and SIPS URI are never equivalent." The userinfo is compared
        case-sensitively after undoing escapes of unreserved octets; the host
        case-insensitively (IPv6 by value); the port must be the same (an
        absent port does not equal 5060); "Any uri-parameter appearing in both
        URIs must match"; user, ttl, method, maddr and transport must also be
        present in both if present in either; other parameters present in only
        one are ignored; "Header components are never ignored".
        """
        if not isinstance(other, SipUri):
            return False
        if (
            self.scheme != other.scheme
            or self.port != other.port
            or host_key(self.host) != host_key(other.host)
            or _eq_form(self.user) != _eq_form(other.user)
            or _eq_form(self.password) != _eq_form(other.password)
            or self._headers_key() != other._headers_key()
        ):
            return False
        mine = self._params_key()
        theirs = other._params_key()
        for name in mine.keys() | theirs.keys():
            if name in mine and name in theirs:
                if mine[name] != theirs[name]:
                    return False
            elif name in _MUST_MATCH_PARAMS:
                return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipUri):
            return NotImplemented
        return self.equivalent(other)

    def __hash__(self) -> int:
        # Only what must be equal in equivalent URIs goes in: parameters that
        # may be ignored when present in one URI only are left out.
        params = self._params_key()
        return hash(
            (
                self.scheme,
                self.port,
                host_key(self.host),
                _eq_form(self.user),
                _eq_form(self.password),
                self._headers_key(),
                tuple(sorted((n, params[n]) for n in _MUST_MATCH_PARAMS if n in params)),
            )
        )

    def _params_key(self) -> dict[bytes, bytes | None]:
        key: dict[bytes, bytes | None] = {}
        for name, value in self.params:
            if name not in key:
                # Parameter values are compared case-insensitively: §19.1.4's
                # own example equates "transport=TCP" and "Transport=tcp".
                key[name] = (
                    None
                    if value is None
                    else _normalize_escapes(value, _KEEP_ESCAPED_FOR_EQ).lower()
                )
        return key

    def _headers_key(self) -> tuple[tuple[bytes, bytes], ...]:
        return tuple(
            sorted(
                (
                    _normalize_escapes(n, _KEEP_ESCAPED_FOR_EQ).lower(),
                    _normalize_escapes(v, _KEEP_ESCAPED_FOR_EQ),
                )
                for n, v in self.headers
            )
        )


@python_class
@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TelUri:
    """A ``tel:`` URI (RFC 3966).

    Equality follows RFC 3966 §4: visual separators in the number are
    ignored, parameters compare regardless of order, and their names and
    values case-insensitively.
    """

    number: bytes
    #: The number as written: ``b"+1-201-555-0123"`` (global) or a local number.
    params: Params = ()
    #: Parameters in order: (lower-cased name, raw value or None).
    _raw: bytes | None = field(default=None, init=False, repr=False)

    @property
    def is_global(self) -> bool:
        """True for a global number (RFC 3966: ``global-number-digits = "+" ...``)."""
        return self.number[:1] == b"+"

    @property
    def phone_context(self) -> bytes | None:
        """The ``phone-context`` parameter a local number must carry, or None."""
        return param(self.params, b"phone-context")

    def __bytes__(self) -> bytes:
        if self._raw is not None:
            return self._raw
        return b"tel:" + self.number + format_params(self.params)

    def _key(self) -> tuple[bytes, tuple[tuple[bytes, bytes | None], ...]]:
        number = self.number.translate(None, _VISUAL_SEPARATORS).lower()
        params = sorted((n, None if v is None else unescape(v).lower()) for n, v in self.params)
        return number, tuple(params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelUri):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class AbsoluteUri:
    """A URI of any other scheme (``http:``, ``urn:``, ``im:`` ...), kept opaque."""

    scheme: bytes
    #: The scheme, lower-cased.
    raw: bytes
    #: The whole URI as written, scheme included.

    def __bytes__(self) -> bytes:
        return self.raw


Uri = SipUri | TelUri | AbsoluteUri


def parse_uri(data: bytes) -> SipUri | TelUri | AbsoluteUri:
    """Parse a Request-URI or the URI of a name-addr / addr-spec.

    Args:
        data: the URI, without angle brackets or surrounding white space.

    Returns:
        A :class:`SipUri` (sip, sips), :class:`TelUri` (tel) or
        :class:`AbsoluteUri` (any other well-formed scheme).

    Raises:
        ParseError: (status_hint 400) the URI is malformed.
    """
    colon = data.find(b":")
    if colon <= 0:
        raise ParseError(f"URI without a scheme {data[:40]!r}")
    scheme = data[:colon].lower()
    if scheme in (b"sip", b"sips"):
        return _parse_sip(data, scheme, data[colon + 1 :])
    if data[0] not in ALPHA or scheme.translate(None, _SCHEME_CHARS):
        raise ParseError(f"bad URI scheme {data[:colon]!r}")
    if scheme == b"tel":
        return _parse_tel(data, data[colon + 1 :])
    rest = data[colon + 1 :]
    if not rest:
        raise ParseError("empty URI")
    _check_chars(rest, _URIC, "body")
    return AbsoluteUri(scheme=scheme, raw=data)


def _parse_sip(data: bytes, scheme: bytes, rest: bytes) -> SipUri:
    m = _FAST_SIP_RE.fullmatch(rest)
    if m is not None:
        user, host, port_bytes, param_bytes = m.groups()
        uri = fast_sip_uri(
            data, scheme, user=user, host=host, port_bytes=port_bytes, param_bytes=param_bytes
        )
        if uri is not None:
            return uri
    return _parse_sip_general(data, scheme, rest)


def fast_sip_uri(
    data: bytes,
    scheme: bytes,
    *,
    user: bytes | None,
    host: bytes,
    port_bytes: bytes | None,
    param_bytes: bytes | None,
) -> SipUri | None:
    """The SipUri of ``data`` from the groups a match of ``FAST_SIP`` gave, or None.

    ``user``, ``host``, ``port_bytes`` and ``param_bytes`` are the user, host,
    port and parameter groups; None comes back for a port above 65535, which
    the general parser reports. For the parsers that match the URI inside a
    larger regex (the name-addr fast path); ``scheme`` is lower-case ``sip``
    or ``sips``.

    Raises:
        ParseError: a bad ttl or maddr parameter.
    """
    port = None if port_bytes is None else int(port_bytes)
    if port is not None and port > 65535:
        return None
    params: Params = ()
    if param_bytes:
        # The regex matched ";pname[=pvalue]" items without ";" inside: a
        # split finds them. Only ttl and maddr values are checked further.
        items: list[tuple[bytes, bytes | None]] = []
        check = False
        for item in param_bytes[1:].split(b";"):
            pair = param_item(item)
            if pair[0] in _CHECKED_URI_PARAMS:
                check = True
            items.append(pair)
        params = tuple(items)
        if check:
            _check_known_params(params)
    uri = object.__new__(SipUri)
    s_scheme, s_user, s_password, s_host, s_port, s_params, s_headers, s_raw = _SIP_URI_SETTERS
    s_scheme(uri, scheme)
    s_user(uri, user)
    s_password(uri, None)
    s_host(uri, host)
    s_port(uri, port)
    s_params(uri, params)
    s_headers(uri, ())
    s_raw(uri, data)
    return uri


def _parse_sip_general(data: bytes, scheme: bytes, rest: bytes) -> SipUri:
    # SIP-URI  =  "sip:" [ userinfo ] hostport uri-parameters [ headers ]
    # userinfo =  ( user / telephone-subscriber ) [ ":" password ] "@"
    # "@" may appear nowhere else unescaped, so the first one ends the userinfo.
    user: bytes | None = None
    password: bytes | None = None
    at = rest.find(b"@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        if rest.find(b"@") >= 0:
            raise ParseError("more than one '@' in URI")
        user, colon, pw = userinfo.partition(b":")
        if not user:
            raise ParseError("empty user in URI")
        _check_chars(user, _USER_CHARS, "user")
        if colon:
            _check_chars(pw, _PASSWORD_CHARS, "password")
            password = pw
    semi = rest.find(b";")
    qmark = rest.find(b"?")
    if qmark >= 0 and (semi < 0 or qmark < semi):
        semi = -1  # no parameters: paramchar excludes "?", so "?" starts headers
    end = semi if semi >= 0 else (qmark if qmark >= 0 else len(rest))
    host, port = split_hostport(rest[:end])
    params: Params = ()
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if semi >= 0:
        params = _parse_uri_params(rest[semi + 1 : qmark if qmark >= 0 else len(rest)])
        _check_known_params(params)
    if qmark >= 0:
        headers = _parse_uri_headers(rest[qmark + 1 :])
    return _new_sip_uri(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=params,
        headers=headers,
        raw=data,
    )


_SIP_URI_SETTERS: Final = slot_setters(
    SipUri, "scheme", "user", "password", "host", "port", "params", "headers", "_raw"
)


def _new_sip_uri(
    *,
    scheme: bytes,
    user: bytes | None,
    password: bytes | None,
    host: bytes,
    port: int | None,
    params: Params,
    headers: tuple[tuple[bytes, bytes], ...],
    raw: bytes,
) -> SipUri:
    uri = object.__new__(SipUri)
    s_scheme, s_user, s_password, s_host, s_port, s_params, s_headers, s_raw = _SIP_URI_SETTERS
    s_scheme(uri, scheme)
    s_user(uri, user)
    s_password(uri, password)
    s_host(uri, host)
    s_port(uri, port)
    s_params(uri, params)
    s_headers(uri, headers)
    s_raw(uri, raw)
    return uri


def _check_known_params(params: Params) -> None:
    for name, value in params:
        if name == b"ttl":
            # ttl-param = "ttl=" ttl ; ttl = 1*3DIGIT ; 0 to 255
            if value is None or not value.isdigit() or len(value) > 3 or int(value) > 255:
                raise ParseError(f"bad ttl parameter {value!r}")
        elif name == b"maddr":
            if value is None:
                raise ParseError("maddr parameter without a value")
            check_host(unescape(value))


def _parse_tel(data: bytes, rest: bytes) -> TelUri:
    # telephone-uri = "tel:" telephone-subscriber
    # telephone-subscriber = global-number / local-number
    number, semi, tail = rest.partition(b";")
    digits = number.translate(None, _VISUAL_SEPARATORS)
    if number[:1] == b"+":
        ok = len(digits) > 1 and digits[1:].isdigit()
    else:
        ok = bool(digits) and not digits.translate(None, _LOCAL_DIGITS)
    if not ok:
        raise ParseError(f"bad telephone number {number!r}")
    params = _parse_uri_params(tail) if semi else ()
    uri = TelUri(number=number, params=params)
    object.__setattr__(uri, "_raw", data)
    return uri
