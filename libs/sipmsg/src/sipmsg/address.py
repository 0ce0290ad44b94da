"""name-addr / addr-spec values: From, To, Contact, Route, Record-Route, Path ...

RFC 3261 §25.1::

    name-addr    =  [ display-name ] LAQUOT addr-spec RAQUOT
    addr-spec    =  SIP-URI / SIPS-URI / absoluteURI
    display-name =  *(token LWS)/ quoted-string
    from-spec    =  ( name-addr / addr-spec ) *( SEMI from-param )

RFC 3261 §20.10: "If the URI is not enclosed in angle brackets, any
semicolon-delimited parameters are header-parameters, not URI parameters."
So ``sip:a@b;tag=1`` is the URI ``sip:a@b`` with the header parameter
``tag=1``, while ``<sip:a@b;lr>`` keeps ``lr`` in the URI.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Final

from ._abnf import (
    TOKEN_CHARS,
    WS,
    Params,
    check_gen_values,
    format_params,
    param,
    param_item,
    parse_params,
    quote,
    remove_param,
    set_param,
    slot_setters,
    split_comma,
)
from ._errors import ParseError
from ._native import python_class
from .uri import FAST_SIP, AbsoluteUri, SipUri, TelUri, fast_sip_uri, parse_uri

__all__ = [
    "STAR",
    "Address",
    "Star",
    "parse_address",
    "parse_address_list",
    "parse_contact_list",
]

_DISPLAY_TOKEN_CHARS: Final = TOKEN_CHARS + WS
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII: no raw control
# characters but HTAB (a quoted-pair may still escape them).
_CONTROL: Final = bytes(c for c in range(32) if c != 0x09) + b"\x7f"
# delta-seconds: RFC 3261 §20.19 "an integral number of seconds (in decimal)
# between 0 and (2**32)-1".
_MAX_DELTA_SECONDS: Final = 2**32 - 1

# The usual name-addr, matched in one go: an optional display name (a quoted
# string without escapes or control characters, or tokens and blanks), the
# URI in "<>", then ";name[=value]" header parameters with token names and
# token/host values or quoted strings without escapes; no blanks or empty
# items. Anything else takes the general path, which gives the same result
# or the precise error.
_PNAME: Final = rb"[A-Za-z0-9\-.!%*_+`'~]+"
_PVALUE: Final = rb"[A-Za-z0-9\-.!%*_+`'~\[\]:]+"
# A quoted parameter value without quoted-pairs or control characters (a
# Contact's +sip.instance="<urn:uuid:...>"), kept with its quotes as
# parse_params keeps it.
_PQUOTED: Final = rb'"[^"\\\x00-\x1f\x7f]*"'
_FAST_NAME_ADDR_RE: Final = re.compile(
    rb'(?:"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"|([A-Za-z0-9\-.!%*_+`\'~ \t]*))'
    rb"[ \t]*<([^<>]*)>[ \t]*((?:;" + _PNAME + rb"(?:=(?:" + _PVALUE + rb"|" + _PQUOTED + rb"))?)*)"
)
# The same with a SIP URI of the usual shape between the angles, matched by
# the same regex as uri._FAST_SIP_RE: one match builds the address and its URI.
_FAST_SIP_NAME_ADDR_RE: Final = re.compile(
    rb'(?:"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"|([A-Za-z0-9\-.!%*_+`\'~ \t]*))'
    rb"[ \t]*<(([sS][iI][pP][sS]?):" + FAST_SIP + rb")>[ \t]*"
    rb"((?:;" + _PNAME + rb"(?:=(?:" + _PVALUE + rb"|" + _PQUOTED + rb"))?)*)"
)
# The usual spellings of the two schemes the fast path matches (constant data).
_SCHEMES: Final = {b"sip": b"sip", b"sips": b"sips", b"SIP": b"sip", b"SIPS": b"sips"}
_FAST_PARAM_RE: Final = re.compile(
    rb";(" + _PNAME + rb")(?:(=)(" + _PVALUE + rb"|" + _PQUOTED + rb"))?"
)


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """A name-addr or addr-spec with its header parameters.

    ``bytes()`` of a parsed value gives back the bytes it came from; a value
    built or changed (``with_param``, ``with_tag``, :func:`dataclasses.replace`)
    is written in the name-addr form, which is always safe.
    """

    display_name: bytes | None = None
    #: The display name, unquoted and unescaped; None when there is none
    #: (an empty quoted string gives ``b""``).
    uri: SipUri | TelUri | AbsoluteUri
    #: The URI between ``<`` and ``>`` (or the whole addr-spec).
    params: Params = ()
    #: Header parameters after the URI: (lower-cased name, raw value or None).
    _raw: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __bytes__(self) -> bytes:
        if self._raw is not None:
            return self._raw
        out = b"<" + bytes(self.uri) + b">" + format_params(self.params)
        if self.display_name is None:
            return out
        return quote(self.display_name) + b" " + out

    @property
    def tag(self) -> bytes | None:
        """The ``tag`` parameter (From/To, RFC 3261 §19.3), or None."""
        return param(self.params, b"tag")

    @property
    def expires(self) -> int | None:
        """The Contact ``expires`` parameter in seconds, or None when absent.

        Raises:
            ParseError: not ``1*DIGIT`` or above 2**32-1 (RFC 4475's scalar02
                lets a registrar treat this as the default instead).
        """
        value = param(self.params, b"expires")
        if value is None:
            return None
        if not value.isdigit() or len(value) > 10 or int(value) > _MAX_DELTA_SECONDS:
            raise ParseError(f"bad expires parameter {value!r}", header="contact")
        return int(value)

    @property
    def q(self) -> float | None:
        """The Contact ``q`` parameter, or None when absent.

        Raises:
            ParseError: not a qvalue, i.e. ``( "0" [ "." 0*3DIGIT ] ) /
                ( "1" [ "." 0*3("0") ] )`` (RFC 3261 §25.1).
        """
        value = param(self.params, b"q")
        if value is None:
            return None
        whole, _, frac = value.partition(b".")
        if len(frac) > 3 or (frac and not frac.isdigit()):
            ok = False
        else:
            ok = whole == b"0" or (whole == b"1" and not frac.strip(b"0"))
        if not ok:
            raise ParseError(f"bad q parameter {value!r}", header="contact")
        return float(value)

    def with_param(self, name: bytes, value: bytes | None = None) -> Address:
        """A copy with header parameter ``name`` (lower-case) set or appended."""
        return dataclasses.replace(self, params=set_param(self.params, name, value))

    def without_param(self, name: bytes) -> Address:
        """A copy without any header parameter called ``name`` (lower-case)."""
        return dataclasses.replace(self, params=remove_param(self.params, name))

    def with_tag(self, tag: bytes) -> Address:
        """A copy with ``;tag=`` set, as a UAS does on To (RFC 3261 §8.2.6.2)."""
        return self.with_param(b"tag", tag)


@python_class
@dataclass(frozen=True, slots=True)
class Star:
    """``Contact: *``, which only a REGISTER removing all bindings may carry (§10.2.2)."""

    def __bytes__(self) -> bytes:
        return b"*"


STAR: Final = Star()
"""The one ``Contact: *`` value (all ``Star()`` compare equal anyway)."""


def parse_address(data: bytes) -> Address:
    """Parse one name-addr or addr-spec followed by header parameters.

    Args:
        data: one element of the header value (already split on commas).

    Returns:
        The :class:`Address`; ``bytes()`` of it returns ``data`` stripped.

    Raises:
        ParseError: (status_hint 400) a malformed display name, URI or
            parameter, or an addr-spec holding ``?`` or ``,``, which §20.10
            says must be written as a name-addr.
    """
    value = data.strip(WS)
    m = _FAST_SIP_NAME_ADDR_RE.fullmatch(value)
    if m is not None:
        quoted, plain, raw_uri, scheme, user, host, port, uri_params, tail = m.groups()
        uri = fast_sip_uri(
            raw_uri,
            _SCHEMES.get(scheme) or scheme.lower(),
            user=user,
            host=host,
            port_bytes=port,
            param_bytes=uri_params,
        )
        if uri is not None:
            return _fast_address(quoted, plain, uri, tail, value)
    m = _FAST_NAME_ADDR_RE.fullmatch(value)
    if m is not None:
        quoted, plain, raw_uri, tail = m.groups()
        return _fast_address(quoted, plain, parse_uri(raw_uri), tail, value)
    return _parse_address(value)


def plain_address_ok(data: bytes) -> bool:
    """True when ``parse_address(data)`` succeeds by its fast path; nothing is built.

    False means "not known": the usual-shape regex did not match, the port
    needs its range checked, or a ttl/maddr URI parameter needs its value
    checked. Then only :func:`parse_address` can tell (and give the error).
    """
    m = _FAST_SIP_NAME_ADDR_RE.fullmatch(data.strip(WS))
    if m is None:
        return False
    port = m.group(7)
    if port is not None and len(port) == 5 and int(port) > 65535:
        return False
    uri_params = m.group(8)
    if uri_params:
        # fast_sip_uri checks the values of ttl and maddr only (any case).
        low = uri_params.lower()
        if low.find(b";ttl") >= 0 or low.find(b";maddr") >= 0:
            return False
    return True


def _fast_address(
    quoted: bytes | None,
    plain: bytes | None,
    uri: SipUri | TelUri | AbsoluteUri,
    tail: bytes,
    value: bytes,
) -> Address:
    # One of quoted (a quoted-string display name) and plain (a token run,
    # maybe empty) is the regex group that matched; the other is None.
    display = quoted if plain is None else (plain.rstrip(WS) or None)
    params: Params = ()
    if tail:
        if tail.find(b'"') >= 0:
            # A quoted value may hold ";" or "=": then the items are found by
            # the parameter regex, which the whole tail matched repeatedly.
            found: list[tuple[bytes, bytes, bytes]] = _FAST_PARAM_RE.findall(tail)
            params = tuple([(n.lower(), v if eq else None) for n, eq, v in found])
        else:
            items: list[tuple[bytes, bytes | None]] = []
            for item in tail[1:].split(b";"):
                items.append(param_item(item))
            params = tuple(items)
    return _new_address(display, uri, params, value)


def _parse_address(value: bytes) -> Address:
    """parse_address's general path: any name-addr or addr-spec."""
    if not value:
        raise ParseError("empty address")
    if value[0] == 0x22:
        end = _quoted_end(value)
        display: bytes | None = _unescape_quoted(value[1 : end - 1])
        rest = value[end:].lstrip(WS)
        if rest[:1] != b"<":
            raise ParseError("quoted display name not followed by '<'")
        return _name_addr(value, display, rest)
    lt = value.find(b"<")
    semi = value.find(b";")
    if lt >= 0 and (semi < 0 or lt < semi):
        # display-name = *(token LWS): "Bob Smith <sip:...>", "caller<sip:...>"
        display = value[:lt].rstrip(WS) or None
        if display is not None and display.translate(None, _DISPLAY_TOKEN_CHARS):
            raise ParseError(f"bad display name {display!r}")
        return _name_addr(value, display, value[lt:])
    spec = value if semi < 0 else value[:semi].rstrip(WS)
    # §20.10: "the "name-addr" form MUST be used if the "addr-spec" contains a
    # comma, semicolon, or question mark."
    if spec.find(b"?") >= 0 or spec.find(b",") >= 0:
        raise ParseError(f"addr-spec with '?' or ',' must be in <>: {spec[:60]!r}")
    params = _header_params(value[semi:]) if semi >= 0 else ()
    return _new_address(None, parse_uri(spec), params, value)


def _name_addr(value: bytes, display: bytes | None, rest: bytes) -> Address:
    # rest starts at "<". RAQUOT = ">" SWS; no white space inside the angles
    # (RFC 4475 §3.1.2.9 badaspec: "reasonable to reject ... with a 400").
    gt = rest.find(b">")
    if gt < 0:
        raise ParseError("'<' without '>' in address")
    uri = parse_uri(rest[1:gt])
    tail = rest[gt + 1 :].lstrip(WS)
    if tail and tail[0] != 0x3B:
        raise ParseError(f"junk after '>' in address: {tail[:40]!r}")
    return _new_address(display, uri, _header_params(tail) if tail else (), value)


_ADDRESS_SETTERS: Final = slot_setters(Address, "display_name", "uri", "params", "_raw")


def _new_address(
    display: bytes | None, uri: SipUri | TelUri | AbsoluteUri, params: Params, raw: bytes
) -> Address:
    address = object.__new__(Address)
    set_display, set_uri, set_params, set_raw = _ADDRESS_SETTERS
    set_display(address, display)
    set_uri(address, uri)
    set_params(address, params)
    set_raw(address, raw)
    return address


def _header_params(tail: bytes) -> Params:
    if tail.find(b'"') >= 0 or tail.find(b" ") >= 0 or tail.find(b"\t") >= 0:
        params = parse_params(tail)
    else:
        # The common shape (";tag=a;lr"): the result and errors of
        # parse_params, without its quote-aware scanner.
        items: list[tuple[bytes, bytes | None]] = []
        for item in tail.split(b";"):
            if not item:
                continue
            name, eq, val = item.partition(b"=")
            if not name or name.translate(None, TOKEN_CHARS):
                raise ParseError(f"bad parameter name {name!r}")
            if eq and not val:
                raise ParseError(f"empty value for parameter {name!r}")
            items.append((name.lower(), val if eq else None))
        params = tuple(items)
    check_gen_values(params)
    return params


def _quoted_end(value: bytes) -> int:
    """The index just past the quoted-string that opens ``value``."""
    i = 1
    n = len(value)
    while i < n:
        c = value[i]
        if c == 0x22:
            return i + 1
        if c == 0x5C:
            i += 1  # quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
        i += 1
    raise ParseError("unterminated quoted-string in display name")


def _unescape_quoted(inner: bytes) -> bytes:
    if b"\\" not in inner:
        if inner.translate(None, _CONTROL) != inner:
            raise ParseError("control character in display name")
        return inner
    out = bytearray()
    i = 0
    n = len(inner)
    while i < n:
        c = inner[i]
        if c == 0x5C:
            i += 1
            c = inner[i] if i < n else 0x0A
            if c in b"\r\n" or c > 0x7F:
                raise ParseError("bad quoted-pair in display name")
        elif c in _CONTROL:
            raise ParseError("control character in display name")
        out.append(c)
        i += 1
    return bytes(out)


def parse_address_list(data: bytes) -> tuple[Address, ...]:
    """Parse a comma-separated list of addresses (Route, Record-Route, Path ...).

    Raises:
        ParseError: the list is empty or an element is malformed.
    """
    parts = split_comma(data)
    if len(parts) == 1:
        return (parse_address(parts[0]),)
    if not parts:
        raise ParseError("empty address list")
    return tuple([parse_address(p) for p in parts])


def parse_contact_list(data: bytes) -> tuple[Address, ...] | Star:
    """Parse a Contact header value: ``*`` or a list of addresses (§20.10).

    ``q`` and ``expires`` are checked when read (:attr:`Address.q`,
    :attr:`Address.expires`), so that a registrar may choose to treat a bad
    ``expires`` as the default (RFC 4475 scalar02).

    Raises:
        ParseError: ``*`` mixed with addresses, or a malformed element.
    """
    parts = split_comma(data)
    if parts == [b"*"]:
        return STAR
    if not parts:
        raise ParseError("empty Contact", header="contact")
    if b"*" in parts:
        # Contact = ("Contact" / "m" ) HCOLON ( STAR / (contact-param *(COMMA contact-param)))
        raise ParseError("'*' mixed with other Contact values", header="contact")
    return tuple([parse_address(p) for p in parts])
