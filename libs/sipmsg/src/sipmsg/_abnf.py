"""RFC 3261 §25 grammar fragments and the small scanners every header parser shares.

The regexes are compiled once at import from these strings: they are constant
data, not state.
"""

from __future__ import annotations

import re
from typing import Final

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

Params = tuple[tuple[bytes, bytes | None], ...]
"""Generic parameters in wire order: (lower-cased name, raw value or None)."""


def is_token(value: bytes) -> bool:
    """True when ``value`` is a non-empty RFC 3261 token."""
    return TOKEN_FULL_RE.match(value) is not None


def split_comma(value: bytes) -> list[bytes]:
    """Split a header value on the commas that separate its elements.

    RFC 3261 §7.3.1: a header field whose value is a comma-separated list may
    be written as several header fields, and vice versa. Commas inside a
    quoted-string (``"Doe, John"``) or inside ``<...>`` (a URI may carry
    commas in its headers part) do not split. Empty elements are dropped and
    each element is stripped of surrounding white space.
    """
    if b"," not in value:
        stripped = value.strip(WS)
        return [stripped] if stripped else []
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
