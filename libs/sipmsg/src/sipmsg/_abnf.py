"""RFC 3261 §25 grammar fragments and the small scanners every header parser shares.

The regexes are compiled once at import from these strings: they are constant
data, not state.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Final

from ._errors import ParseError

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN: Final = rb"[A-Za-z0-9\-.!%*_+`'~]+"
# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
#        "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}" )
WORD: Final = rb"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
# LWS = [*WSP CRLF] 1*WSP ; SWS = [LWS]. Folding is undone before header values
# reach these parsers, so linear white space is plain SP / HTAB here.
WS: Final = b" \t"

TOKEN_RE: Final = re.compile(TOKEN)
TOKEN_FULL_RE: Final = re.compile(rb"\A" + TOKEN + rb"\Z")
DIGITS_RE: Final = re.compile(rb"\A[0-9]+\Z")

# One list element when there are no quotes: runs of anything but "," and "<",
# and "<...>" spans (an unclosed "<" runs to the end, as the scanner does).
_ANGLE_ELEMENT_RE: Final = re.compile(rb"(?:[^,<]+|<[^>]*>?)+")

Params = tuple[tuple[bytes, bytes | None], ...]
"""Generic parameters in wire order: (lower-cased name, raw value or None)."""


def slot_setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The slot descriptors' ``__set__`` of a slotted (frozen) dataclass, by field name.

    The parsers build their values through these: a frozen dataclass's
    ``__init__`` stores each field with ``object.__setattr__``, which costs
    about three times as much as calling the slot descriptor directly, and
    the parsers have already checked every value. Nothing else should use it.
    """
    return tuple(cls.__dict__[n].__set__ for n in names)


def is_token(value: bytes) -> bool:
    """True when ``value`` is a non-empty RFC 3261 token."""
    return TOKEN_FULL_RE.match(value) is not None


# The usual parameter names of SIP URIs, Via and name-addrs, each its own
# lower-case spelling (constant data): a hit costs no lower() copy.
_COMMON_PARAM_NAMES: Final = {
    n: n
    for n in (
        b"tag lr transport user branch received rport maddr ttl expires q method ob "
        b"reg-id +sip.instance alias keep sigcomp-id gr"
    ).split()
}


def param_item(item: bytes) -> tuple[bytes, bytes | None]:
    """One plain parameter ``name[=value]`` -> (lower-case name, value or None).

    For the fast paths whose regex already checked the parameters (no quotes,
    no ";" inside): the "=" is found by an index scan, with no partition tuple,
    and a usual name is not copied to be lower-cased.
    """
    n = len(item)
    eq = 0
    while eq < n and item[eq] != 0x3D:
        eq += 1
    name = item if eq == n else item[:eq]
    low = _COMMON_PARAM_NAMES.get(name)
    return (name.lower() if low is None else low, None if eq == n else item[eq + 1 :])


def split_comma(value: bytes) -> list[bytes]:
    """Split a header value on the commas that separate its elements.

    RFC 3261 §7.3.1: a header field whose value is a comma-separated list may
    be written as several header fields, and vice versa. Commas inside a
    quoted-string (``"Doe, John"``) or inside ``<...>`` (a URI may carry
    commas in its headers part) do not split. Empty elements are dropped and
    each element is stripped of surrounding white space.
    """
    # value.find(x) >= 0 rather than x in value, here and in the other hot
    # paths: compiled, "in" on bytes goes through the buffer protocol and
    # costs about twice as much (~110 ns against ~55).
    if value.find(b",") < 0:
        stripped = value.strip(WS)
        return [stripped] if stripped else []
    if value.find(b'"') < 0:
        # Without quotes only "<...>" can hide a comma: split in C.
        pieces = _ANGLE_ELEMENT_RE.findall(value) if value.find(b"<") >= 0 else value.split(b",")
        return [p for p in [x.strip(WS) for x in pieces] if p]
    parts: list[bytes] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quotes:
            if c == 0x5C:  # backslash: quoted-pair, skip the next octet
                i += 1
            elif c == 0x22:
                in_quotes = False
        elif c == 0x22:
            in_quotes = True
        elif c == 0x3C:
            in_angle = True
        elif c == 0x3E:
            in_angle = False
        elif c == 0x2C and not in_angle:
            part = value[start:i].strip(WS)
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    if in_quotes:
        raise ParseError("unterminated quoted-string")
    part = value[start:].strip(WS)
    if part:
        parts.append(part)
    return parts


def unquote(value: bytes) -> bytes:
    """Remove the quotes and quoted-pair escapes of a quoted-string (§25.1).

    A value that is not quoted is returned as it is.
    """
    if len(value) >= 2 and value[0] == 0x22 and value[-1] == 0x22:
        inner = value[1:-1]
        if b"\\" not in inner:
            return inner
        out = bytearray()
        i = 0
        while i < len(inner):
            if inner[i] == 0x5C and i + 1 < len(inner):
                i += 1
            out.append(inner[i])
            i += 1
        return bytes(out)
    return value


def quote(value: bytes) -> bytes:
    """Make a quoted-string of ``value``, escaping ``"`` and ``\\`` (§25.1)."""
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def parse_params(value: bytes, *, header: str | None = None) -> Params:
    """Parse ``;name=value;flag`` generic parameters (§25.1 generic-param).

    ``value`` starts after the element the parameters belong to, with or
    without the leading ``;``. Names are lower-cased (parameter names are
    case-insensitive); values are kept raw, quotes included, so that a
    re-serialization is faithful. Quoted values may contain ``;``.

    Raises:
        ParseError: a parameter name is not a token, or a quote is unterminated.
    """
    params: list[tuple[bytes, bytes | None]] = []
    for item in _split_semicolons(value, header):
        name, eq, val = item.partition(b"=")
        name = name.strip(WS)
        if not is_token(name):
            raise ParseError(f"bad parameter name {name!r}", header=header)
        if eq:
            val = val.strip(WS)
            if not val:
                raise ParseError(f"empty value for parameter {name!r}", header=header)
            params.append((name.lower(), val))
        else:
            params.append((name.lower(), None))
    return tuple(params)


def _split_semicolons(value: bytes, header: str | None) -> list[bytes]:
    if b'"' not in value:
        return [p for p in (x.strip(WS) for x in value.split(b";")) if p]
    if b"\\" not in value:
        return _split_plain_quotes(value, header)
    return _split_quoted(value, header)


def _split_quoted(value: bytes, header: str | None) -> list[bytes]:
    # The general scanner: quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F).
    items: list[bytes] = []
    start = 0
    in_quotes = False
    i = 0
    while i < len(value):
        c = value[i]
        if in_quotes:
            if c == 0x5C:
                i += 1
            elif c == 0x22:
                in_quotes = False
        elif c == 0x22:
            in_quotes = True
        elif c == 0x3B:
            items.append(value[start:i])
            start = i + 1
        i += 1
    if in_quotes:
        raise ParseError("unterminated quoted-string in parameters", header=header)
    items.append(value[start:])
    return [p for p in (x.strip(WS) for x in items) if p]


def _split_plain_quotes(value: bytes, header: str | None) -> list[bytes]:
    """_split_semicolons without quoted-pairs: every '"' opens or closes a quote.

    Splitting on '"' leaves the text outside quotes at the even indexes, so
    only those are split on ";" (in C), and the quoted pieces are glued back.
    """
    chunks = value.split(b'"')
    if not len(chunks) & 1:
        raise ParseError("unterminated quoted-string in parameters", header=header)
    items: list[bytes] = []
    current: list[bytes] = []
    for i, chunk in enumerate(chunks):
        if i & 1:
            current += (b'"', chunk, b'"')
            continue
        pieces = chunk.split(b";")
        current.append(pieces[0])
        for piece in pieces[1:]:
            items.append(b"".join(current))
            current = [piece]
    items.append(b"".join(current))
    return [p for p in (x.strip(WS) for x in items) if p]


def format_params(params: Params) -> bytes:
    """Serialize parameters as ``;name=value`` in order (the inverse of parse_params)."""
    return b"".join(b";" + n if v is None else b";" + n + b"=" + v for n, v in params)


def param(params: Params, name: bytes) -> bytes | None:
    """The raw value of the first parameter called ``name`` (lower-case), or None.

    A flag parameter (no ``=``) yields ``b""``.
    """
    for n, v in params:
        if n == name:
            return b"" if v is None else v
    return None


# --- hosts and ports (shared by uri.py and via.py) -------------------------
#
# host         =  hostname / IPv4address / IPv6reference
# hostname     =  *( domainlabel "." ) toplabel [ "." ]
# domainlabel  =  alphanum / alphanum *( alphanum / "-" ) alphanum
# toplabel     =  ALPHA / ALPHA *( alphanum / "-" ) alphanum
# IPv4address  =  1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
# IPv6reference = "[" IPv6address "]"
# port         =  1*DIGIT
#
# One leniency: "_" is accepted inside hostname labels, as deployed DNS names
# (and most SIP stacks) use it although the ABNF does not.

ALPHA: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DIGIT: Final = b"0123456789"
HEXDIG: Final = b"0123456789abcdefABCDEF"
_LABEL: Final = rb"[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?"
_TOPLABEL: Final = rb"[A-Za-z](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?"
# dec-octet (0-255, leading zeros allowed as 1*3DIGIT has them): up to three
# digits, unless they spell 256-999. The same language as the alternation
# "25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9]", matched ~40 % faster (one digit run
# instead of three branches tried per octet; every Via and SIP URI host).
_DEC_OCTET: Final = rb"(?![3-9][0-9][0-9]|2[6-9][0-9]|25[6-9])[0-9]{1,3}"
HOSTNAME: Final = rb"(?:" + _LABEL + rb"\.)*" + _TOPLABEL + rb"\.?"
IPV4ADDRESS: Final = _DEC_OCTET + rb"(?:\." + _DEC_OCTET + rb"){3}"
# A regex beats a split-and-loop here: one C-level match instead of a dozen
# bytecode-level checks per host, on the hot path of every Via and URI.
_HOST_RE: Final = re.compile(IPV4ADDRESS + rb"|" + HOSTNAME)
# IPv4address with each octet 0-255 (leading zeros allowed, as 1*3DIGIT has
# them): exactly what _is_ipv4 accepts, in one C-level match.
_IPV4_RE: Final = re.compile(IPV4ADDRESS)
_IPV6_CHARS: Final = HEXDIG + b":."
# token chars plus WS: what a display name written as *(token LWS) may hold.
TOKEN_CHARS: Final = ALPHA + DIGIT + b"-.!%*_+`'~"
# gen-value = token / host / quoted-string: the unquoted alphabet.
_GEN_VALUE_CHARS: Final = TOKEN_CHARS + b"[]:"


def check_host(host: bytes) -> None:
    """Check that ``host`` is a hostname, an IPv4 address or an IPv6 reference.

    Raises:
        ParseError: it is none of the three (an unbracketed IPv6 address is
            rejected: RFC 5118 §4.3 "the IPv6 address MUST be enclosed in
            brackets" for it to be told apart from a port).
    """
    if not host:
        raise ParseError("empty host")
    if host[0] == 0x5B:
        if _ipv6_literal(host[1:-1]) is None or host[-1] != 0x5D:
            raise ParseError(f"bad IPv6 reference {host!r}")
        return
    if _HOST_RE.fullmatch(host) is None:
        raise ParseError(f"bad host {host!r}")


def _is_ipv4(labels: list[bytes]) -> bool:
    # The label-by-label definition _IPV4_RE replaced; the tests hold the
    # regex to it.
    if len(labels) != 4:
        return False
    for part in labels:
        # 1*3DIGIT, and no more than 255 (equal-length digit strings compare
        # like the numbers they spell).
        if not part.isdigit() or len(part) > 3 or (len(part) == 3 and part > b"255"):
            return False
    return True


def _ipv6_literal(value: bytes) -> ipaddress.IPv6Address | None:
    if len(value) < 2 or value.translate(None, _IPV6_CHARS):
        return None
    try:
        return ipaddress.IPv6Address(value.decode("ascii"))
    except ValueError:
        return None


def ip_key(host: bytes) -> bytes | None:
    """The packed address of an IPv4/IPv6 literal (IPv6 bracketed or not), else None.

    Used to compare addresses by value: ``[2001:DB8::1]`` and
    ``2001:db8:0::1`` are the same address.
    """
    if not host:
        return None
    if host[0] == 0x5B and host[-1] == 0x5D:
        host = host[1:-1]
    if host.find(b":") >= 0:
        v6 = _ipv6_literal(host)
        return None if v6 is None else v6.packed
    if _IPV4_RE.fullmatch(host) is None:
        return None
    return bytes(map(int, host.split(b".")))


def host_key(host: bytes) -> bytes:
    """A comparison key for a host: IPv6 references by value, others case-folded.

    RFC 3261 §19.1.4: "Comparisons of scheme name, domain names, parameter
    names, and header names are case-insensitive".
    """
    if host[:1] == b"[":
        key = ip_key(host)
        if key is not None:
            return b"[" + key + b"]"
    return host.lower()


def parse_port(value: bytes) -> int:
    """Parse ``port = 1*DIGIT``, limited to 0..65535.

    Raises:
        ParseError: not digits, or out of range.
    """
    if not value.isdigit() or len(value) > 5:
        raise ParseError(f"bad port {value!r}")
    port = int(value)
    if port > 65535:
        raise ParseError(f"port out of range {value!r}")
    return port


def split_hostport(value: bytes, *, lws: bool = False) -> tuple[bytes, int | None]:
    """Split and check ``hostport = host [ ":" port ]``.

    With ``lws`` (the Via sent-by, where COLON = SWS ":" SWS), white space
    around the colon is allowed.

    Raises:
        ParseError: a bad host or port, or an unbracketed IPv6 address.
    """
    if value[:1] == b"[":
        end = value.find(b"]")
        if end < 0:
            raise ParseError(f"unterminated IPv6 reference {value!r}")
        host, rest = value[: end + 1], value[end + 1 :]
        if lws:
            rest = rest.strip(WS)
        if rest and rest[0] != 0x3A:
            raise ParseError(f"junk after IPv6 reference {value!r}")
    else:
        colon = value.find(b":")
        if colon < 0:
            check_host(value)
            return value, None
        host, rest = value[:colon], value[colon:]
        if lws:
            host = host.rstrip(WS)
        if b":" in rest[1:]:
            # RFC 5118 §4.3: an IPv6 address in a host MUST be bracketed,
            # or its last group cannot be told apart from a port.
            raise ParseError(f"unbracketed IPv6 address {value!r}")
    check_host(host)
    if not rest:
        return host, None
    port_bytes = rest[1:]
    if lws:
        port_bytes = port_bytes.strip(WS)
    return host, parse_port(port_bytes)


def check_gen_values(params: Params) -> None:
    """Check unquoted generic-param values against ``gen-value = token / host``.

    Quoted-string values are left to :func:`parse_params`, which already
    checked that their quotes balance.

    Raises:
        ParseError: a value holds characters neither a token nor a host may hold.
    """
    for name, value in params:
        if value is not None and value[0] != 0x22 and value.translate(None, _GEN_VALUE_CHARS):
            raise ParseError(f"bad value for parameter {name!r}")


def set_param(params: Params, name: bytes, value: bytes | None) -> Params:
    """Return ``params`` with the first ``name`` set to ``value`` (appended if absent)."""
    for i, (n, _) in enumerate(params):
        if n == name:
            return (*params[:i], (name, value), *params[i + 1 :])
    return (*params, (name, value))


def remove_param(params: Params, name: bytes) -> Params:
    """Return ``params`` without any parameter called ``name``."""
    return tuple(p for p in params if p[0] != name)
