"""Stream framing for SIP over TCP and TLS, sans-I/O in the style of h11.

A stream carries SIP messages back to back with nothing between them but,
perhaps, keep-alives. :class:`StreamFramer` cuts that stream into whole
messages without parsing them; :func:`sipmsg.parse` does the rest::

    framer = StreamFramer(max_message_size=65535)
    framer.feed(data)                      # whatever the socket returned
    for event in framer:                   # or: while (e := framer.next_event()) ...
        match event:
            case MessageFramed(data=raw):  ...  # one complete message
            case KeepAlive(pong_needed=True):   transport.write(PONG)

Rules the framer enforces:

* RFC 3261 §18.3: "In the case of stream-oriented transports, the
  Content-Length header field MUST be used to indicate the size of the body."
  A message without it cannot be delimited, so the framer raises
  ``ParseError(status_hint=400)``.
* RFC 3261 §7.5: "implementations processing SIP messages over
  stream-oriented transports MUST ignore any CRLF appearing before the
  start-line". RFC 5626 §3.5.1 gives those bytes a meaning: a double CRLF is a
  keep-alive "ping" which a server answers with a single CRLF "pong". The
  framer reports each ping as ``KeepAlive(pong_needed=True)`` and skips a lone
  CRLF (a pong, or a stray line end) silently.
* A size limit, after h11: an incomplete message (header block, or header
  block plus the body its Content-Length announces) larger than
  ``max_message_size`` raises ``ParseError(status_hint=513)``. A
  Content-Length that already makes the message too large is rejected as soon
  as the header block is complete, before any of the body is buffered.
* Garbage: when the bytes at the start of a message are not a plausible
  start line (``Method SP Request-URI SP SIP/x.y`` or ``SIP/x.y SP 3DIGIT``),
  the framer raises ``ParseError(status_hint=400)``. RFC 3261 defines no
  resynchronisation on a stream (Kamailio closes the connection too), and
  guessing where the next message starts would let a peer smuggle one.

Every ``ParseError`` is fatal to the connection: framing is lost. The caller
answers ``status_hint`` if it can (it may not have a parsable request to
answer) and closes the connection. The framer refuses further use: ``feed``
and ``next_event`` then raise :class:`LocalProtocolError`.

Pending data at end of stream is not an event: ``feed(b"")`` is a no-op, and
the caller reads :attr:`StreamFramer.pending_bytes` when the peer closes if it
wants to know whether a message was cut short.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from ._abnf import TOKEN
from ._errors import LocalProtocolError, ParseError
from ._native import python_class

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "PING",
    "PONG",
    "FramingEvent",
    "KeepAlive",
    "MessageFramed",
    "StreamFramer",
]

DEFAULT_MAX_MESSAGE_SIZE: Final = 65535
"""The default limit on one message, header block and body together."""

PING: Final = b"\r\n\r\n"
"""RFC 5626 §3.5.1 keep-alive request: "a double-CRLF (the "ping")"."""

PONG: Final = b"\r\n"
"""RFC 5626 §3.5.1 keep-alive answer: "a single CRLF (the "pong")"."""

_CRLF: Final = b"\r\n"
_HEADER_END: Final = b"\r\n\r\n"
# What may be left once _skip_crlfs is done that is not yet a start line:
# nothing, or the beginning of a CRLF or of a ping.
_CRLF_PREFIXES: Final = (b"", b"\r", b"\r\n", b"\r\n\r")

# Request-Line = Method SP Request-URI SP SIP-Version CRLF
# Status-Line  = SIP-Version SP Status-Code SP Reason-Phrase CRLF
# SIP-Version  = "SIP" "/" 1*DIGIT "." 1*DIGIT
# Any version is plausible here: the parser answers an unknown one with 505,
# which needs the message framed first. "SIP" is matched case-insensitively
# (§7.1: "The SIP-Version string is case-insensitive").
_SIP_VERSION: Final = rb"[Ss][Ii][Pp]/[0-9]+\.[0-9]+"
_REQUEST_LINE_RE: Final = re.compile(
    rb"\A" + TOKEN + rb" [^\x00-\x20\x7f]+ " + _SIP_VERSION + rb"\Z"
)
_STATUS_LINE_RE: Final = re.compile(rb"\A" + _SIP_VERSION + rb" [0-9]{3}(?: [^\r\n]*)?\Z")
# The first octet of a start line: a token character (methods are tokens and
# "SIP/2.0" starts with one). Checked at once so that, say, a TLS ClientHello
# sent to a plain TCP port fails on its first byte, not after 64 KiB.
_START_OCTET_RE: Final = re.compile(rb"\A" + TOKEN)
# header-name HCOLON: HCOLON = *( SP / HTAB ) ":" SWS
_FOLD_RE: Final = re.compile(rb"\r\n[ \t]+")
_DIGITS_RE: Final = re.compile(rb"\A[0-9]+\Z")
_CONTENT_LENGTH_NAMES: Final = frozenset({b"content-length", b"l"})
# More digits than this cannot be a size we accept, and int() of a huge digit
# string is slow (and raises ValueError past sys.get_int_max_str_digits()).
_MAX_LENGTH_DIGITS: Final = 18


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class MessageFramed:
    """One complete SIP message, start line to last body octet."""

    data: bytes
    #: The raw message, ready for :func:`sipmsg.parse`.


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlive:
    """An RFC 5626 §3.5.1 keep-alive arrived between messages."""

    pong_needed: bool
    #: True for a double-CRLF ping: the caller writes :data:`PONG` back.


FramingEvent = MessageFramed | KeepAlive


class StreamFramer:
    """Cuts a SIP byte stream (TCP, TLS) into messages and keep-alives.

    Args:
        max_message_size: the largest message accepted, header block and body
            together, in octets.
    """

    __slots__ = (
        "_buf",
        "_errored",
        "_line_checked",
        "_max",
        "_message_size",
        "_scan_from",
    )

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 1:
            raise LocalProtocolError("max_message_size must be positive")
        self._max: int = max_message_size
        self._buf: bytearray = bytearray()
        # Where the search for the header block's end resumes: everything
        # before it has been searched, so feeding one byte at a time stays
        # linear rather than quadratic.
        self._scan_from: int = 0
        # Whether the start line of the message being received was checked.
        self._line_checked: bool = False
        # Header block plus Content-Length, once the header block is complete.
        self._message_size: int | None = None
        self._errored: bool = False

    @property
    def pending_bytes(self) -> int:
        """How many received octets are not yet part of an event."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Add bytes received from the stream.

        Args:
            data: the bytes, in any chunking; ``b""`` is a no-op.

        Raises:
            LocalProtocolError: the framer already raised a ``ParseError``.
        """
        self._check_usable()
        self._buf += data

    def next_event(self) -> FramingEvent | None:
        """Return the next complete message or keep-alive, if there is one.

        Returns:
            A :class:`MessageFramed` or :class:`KeepAlive` event, or ``None``
            when more data is needed.

        Raises:
            ParseError: the stream is not framed SIP (status_hint 400) or a
                message exceeds ``max_message_size`` (status_hint 513). The
                connection must be closed; the framer is unusable after this.
            LocalProtocolError: the framer already raised a ``ParseError``.
        """
        self._check_usable()
        try:
            return self._next_event()
        except ParseError:
            self._errored = True
            self._buf.clear()
            raise

    def __iter__(self) -> Iterator[FramingEvent]:
        """Yield every event the buffered data completes (see :meth:`next_event`)."""
        while (event := self.next_event()) is not None:
            yield event

    def _check_usable(self) -> None:
        if self._errored:
            raise LocalProtocolError("the stream framer failed earlier; close the connection")

    def _next_event(self) -> FramingEvent | None:
        if self._message_size is None:
            keep_alive = self._skip_crlfs()
            if keep_alive is not None or bytes(self._buf[:4]) in _CRLF_PREFIXES:
                return keep_alive
            self._message_size = self._find_message_size()
        size = self._message_size
        if size is None or len(self._buf) < size:
            return None
        data = bytes(self._buf[:size])
        del self._buf[:size]
        self._message_size = None
        self._line_checked = False
        self._scan_from = 0
        return MessageFramed(data=data)

    def _skip_crlfs(self) -> KeepAlive | None:
        """Consume the CRLFs before a start line; report a ping if one is there."""
        buf = self._buf
        while buf[:2] == _CRLF:
            if buf[:4] == PING:
                del buf[:4]
                return KeepAlive(pong_needed=True)
            if len(buf) == 2 or buf[2:] == b"\r":
                return None  # "\r\n" or "\r\n\r": a ping may still be arriving
            del buf[:2]  # a lone CRLF: a pong or a stray line end
        return None

    def _find_message_size(self) -> int | None:
        """Find the end of the header block; return the whole message's size."""
        buf = self._buf
        if not self._line_checked:
            if _START_OCTET_RE.match(buf) is None:
                raise ParseError("not a SIP start line")
            line_end = buf.find(_CRLF, self._scan_from)
            if line_end < 0:
                self._scan_from = max(0, len(buf) - 1)
                self._check_incomplete_size()
                return None
            self._check_start_line(bytes(buf[:line_end]))
            self._line_checked = True
            self._scan_from = line_end
        end = buf.find(_HEADER_END, self._scan_from)
        if end < 0:
            self._scan_from = max(self._scan_from, len(buf) - 3)
            self._check_incomplete_size()
            return None
        header_size = end + len(_HEADER_END)
        if header_size > self._max:
            raise _too_large(self._max)
        size = header_size + _content_length(bytes(buf[:end]))
        if size > self._max:
            raise _too_large(self._max)
        return size

    def _check_incomplete_size(self) -> None:
        if len(self._buf) > self._max:
            raise _too_large(self._max)

    @staticmethod
    def _check_start_line(line: bytes) -> None:
        if _REQUEST_LINE_RE.match(line) is None and _STATUS_LINE_RE.match(line) is None:
            raise ParseError("not a SIP start line")


def _too_large(limit: int) -> ParseError:
    return ParseError(f"message larger than {limit} octets", status_hint=513)


def _content_length(block: bytes) -> int:
    """The Content-Length of a header block (start line included, no final CRLFCRLF).

    Raises:
        ParseError: it is missing, malformed, or given twice with different values.
    """
    # §7.3.1: "Header fields can be extended over multiple lines by preceding
    # each extra line with at least one SP or horizontal tab".
    lines = _FOLD_RE.sub(b" ", block).split(_CRLF)
    found: bytes | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or name.strip(b" \t").lower() not in _CONTENT_LENGTH_NAMES:
            continue
        value = value.strip(b" \t")
        if _DIGITS_RE.match(value) is None:
            raise ParseError("malformed Content-Length", header="content-length")
        value = value.lstrip(b"0") or b"0"
        if found is not None and found != value:
            # Two lengths: which one frames the message is exactly the
            # ambiguity request smuggling exploits, so refuse both.
            raise ParseError("conflicting Content-Length headers", header="content-length")
        found = value
    if found is None:
        # §18.3: "In the case of stream-oriented transports, the Content-Length
        # header field MUST be used to indicate the size of the body".
        raise ParseError("Content-Length missing on a stream transport", header="content-length")
    if len(found) > _MAX_LENGTH_DIGITS:
        raise ParseError("Content-Length too large", status_hint=513, header="content-length")
    return int(found)
