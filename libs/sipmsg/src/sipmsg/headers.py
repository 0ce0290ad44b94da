"""Header storage and the small typed header values sipmsg owns.

:class:`Headers` keeps every header line as it came off the wire, in order,
with its lower-case canonical name; it reads as ``(raw_name,
lower_canonical_name, value)`` triples (h11's ``Headers``), each value cut
from its line when asked for. Compact forms are mapped to their canonical
names in the lowered key only, so a message that says ``v:`` re-serializes
as ``v:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from ._abnf import (
    TOKEN,
    WS,
    Params,
    format_params,
    is_token,
    parse_params,
    slot_setters,
    split_comma,
)
from ._errors import LocalProtocolError, ParseError
from ._native import python_class

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "METHODS",
    "CSeq",
    "Headers",
    "MediaType",
    "canonical_name",
    "display_name",
    "parse_cseq",
    "parse_media_type",
    "parse_token_list",
    "parse_uint",
    "quick_param",
    "split_header_lines",
]

# RFC 3261 §7.3.3: "SIP provides a mechanism to represent common header field
# names in an abbreviated form." The first ten are §20's; the rest are the
# compact forms registered by later RFCs (3265, 3515, 3892, 4028, 3841, 4474).
COMPACT_FORMS: Final[dict[bytes, bytes]] = {
    b"i": b"call-id",
    b"m": b"contact",
    b"e": b"content-encoding",
    b"l": b"content-length",
    b"c": b"content-type",
    b"f": b"from",
    b"s": b"subject",
    b"k": b"supported",
    b"t": b"to",
    b"v": b"via",
    b"o": b"event",
    b"u": b"allow-events",
    b"r": b"refer-to",
    b"b": b"referred-by",
    b"x": b"session-expires",
    b"j": b"reject-contact",
    b"a": b"accept-contact",
    b"d": b"request-disposition",
    b"y": b"identity",
    b"n": b"identity-info",
}

# How a header is spelled when sipmsg writes it and names it in an error.
_DISPLAY: Final[dict[bytes, str]] = {
    n.lower().encode(): n
    for n in [
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "Identity",
        "Identity-Info",
        "In-Reply-To",
        "Max-Forwards",
        "MIME-Version",
        "Min-Expires",
        "Organization",
        "Path",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reject-Contact",
        "Reply-To",
        "Request-Disposition",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Session-Expires",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    ]
}

# RFC 3261 §7.3.1: "Multiple header field rows with the same field-name MAY be
# present in a message if and only if the entire field-value for that header
# field is defined as a comma-separated list". These are the headers whose
# grammar is such a list (the ``#`` rule); get_all() splits their values.
LIST_HEADERS: Final[frozenset[bytes]] = frozenset(
    b"accept accept-contact accept-encoding accept-language alert-info allow allow-events "
    b"call-info contact content-encoding content-language error-info in-reply-to path "
    b"proxy-require record-route reject-contact request-disposition require route "
    b"supported unsupported via warning".split()
)


def canonical_name(name: bytes | str) -> bytes:
    """The lower-case canonical name of a header, its compact form expanded.

    >>> canonical_name(b"V")
    b'via'
    """
    if type(name) is bytes:
        # The usual spellings (b"via", b"Call-ID", b"v" ...) in one dict hit.
        key = _KNOWN_RAW.get(name)
        if key is not None:
            return key
        raw = name
    else:
        raw = name.encode("ascii") if isinstance(name, str) else name
    low = raw.strip(WS).lower()
    return COMPACT_FORMS.get(low, low)


def display_name(lower: bytes) -> str:
    """The usual spelling of a canonical header name (``b"cseq"`` -> ``"CSeq"``)."""
    known = _DISPLAY.get(lower)
    if known is not None:
        return known
    return "-".join(p.capitalize() for p in lower.decode("ascii", "replace").split("-"))


METHODS: Final = frozenset(
    b"INVITE ACK BYE CANCEL OPTIONS REGISTER PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER "
    b"MESSAGE UPDATE".split()
)
"""The methods of RFC 3261 and its common extensions: tokens, no need to check."""

HeaderField = tuple[bytes, bytes, bytes]
"""One header line: (raw name, lower-case canonical name, value with folding undone)."""


class Headers:
    """The header lines of a message, in wire order.

    Iterating yields ``(raw_name, lower_canonical_name, value)`` triples. Each
    line's original bytes (folding and spacing included) are kept, so
    serializing writes an untouched line back byte for byte.
    Instances are immutable; the editing methods return new ones.

    Only the lines and their canonical names are stored: a value is cut from
    its line when it is asked for (a typed accessor reads it once and caches
    what it parses), and the triples are built only for iteration. A parsed
    message then holds two tuples for its whole header block instead of a
    triple and two more bytes objects per line.
    """

    __slots__ = ("_fields", "_folded", "_keys", "_lines")

    def __init__(
        self, lines: tuple[bytes, ...], keys: tuple[bytes, ...], folded: bool = False
    ) -> None:
        # Internal: parse() and the editing methods keep both tuples parallel;
        # each line is "name: value" (or as it came off the wire), the value
        # after its first colon. ``folded``: a line may hold a folded
        # continuation (CRLF and white space) to undo when its value is read.
        self._lines = lines
        self._keys = keys
        self._folded = folded
        self._fields: tuple[HeaderField, ...] | None = None

    def keys(self) -> tuple[bytes, ...]:
        """The canonical lower-case name of each line, in order."""
        return self._keys

    def single(self, key: bytes) -> tuple[int, bytes | None]:
        """How many lines have canonical name ``key``, and the first one's value."""
        # One pass of the compiled loop: 2-3x faster than tuple.count plus
        # tuple.index (each a generic method call) on every typed accessor.
        count = 0
        first = -1
        keys = self._keys
        for i in range(len(keys)):
            k = keys[i]
            if k is key or k == key:
                if not count:
                    first = i
                count += 1
        if not count:
            return 0, None
        return count, _value(self._lines[first], self._folded)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Build headers from ``(name, value)`` pairs, written ``name: value``.

        Raises:
            LocalProtocolError: a name is not a token, or a value holds CR or LF.
        """
        keys: list[bytes] = []
        lines: list[bytes] = []
        for name, value in pairs:
            key, line = make_line(name, value)
            keys.append(key)
            lines.append(line)
        return Headers(tuple(lines), tuple(keys))

    def _all_fields(self) -> tuple[HeaderField, ...]:
        fields = self._fields
        if fields is None:
            fields = self._fields = tuple([self[i] for i in range(len(self._keys))])
        return fields

    def __iter__(self) -> Iterator[HeaderField]:
        return iter(self._all_fields())

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index: int) -> HeaderField:
        line = self._lines[index]
        folded = self._folded
        return (_name(line, folded), self._keys[index], _value(line, folded))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._lines == other._lines

    def __hash__(self) -> int:
        return hash(self._lines)

    def __repr__(self) -> str:
        return f"Headers({list(self._all_fields())!r})"

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, bytes | str):
            return False
        return canonical_name(name) in self._keys

    @property
    def lines(self) -> tuple[bytes, ...]:
        """Each header line as it will be serialized, without its CRLF."""
        return self._lines

    def get(self, name: bytes | str) -> bytes | None:
        """The value of the first header line called ``name`` (any case or compact form)."""
        return self.single(canonical_name(name))[1]

    def get_lines(self, name: bytes | str) -> list[bytes]:
        """The value of every header line called ``name``, one item per line, unsplit."""
        return self._values(canonical_name(name))

    def _values(self, key: bytes) -> list[bytes]:
        """Like :meth:`get_lines`, for a canonical name (``b"via"``, ``b"record-route"``)."""
        out: list[bytes] = []
        lines, keys = self._lines, self._keys
        for i in range(len(keys)):
            k = keys[i]
            if k is key or k == key:
                out.append(_value(lines[i], self._folded))
        return out

    def _first_line(self, key: bytes) -> bytes | None:
        """The first stored line of canonical name ``key``, as it is, or None."""
        keys = self._keys
        for i in range(len(keys)):
            k = keys[i]
            if k is key or k == key:
                return self._lines[i]
        return None

    def _raw_lines(self, key: bytes) -> list[bytes]:
        """The stored lines of canonical name ``key``, as they are."""
        lines, keys = self._lines, self._keys
        return [lines[i] for i in range(len(keys)) if keys[i] is key or keys[i] == key]

    def get_all(self, name: bytes | str) -> list[bytes]:
        """Every value of header ``name``, in order, whichever way it was written.

        For the headers whose grammar is a comma-separated list (Via, Contact,
        Route, Allow, Supported ...) each line is split on its separating commas
        (quote- and angle-aware), so ``Via: a, b`` and two Via lines read the
        same. Any other header yields one item per line, unsplit: the commas of
        ``WWW-Authenticate`` or ``Date`` are not separators.

        Raises:
            ParseError: a list header holds an unterminated quoted-string.
        """
        key = canonical_name(name)
        values = self._values(key)
        if key not in LIST_HEADERS:
            return values
        out: list[bytes] = []
        try:
            for v in values:
                out.extend(split_comma(v))
        except ParseError as exc:
            raise ParseError(
                f"bad {display_name(key)} header: {exc.reason}", header=key.decode()
            ) from exc
        return out

    def append(self, name: bytes, value: bytes) -> Headers:
        """A copy with ``name: value`` added after the last line."""
        key, line = make_line(name, value)
        return Headers((*self._lines, line), (*self._keys, key), self._folded)

    def prepend(self, name: bytes, value: bytes) -> Headers:
        """A copy with ``name: value`` added before the first line."""
        key, line = make_line(name, value)
        return Headers((line, *self._lines), (key, *self._keys), self._folded)

    def remove(self, name: bytes | str) -> Headers:
        """A copy without any line called ``name``."""
        key = canonical_name(name)
        keys = self._keys
        if key not in keys:
            return Headers(self._lines, keys, self._folded)
        keep = [i for i, k in enumerate(keys) if k != key]
        lines = self._lines
        return Headers(
            tuple([lines[i] for i in keep]), tuple([keys[i] for i in keep]), self._folded
        )

    def replace_line(self, index: int, value: bytes) -> Headers:
        """A copy where line ``index`` holds ``value``, under the name it was written with.

        Every other line stays byte-identical, in place; the line's name keeps
        its spelling (``v:`` stays ``v:``). For a proxy's edits of one known
        line (the top Via's branch, the top Via value removed from a line that
        holds several), found by ``keys().index(key)``.

        Raises:
            IndexError: no line ``index``.
            LocalProtocolError: ``value`` holds CR or LF.
        """
        lines = self._lines
        raw = _name(lines[index], self._folded)
        if index < 0:
            index += len(lines)
        if value.find(b"\r") >= 0 or value.find(b"\n") >= 0:
            raise LocalProtocolError(f"header value for {raw!r} holds CR or LF")
        value = value.strip(WS)
        at = index + 1
        return Headers((*lines[:index], raw + b": " + value, *lines[at:]), self._keys, self._folded)

    def remove_line(self, index: int) -> Headers:
        """A copy without line ``index``; every other line stays as it was.

        Raises:
            IndexError: no line ``index``.
        """
        lines = self._lines
        if not -len(lines) <= index < len(lines):
            raise IndexError("header line index out of range")
        if index < 0:
            index += len(lines)
        at = index + 1
        keys = self._keys
        return Headers((*lines[:index], *lines[at:]), (*keys[:index], *keys[at:]), self._folded)

    def replace(self, name: bytes, value: bytes) -> Headers:
        """A copy where the first line called ``name`` becomes ``name: value`` and
        any other line of that name is dropped; appended when there was none."""
        key = canonical_name(name)
        _, line = make_line(name, value)
        keys = self._keys
        lines = self._lines
        count = keys.count(key)
        if not count:
            return Headers((*lines, line), (*keys, key), self._folded)
        at = keys.index(key)
        if count == 1:
            return Headers((*lines[:at], line, *lines[at + 1 :]), keys, self._folded)
        # Several lines of that name: drop them all and put the new one where
        # the first was (no line before it is dropped, so "at" still holds).
        rest = self.remove(key)
        lines, keys = rest._lines, rest._keys
        return Headers(
            (*lines[:at], line, *lines[at:]), (*keys[:at], key, *keys[at:]), self._folded
        )


def line_value(line: bytes) -> bytes:
    """The value of one stored header line: after its first colon, folding undone, stripped.

    LWS = [*WSP CRLF] 1*WSP (§25.1): a folded value reads as if joined by one SP.
    """
    return _value(line, True)


def copied_line(prefix: bytes, line: bytes, folded: bool) -> bytes:
    """``prefix`` (``b"Via: "``) and the value of stored ``line``: ``line`` itself when it reads so.

    For a response's copies of the request's lines (§8.2.6.2): a line written
    ``Via: value``, unpadded, is shared instead of cut and joined again.
    """
    n = len(line)
    at = len(prefix)
    if (
        not folded
        and n > at
        and line[at] != 0x20
        and line[at] != 0x09
        and line[n - 1] != 0x20
        and line[n - 1] != 0x09
        and line[:at] == prefix
    ):
        return line
    return prefix + _value(line, folded)


def _value(line: bytes, folded: bool) -> bytes:
    # ``folded`` False: the line is known to hold no CRLF (no find for it).
    if folded and line.find(b"\n") >= 0:
        line = _FOLD_RE.sub(b" ", line)
    n = len(line)
    # Index scans, not find() and strip(): one slice and no method call
    # (compiled, line[i] is a direct read). Every stored line has a colon.
    i = 0
    while i < n and line[i] != 0x3A:
        i += 1
    i += 1
    while i < n and (line[i] == 0x20 or line[i] == 0x09):
        i += 1
    j = n
    while j > i and (line[j - 1] == 0x20 or line[j - 1] == 0x09):
        j -= 1
    return line[i:j]


def line_name(line: bytes) -> bytes:
    """The name of one stored header line as written (``v``, ``Via``), blanks before ":" cut."""
    return _name(line, True)


def _name(line: bytes, folded: bool) -> bytes:
    if folded and line.find(b"\n") >= 0:
        line = _FOLD_RE.sub(b" ", line)
    name = line[: line.find(b":")]
    if name in _KNOWN_RAW:
        return name
    return name.rstrip(WS)


def make_line(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """The canonical key and the wire line ``name: value`` (value stripped) of one new header line.

    Raises:
        LocalProtocolError: ``name`` is not a token, or ``value`` holds CR or LF.
    """
    key = _KNOWN_RAW.get(name)  # a usual spelling is a token: no regex
    if key is None:
        if not is_token(name):
            raise LocalProtocolError(f"header name {name!r} is not a token")
        key = canonical_name(name)
    if value.find(b"\r") >= 0 or value.find(b"\n") >= 0:
        raise LocalProtocolError(f"header value for {name!r} holds CR or LF")
    return key, name + b": " + value.strip(WS)


# ---------------------------------------------------------------------------
# Splitting the header block

# LWS = [*WSP CRLF] 1*WSP (§25.1); a folded line continues the previous one.
_FOLD_RE: Final = re.compile(rb"[ \t]*\r?\n[ \t]+")
_NAME_RE: Final = re.compile(rb"\A" + TOKEN + rb"\Z")
_CONTENT_LENGTH: Final = b"content-length"


def _known_raw() -> dict[bytes, bytes]:
    """Header names as they are usually spelled on the wire -> canonical key.

    A hit skips lower-casing and the token check. Every spelling of a name maps
    to one shared key object, so ``key is _CONTENT_LENGTH`` is a valid test.
    """
    keys = {_CONTENT_LENGTH: _CONTENT_LENGTH}
    table: dict[bytes, bytes] = {}
    for lower in _COMMON_NAMES:
        key = keys.setdefault(lower, lower)
        shown = display_name(lower).encode()
        titled = b"-".join(p.capitalize() for p in lower.split(b"-"))
        for spelling in (lower, lower.upper(), shown, titled):
            table[spelling] = key
    for short, lower in COMPACT_FORMS.items():
        key = keys.setdefault(lower, lower)
        table[short] = table[short.upper()] = key
    return table


_COMMON_NAMES: Final = (
    b"via call-id cseq from to contact content-length content-type max-forwards route "
    b"record-route expires allow supported require user-agent server authorization "
    b"proxy-authorization www-authenticate proxy-authenticate accept date subject path event "
    b"allow-events proxy-require unsupported content-disposition content-encoding min-expires "
    b"accept-encoding accept-language alert-info call-info error-info organization priority "
    b"reply-to retry-after timestamp warning session-expires min-se refer-to referred-by "
    b"p-asserted-identity p-preferred-identity privacy rack rseq mime-version in-reply-to "
    b"authentication-info identity identity-info reason"
).split()
_KNOWN_RAW: Final = _known_raw()


def _unfold(lines: list[bytes]) -> list[bytes]:
    """Join each continuation line to the line it continues, CRLF kept."""
    out: list[bytes] = []
    for ln in lines:
        if ln[:1] in (b" ", b"\t"):
            if not out:
                raise ParseError("header block starts with a continuation line")
            out[-1] += b"\r\n" + ln
        else:
            out.append(ln)
    return out


class _FoldedError(Exception):
    """A header line starts with white space: the block needs unfolding first."""


def split_header_lines(lines: list[bytes]) -> tuple[Headers, int | None]:
    """Build :class:`Headers` from the header block's lines (start line excluded).

    Returns:
        The headers and the Content-Length value, or None when there is none.

    Raises:
        ParseError: a line has no colon or a bad name, Content-Length appears
            twice or is not a number.
    """
    folded = False
    try:
        keys = _split_keys(lines)
    except _FoldedError:
        folded = True
        # LWS = [*WSP CRLF] 1*WSP (§25.1): a line that starts with white space
        # continues the previous one; the value reads as if joined by one SP.
        lines = _unfold(lines)
        try:
            keys = _split_keys([_FOLD_RE.sub(b" ", ln) for ln in lines])
        except _FoldedError:
            # Only an empty line continued by a folded one comes here: joined,
            # it still starts with white space. An empty line is no header.
            raise ParseError("empty header line") from None
    content_length: int | None = None
    if _CONTENT_LENGTH in keys:
        at = keys.index(_CONTENT_LENGTH)
        if _CONTENT_LENGTH in keys[at + 1 :]:
            raise ParseError("more than one Content-Length header", header="content-length")
        content_length = parse_uint(line_value(lines[at]), header="content-length")
    return Headers(tuple(lines), tuple(keys), folded), content_length


def _split_keys(lines: list[bytes]) -> list[bytes]:
    # The hot loop of every parse: one find, one slice and one dict hit per
    # line for the usual spellings; anything else takes _slow_name. Only the
    # canonical names are kept (values are cut from the lines on demand). The
    # dict and list methods are called on the objects, not through bound
    # methods kept in locals: compiled, those are direct C calls (the locals
    # were generic calls, ~15 ns more per line).
    keys: list[bytes] = []
    for ln in lines:
        # The colon by a compiled index scan (a name is a few octets): cheaper
        # than a bytes.find call, which compiled is a generic method call.
        n = len(ln)
        colon = 0
        while colon < n and ln[colon] != 0x3A:
            colon += 1
        if colon == n:
            colon = -1
        key = _KNOWN_RAW.get(ln[:colon]) if colon > 0 else None
        if key is None:
            if ln[:1] in (b" ", b"\t"):
                raise _FoldedError
            key = _slow_name(ln, colon)
        keys.append(key)
    return keys


def _slow_name(line: bytes, colon: int) -> bytes:
    if colon < 0:
        raise ParseError(f"header line without a colon: {line[:40]!r}")
    # HCOLON = *( SP / HTAB ) ":" SWS
    name = line[:colon].rstrip(WS)
    low = name.lower()
    key = _KNOWN_RAW.get(low)
    if key is None:
        if _NAME_RE.match(low) is None:
            raise ParseError(f"bad header name {name[:40]!r}")
        key = low
    return key


# ---------------------------------------------------------------------------
# Typed values


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class CSeq:
    """A CSeq header (RFC 3261 §20.16): ``CSeq: 4711 INVITE``."""

    seq: int
    """The sequence number, below 2**31."""
    method: bytes
    """The method, case-sensitive as on the wire."""

    def __bytes__(self) -> bytes:
        return b"%d %s" % (self.seq, self.method)


_SET_SEQ, _SET_METHOD = slot_setters(CSeq, "seq", "method")


def parse_cseq(value: bytes) -> CSeq:
    """Parse a CSeq header value.

    §20.16: "The sequence number MUST be expressible as a 32-bit unsigned
    integer and MUST be less than 2**31."  ``CSeq = "CSeq" HCOLON 1*DIGIT LWS Method``

    Raises:
        ParseError: "bad CSeq header" (400).
    """
    # The usual "4711 INVITE": digits, one SP, a known method (a token, so
    # nothing else to check), read by a compiled index scan.
    n = len(value)
    at = 0
    seq = 0
    while at < n and at < 10 and 0x30 <= value[at] <= 0x39:
        seq = seq * 10 + (value[at] - 0x30)
        at += 1
    if 0 < at < 10 and at < n and value[at] == 0x20:
        known = value[at + 1 :]
        if known in METHODS:
            return _new_cseq(seq, known)
    parts = value.split()
    if len(parts) != 2:
        raise ParseError("bad CSeq header", header="cseq")
    digits, method = parts
    if not digits.isdigit() or (method not in METHODS and not is_token(method)):
        raise ParseError("bad CSeq header", header="cseq")
    seq = int(digits) if len(digits) < 11 else 2**31
    if seq >= 2**31:
        raise ParseError("bad CSeq header: sequence number too large", header="cseq")
    return _new_cseq(seq, method)


def _new_cseq(seq: int, method: bytes) -> CSeq:
    cseq = object.__new__(CSeq)
    _SET_SEQ(cseq, seq)
    _SET_METHOD(cseq, method)
    return cseq


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class MediaType:
    """A Content-Type value (RFC 3261 §20.15): ``application/sdp;charset=utf-8``."""

    type: bytes
    """The top-level type, lower-cased (media types are case-insensitive)."""
    subtype: bytes
    """The subtype, lower-cased."""
    params: Params = ()
    """Parameters in wire order: (lower-case name, raw value or None)."""

    @property
    def mime(self) -> bytes:
        """``type/subtype`` without parameters, for comparisons."""
        return self.type + b"/" + self.subtype

    def __bytes__(self) -> bytes:
        return self.type + b"/" + self.subtype + format_params(self.params)


_SET_TYPE, _SET_SUBTYPE, _SET_MT_PARAMS = slot_setters(MediaType, "type", "subtype", "params")


def parse_media_type(value: bytes) -> MediaType:
    """Parse ``m-type SLASH m-subtype *(SEMI m-parameter)`` (§20.15, §25.1).

    Raises:
        ParseError: "bad Content-Type header" (400).
    """
    head, _, rest = value.partition(b";")
    mtype, slash, sub = head.partition(b"/")
    mtype = mtype.strip(WS)
    sub = sub.strip(WS)
    if not slash or not is_token(mtype) or not is_token(sub):
        raise ParseError("bad Content-Type header", header="content-type")
    try:
        params = parse_params(rest, header="content-type") if rest else ()
    except ParseError as exc:
        raise ParseError(f"bad Content-Type header: {exc.reason}", header="content-type") from exc
    media = object.__new__(MediaType)
    _SET_TYPE(media, mtype.lower())
    _SET_SUBTYPE(media, sub.lower())
    _SET_MT_PARAMS(media, params)
    return media


# 1*token separated by COMMA (SWS "," SWS), blanks around the whole allowed.
_TOKEN_LIST_RE: Final = re.compile(rb"[ \t]*" + TOKEN + rb"(?:[ \t]*,[ \t]*" + TOKEN + rb")*[ \t]*")


def parse_token_list(value: bytes, *, header: str = "header") -> tuple[bytes, ...]:
    """Parse a comma-separated list of tokens (Allow, Supported, Require ...).

    An empty value is an empty list: ``Supported = ( "Supported" / "k" ) HCOLON
    [option-tag *(COMMA option-tag)]``.

    Raises:
        ParseError: an element is not a token.
    """
    if _TOKEN_LIST_RE.fullmatch(value) is not None:
        # Tokens hold no quote, "<" or blank: split_comma is a plain split.
        return tuple([x.strip(WS) for x in value.split(b",")])
    items = split_comma(value)
    for item in items:
        if not is_token(item):
            raise ParseError(f"bad {display_name(header.encode())} header", header=header)
    return tuple(items)


def quick_param(value: bytes, marker: bytes) -> tuple[bool, bytes | None]:
    """Read one header parameter (``marker`` like ``b";tag="``) without a full parse.

    For the edge's classifying parse: the From/To tag and the top Via branch
    in the common, plainly written case. Returns ``(True, value or None)``
    when the answer is certain, ``(False, None)`` when the value needs the real
    parser (quotes, white space around ``=``, an odd parameter value).
    """
    if value.find(b'"') >= 0:
        return False, None
    if value.find(b"<") >= 0:
        params = value[value.rfind(b">") + 1 :]
    else:
        # §20.10: without angle brackets, everything after the first ";" is a
        # header parameter (and a via-parm's parameters follow its sent-by).
        start = value.find(b";")
        if start < 0:
            return True, None
        params = value[start:]
    low = params.lower()
    at = low.find(marker)
    if at < 0:
        return low.find(marker[1:-1]) < 0, None
    if at and low.find(marker[:-1], 0, at + len(marker) - 2) >= 0:
        # An earlier parameter whose name starts the same (";tag;tag=b",
        # ";TAG=a;tag=b", ";tagx=1;tag=b"): the first parameter of that name
        # is what the typed value reads, so only the real parser can tell.
        return False, None
    at += len(marker)
    # The value runs to the next ";" (a compiled index scan, no find calls).
    n = len(params)
    end = at
    while end < n:
        c = params[end]
        if c == 0x3B:
            break
        if c in (0x20, 0x09):
            return False, None
        end += 1
    if end == at:
        return False, None
    return True, params[at:end]


def parse_uint(value: bytes, *, header: str, maximum: int = 2**32 - 1) -> int:
    """Parse ``1*DIGIT`` up to ``maximum`` (Max-Forwards, Expires, Content-Length ...).

    Raises:
        ParseError: not digits, or above ``maximum`` (400).
    """
    size = len(value)
    if 0 < size < 10:
        # The usual case: short, without white space; summed by a compiled
        # loop (no isdigit and int calls).
        n = 0
        for i in range(size):
            c = value[i]
            if c < 0x30 or c > 0x39:
                break
            n = n * 10 + (c - 0x30)
        else:
            if n <= maximum:
                return n
    v = value.strip(WS)
    # isdigit() accepts non-ASCII digits only for str; on bytes it is ASCII 0-9.
    if not v.isdigit() or (len(v) > 20 or int(v) > maximum):
        raise ParseError(f"bad {display_name(header.encode())} header", header=header)
    return int(v)
