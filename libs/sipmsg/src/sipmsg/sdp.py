"""SDP session descriptions (RFC 8866, formerly RFC 4566), parsed once and kept verbatim.

:func:`parse_sdp` checks the structure and gives typed access to what a SIP
platform acts on: origin, connection data, media lines, bandwidths, timing and
attributes. The raw lines are kept, so ``bytes(sdp)`` is the input byte for
byte (line endings included), and the ``with_*`` / ``without_*`` editors return
a new description in which only the lines they touch have changed: what a
media anchor needs to rewrite ``c=`` and ``m=`` and nothing else.

RFC 8866 §5: "An SDP description consists of a number of lines of text of the
form: <type>=<value> where <type> MUST be exactly one case-significant
character". Lines of a type this module does not know are kept as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Final

from ._errors import LocalProtocolError, ParseError
from ._native import python_class

__all__ = [
    "DIRECTIONS",
    "Attribute",
    "Bandwidth",
    "Connection",
    "Media",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "Timing",
    "parse_sdp",
]

#: The direction attributes of RFC 3264 §5.1 / RFC 8866 §6.7.
DIRECTIONS: Final = (b"sendrecv", b"sendonly", b"recvonly", b"inactive")

# RFC 8866 §5: "the sequence CRLF (0x0d0a) is used to end a line, although
# parsers SHOULD be tolerant and also accept lines terminated with a single
# newline character". A line is everything up to and including its LF.
_LINE_RE: Final = re.compile(rb"[^\n]*\n|[^\n]+\Z")
# token-char = ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
#              "-" / "." / "^" / "_" / "`" / "{" / "|" / "}" / "~"
_TOKEN_RE: Final = re.compile(rb"\A[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+\Z")
_DIGITS_RE: Final = re.compile(rb"\A[0-9]+\Z")
# byte-string = 1*(%x01-09/%x0B-0C/%x0E-FF): no NUL, CR or LF inside a value.
_BAD_VALUE_RE: Final = re.compile(rb"[\x00\r\n]")
_RTPMAP_RE: Final = re.compile(rb"\A([0-9]+) +([^/ ]+)/([0-9]+)(?:/(.+))?\Z")


# --- value types ------------------------------------------------------------------


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``."""

    username: bytes
    sess_id: bytes
    #: Kept as bytes: an identifier, compared and echoed, never computed with.
    sess_version: int
    #: RFC 3264 §8: incremented by one for each new offer or answer that changes.
    nettype: bytes
    addrtype: bytes
    address: bytes

    def __bytes__(self) -> bytes:
        version = str(self.sess_version).encode("ascii")
        fields = (self.username, self.sess_id, version, self.nettype, self.addrtype, self.address)
        return b" ".join(fields)


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 8866 §5.7)."""

    nettype: bytes
    addrtype: bytes
    address: bytes
    #: As written, with any multicast ``/ttl/count`` suffix.

    def __bytes__(self) -> bytes:
        return b" ".join((self.nettype, self.addrtype, self.address))


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (RFC 8866 §5.8); kilobits per second for AS/CT."""

    bwtype: bytes
    bandwidth: int


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """``t=<start-time> <stop-time>`` in NTP seconds; 0 0 is a permanent session."""

    start: int
    stop: int


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Attribute:
    """``a=<name>`` (a flag: value None) or ``a=<name>:<value>`` (RFC 8866 §5.13)."""

    name: bytes
    value: bytes | None = None

    def __bytes__(self) -> bytes:
        return self.name if self.value is None else self.name + b":" + self.value


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]``."""

    payload_type: int
    encoding: bytes
    clock_rate: int
    parameters: bytes | None = None
    #: For audio, the number of channels (``opus/48000/2``).


def _find(attributes: tuple[Attribute, ...], name: bytes) -> bytes | None:
    for a in attributes:
        if a.name == name:
            return b"" if a.value is None else a.value
    return None


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    """One media description: the ``m=`` line and the lines up to the next ``m=``."""

    media: bytes
    #: audio, video, text, application, message ...
    port: int
    port_count: int | None
    #: The ``/<number of ports>`` suffix, None when absent.
    proto: bytes
    #: RTP/AVP, RTP/SAVPF, UDP/TLS/RTP/SAVPF, UDP/DTLS/SCTP ...
    formats: tuple[bytes, ...]
    information: bytes | None = None
    connections: tuple[Connection, ...] = ()
    #: This media's own ``c=`` lines.
    connection: Connection | None = None
    #: The connection that applies: the first own ``c=``, else the session's.
    bandwidths: tuple[Bandwidth, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    direction: bytes = b"sendrecv"
    #: The direction that applies: this media's attribute, else the session's,
    #: else sendrecv (RFC 3264 §5.1: if none is present, "sendrecv" SHOULD be
    #: assumed as the default).

    def attribute(self, name: bytes) -> bytes | None:
        """The value of the first ``a=name``; ``b""`` for a flag, None when absent."""
        return _find(self.attributes, name)

    def attribute_values(self, name: bytes) -> tuple[bytes, ...]:
        """The values of every ``a=name`` (``b""`` for flags), in order."""
        return tuple(b"" if a.value is None else a.value for a in self.attributes if a.name == name)

    @property
    def rtpmaps(self) -> tuple[RtpMap, ...]:
        """The well-formed ``a=rtpmap`` attributes, in order; malformed ones are skipped."""
        maps = []
        for value in self.attribute_values(b"rtpmap"):
            m = _RTPMAP_RE.match(value.strip())
            if m is not None:
                pt, enc, rate, params = m.groups()
                maps.append(
                    RtpMap(
                        payload_type=int(pt), encoding=enc, clock_rate=int(rate), parameters=params
                    )
                )
        return tuple(maps)

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """The rtpmap of ``payload_type``, or None (static types may have none)."""
        for m in self.rtpmaps:
            if m.payload_type == payload_type:
                return m
        return None

    def fmtp(self, payload_type: int) -> bytes | None:
        """The format parameters of ``a=fmtp:<payload_type> <params>``, or None."""
        prefix = str(payload_type).encode("ascii")
        for value in self.attribute_values(b"fmtp"):
            fmt, _, params = value.partition(b" ")
            if fmt == prefix:
                return params.strip()
        return None


# --- parsing ----------------------------------------------------------------------


def _error(reason: str) -> ParseError:
    return ParseError(reason, header="content-type")


def _content(raw: bytes) -> bytes:
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    return raw[:-1] if raw.endswith(b"\n") else raw


def _split(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(raw line with terminator, type, value) for each line; type b"" for a blank line."""
    out = []
    for m in _LINE_RE.finditer(data):
        raw = m.group()
        line = _content(raw)
        if not line:
            # Blank lines are not SDP, but a trailing extra CRLF is common.
            out.append((raw, b"", b""))
            continue
        kind, value = line[:1], line[2:]
        if line[1:2] != b"=" or not b"a" <= kind <= b"z":
            raise _error(f"SDP line is not <type>=<value>: {line[:30]!r}")
        if _BAD_VALUE_RE.search(value):
            raise _error(f"SDP {kind.decode()}= line holds a NUL or CR")
        out.append((raw, kind, value))
    return out


def _fields(kind: bytes, value: bytes, count: int | None, minimum: int = 0) -> list[bytes]:
    fields = value.split()
    if (count is not None and len(fields) != count) or len(fields) < minimum:
        raise _error(f"SDP {kind.decode()}= line has {len(fields)} fields")
    return fields


def _int(kind: bytes, value: bytes) -> int:
    if not _DIGITS_RE.match(value):
        raise _error(f"SDP {kind.decode()}= field is not a number: {value[:20]!r}")
    return int(value)


def _origin(value: bytes) -> Origin:
    user, sess_id, version, nettype, addrtype, address = _fields(b"o", value, 6)
    return Origin(
        username=user,
        sess_id=sess_id,
        sess_version=_int(b"o", version),
        nettype=nettype,
        addrtype=addrtype,
        address=address,
    )


def _connection(value: bytes) -> Connection:
    nettype, addrtype, address = _fields(b"c", value, 3)
    return Connection(nettype=nettype, addrtype=addrtype, address=address)


def _bandwidth(value: bytes) -> Bandwidth:
    bwtype, colon, amount = value.partition(b":")
    if not colon or not _TOKEN_RE.match(bwtype):
        raise _error("SDP b= line is not <bwtype>:<bandwidth>")
    return Bandwidth(bwtype=bwtype, bandwidth=_int(b"b", amount))


def _timing(value: bytes) -> Timing:
    start, stop = _fields(b"t", value, 2)
    return Timing(start=_int(b"t", start), stop=_int(b"t", stop))


def _attribute(value: bytes) -> Attribute:
    name, colon, rest = value.partition(b":")
    if not _TOKEN_RE.match(name):
        raise _error(f"SDP attribute name is not a token: {name[:20]!r}")
    return Attribute(name=name, value=rest if colon else None)


def _media_line(value: bytes) -> tuple[bytes, int, int | None, bytes, tuple[bytes, ...]]:
    # m=<media> <port>[/<number of ports>] <proto> <fmt> ...
    fields = _fields(b"m", value, None, minimum=3)
    port_text, slash, count_text = fields[1].partition(b"/")
    port = _int(b"m", port_text)
    count = _int(b"m", count_text) if slash else None
    if port > 65535 or count == 0:
        raise _error("SDP m= port out of range")
    return fields[0], port, count, fields[2], tuple(fields[3:])


@python_class
@dataclass(slots=True)
class _Section:
    """Mutable scratch space for one section while parsing."""

    information: bytes | None = None
    connections: list[Connection] = field(default_factory=list)
    bandwidths: list[Bandwidth] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)

    def add(self, kind: bytes, value: bytes) -> None:
        # k=, u=, e=, p=, r=, z= and unknown types are kept raw only.
        if kind == b"i":
            self.information = value
        elif kind == b"c":
            self.connections.append(_connection(value))
        elif kind == b"b":
            self.bandwidths.append(_bandwidth(value))
        elif kind == b"a":
            self.attributes.append(_attribute(value))


def _direction(attributes: tuple[Attribute, ...]) -> bytes | None:
    for a in attributes:
        if a.value is None and a.name in DIRECTIONS:
            return a.name
    return None


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body.

    Args:
        data: the body, CRLF or LF line endings.

    Returns:
        The description; ``bytes()`` of it is ``data``.

    Raises:
        ParseError: (400) not SDP: no ``v=`` first, no ``o=`` or ``s=``, a line
            not of the form ``<type>=<value>``, a malformed ``o= c= m= b= t= a=``.
    """
    lines = _split(data)
    kinds = [(k, v) for _, k, v in lines if k]
    if not kinds or kinds[0][0] != b"v":
        raise _error("SDP does not start with v=")
    session = _Section()
    origin: Origin | None = None
    name: bytes | None = None
    times: list[Timing] = []
    media: list[tuple[tuple[bytes, int, int | None, bytes, tuple[bytes, ...]], _Section]] = []
    for kind, value in kinds[1:]:
        if kind == b"m":
            media.append((_media_line(value), _Section()))
        elif kind in b"vost" and media:
            raise _error(f"SDP {kind.decode()}= line inside a media description")
        elif media:
            media[-1][1].add(kind, value)
        elif kind == b"v":
            raise _error("SDP has two v= lines")
        elif kind == b"o":
            if origin is not None:
                raise _error("SDP has two o= lines")
            origin = _origin(value)
        elif kind == b"s":
            if name is not None:
                raise _error("SDP has two s= lines")
            name = value
        elif kind == b"t":
            times.append(_timing(value))
        else:
            session.add(kind, value)
    if origin is None or name is None:
        raise _error("SDP without o= or s=")
    if len(session.connections) > 1:
        raise _error("SDP has two session-level c= lines")
    return _build(
        lines=lines, version=kinds[0][1], origin=origin, name=name, times=times,
        session=session, media=media,
    )  # fmt: skip


def _build(
    *,
    lines: list[tuple[bytes, bytes, bytes]],
    version: bytes,
    origin: Origin,
    name: bytes,
    times: list[Timing],
    session: _Section,
    media: list[tuple[tuple[bytes, int, int | None, bytes, tuple[bytes, ...]], _Section]],
) -> SessionDescription:
    s_conn = session.connections[0] if session.connections else None
    s_attrs = tuple(session.attributes)
    s_dir = _direction(s_attrs) or b"sendrecv"
    built = []
    for (kind, port, count, proto, formats), sec in media:
        attrs = tuple(sec.attributes)
        conns = tuple(sec.connections)
        built.append(
            Media(
                media=kind,
                port=port,
                port_count=count,
                proto=proto,
                formats=formats,
                information=sec.information,
                connections=conns,
                connection=conns[0] if conns else s_conn,
                bandwidths=tuple(sec.bandwidths),
                attributes=attrs,
                direction=_direction(attrs) or s_dir,
            )
        )
    return SessionDescription(
        lines=tuple(raw for raw, _, _ in lines),
        version=_int(b"v", version),
        origin=origin,
        session_name=name,
        information=session.information,
        connection=s_conn,
        bandwidths=tuple(session.bandwidths),
        times=tuple(times),
        attributes=s_attrs,
        media=tuple(built),
    )


# --- the description and its editors ---------------------------------------------------


def _kind(raw: bytes) -> bytes:
    return raw[:1] if raw[1:2] == b"=" else b""


def _check_value(value: bytes, what: str) -> None:
    if not value or _BAD_VALUE_RE.search(value) or b" " in value or b"\t" in value:
        raise LocalProtocolError(f"bad SDP {what}: {value!r}")


def _addrtype(address: bytes) -> bytes:
    return b"IP6" if b":" in address else b"IP4"


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    """A parsed SDP body: typed fields plus the raw lines ``bytes()`` joins back."""

    lines: tuple[bytes, ...]
    #: Every line as received, each with its own line ending (the last may have none).
    version: int
    origin: Origin
    session_name: bytes
    information: bytes | None = None
    connection: Connection | None = None
    #: The session-level ``c=``, which media without their own inherit.
    bandwidths: tuple[Bandwidth, ...] = ()
    times: tuple[Timing, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    #: Session-level attributes only; each :class:`Media` has its own.
    media: tuple[Media, ...] = ()

    def __bytes__(self) -> bytes:
        return b"".join(self.lines)

    @property
    def line_ending(self) -> bytes:
        """The ending of the first line: what new lines are written with."""
        first = self.lines[0] if self.lines else b""
        return b"\n" if first.endswith(b"\n") and not first.endswith(b"\r\n") else b"\r\n"

    def attribute(self, name: bytes) -> bytes | None:
        """The value of the first session-level ``a=name``; ``b""`` for a flag."""
        return _find(self.attributes, name)

    # -- editors: each returns a new description; untouched lines stay identical --

    def with_connection_address(
        self, address: bytes, *, addrtype: bytes | None = None, media: int | None = None
    ) -> SessionDescription:
        """Rewrite the address of ``c=`` lines, as a media anchor does.

        Args:
            address: the new unicast address (any multicast ``/ttl`` is dropped).
            addrtype: IP4 or IP6; by default IP6 when the address has a colon.
            media: only that media description (a ``c=`` line is added to it
                when it has none); None rewrites every ``c=`` line.

        Raises:
            LocalProtocolError: a bad address or media index.
        """
        _check_value(address, "address")
        kind = addrtype or _addrtype(address)
        _check_value(kind, "addrtype")
        lines = list(self.lines)
        start, end = (0, len(lines)) if media is None else self._bounds(media)
        found = False
        for i in range(start, end):
            if _kind(lines[i]) == b"c":
                nettype = _content(lines[i])[2:].split()[0]
                lines[i] = self._line(b"c=" + b" ".join((nettype, kind, address)), lines[i])
                found = True
        if not found and media is not None:
            at = start + 1
            while at < end and _kind(lines[at]) == b"i":
                at += 1
            self._insert(lines, at, b"c=IN " + kind + b" " + address)
        return parse_sdp(b"".join(lines))

    def with_origin_address(
        self, address: bytes, *, addrtype: bytes | None = None
    ) -> SessionDescription:
        """Rewrite the ``o=`` unicast-address (and its addrtype)."""
        _check_value(address, "address")
        kind = addrtype or _addrtype(address)
        _check_value(kind, "addrtype")
        return self._with_origin(replace(self.origin, addrtype=kind, address=address))

    def with_session_version(self, version: int) -> SessionDescription:
        """Set the ``o=`` sess-version (RFC 3264 §8: one more on each changed offer)."""
        if version < 0:
            raise LocalProtocolError("sess-version must not be negative")
        return self._with_origin(replace(self.origin, sess_version=version))

    def _with_origin(self, new: Origin) -> SessionDescription:
        lines = list(self.lines)
        i = next(i for i, raw in enumerate(lines) if _kind(raw) == b"o")
        lines[i] = self._line(b"o=" + bytes(new), lines[i])
        return parse_sdp(b"".join(lines))

    def with_media_port(self, index: int, port: int) -> SessionDescription:
        """Set the port of media ``index``; port 0 rejects the stream (RFC 3264 §6)."""
        if not 0 <= port <= 65535:
            raise LocalProtocolError(f"bad port {port}")
        lines = list(self.lines)
        start, _ = self._bounds(index)
        fields = _content(lines[start])[2:].split()
        _, slash, count = fields[1].partition(b"/")
        fields[1] = str(port).encode("ascii") + slash + count
        lines[start] = self._line(b"m=" + b" ".join(fields), lines[start])
        return parse_sdp(b"".join(lines))

    def with_attribute(
        self, name: bytes, value: bytes | None = None, *, media: int | None = None
    ) -> SessionDescription:
        """Set ``a=name[:value]`` at session level or in media ``media``.

        The first existing ``a=name`` of that section is replaced in place and
        any others removed; without one the line is appended to the section.
        """
        return self._set_attributes(frozenset({name}), Attribute(name=name, value=value), media)

    def without_attribute(self, name: bytes, *, media: int | None = None) -> SessionDescription:
        """Remove every ``a=name`` of the session level or of media ``media``."""
        return self._set_attributes(frozenset({name}), None, media)

    def with_direction(self, direction: bytes, *, media: int | None = None) -> SessionDescription:
        """Replace whichever direction attribute the section has by ``direction``."""
        if direction not in DIRECTIONS:
            raise LocalProtocolError(f"not a direction: {direction!r}")
        return self._set_attributes(frozenset(DIRECTIONS), Attribute(name=direction), media)

    def _set_attributes(
        self, names: frozenset[bytes], new: Attribute | None, media: int | None
    ) -> SessionDescription:
        if new is not None:
            if not _TOKEN_RE.match(new.name):
                raise LocalProtocolError(f"bad attribute name {new.name!r}")
            if new.value is not None and _BAD_VALUE_RE.search(new.value):
                raise LocalProtocolError("attribute value holds NUL, CR or LF")
        lines = list(self.lines)
        start, end = self._bounds(media)
        hits = [
            i
            for i in range(start, end)
            if _kind(lines[i]) == b"a" and _content(lines[i])[2:].partition(b":")[0] in names
        ]
        if new is not None and hits:
            lines[hits[0]] = self._line(b"a=" + bytes(new), lines[hits[0]])
        for i in reversed(hits[1:] if new is not None else hits):
            del lines[i]
        if new is not None and not hits:
            at = end
            while at > start and not _kind(lines[at - 1]):
                at -= 1
            self._insert(lines, at, b"a=" + bytes(new))
        return parse_sdp(b"".join(lines))

    def _bounds(self, media: int | None) -> tuple[int, int]:
        """The line range of the session section (None) or of media ``media``."""
        starts = [i for i, raw in enumerate(self.lines) if _kind(raw) == b"m"]
        if media is None:
            return 0, starts[0] if starts else len(self.lines)
        if not 0 <= media < len(starts):
            raise LocalProtocolError(f"no media description {media}")
        end = starts[media + 1] if media + 1 < len(starts) else len(self.lines)
        return starts[media], end

    def _line(self, content: bytes, old: bytes) -> bytes:
        return content + old[len(_content(old)) :]

    def _insert(self, lines: list[bytes], at: int, content: bytes) -> None:
        eol = self.line_ending
        if at > 0 and _content(lines[at - 1]) == lines[at - 1]:
            # The line before had no ending (the body's last line): give it one.
            lines[at - 1] += eol
        lines.insert(at, content + eol)
