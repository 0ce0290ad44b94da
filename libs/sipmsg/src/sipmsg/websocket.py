"""SIP over WebSocket (RFC 7118): the server side of RFC 6455, sans-I/O.

Two pieces, both bytes in and bytes out:

* :class:`HandshakeParser` reads the HTTP/1.1 Upgrade request,
  :func:`accept_response` builds the ``101 Switching Protocols`` answer and
  :func:`reject_response` the error answer when the request is refused.
* :class:`WebSocketConnection` turns received bytes into SIP messages and
  control events, and builds the frames to send::

      parser = HandshakeParser()
      parser.feed(data)
      try:
          request = parser.next_request()      # None: need more data
      except ParseError as e:
          transport.write(reject_response(e)); close
      transport.write(accept_response(request))
      conn = WebSocketConnection()
      conn.feed(parser.trailing_data)
      ...
      try:
          for event in conn:
              match event:
                  case TextMessage(data=sip) | BinaryMessage(data=sip): ...
                  case Ping(payload=p): transport.write(conn.send_pong(p))
                  case CloseReceived() as c: transport.write(conn.close_reply(c)); close
      except WebSocketProtocolError as e:
          transport.write(conn.send_close(e.close_code, e.reason)); close

RFC 7118 §5: "each SIP message MUST be carried within a single WebSocket
message", in a text or a binary frame; so each :class:`TextMessage` or
:class:`BinaryMessage` holds exactly one SIP message, for :func:`sipmsg.parse`
(no Content-Length framing is needed). Extensions such as permessage-deflate
are not negotiated, so the RSV bits must be zero.

Errors: a refused handshake raises :class:`ParseError` whose ``status_hint``
is the HTTP status to answer (400, 426 for an unsupported version, 431 for an
oversized request). A broken frame stream raises
:class:`WebSocketProtocolError` (a ``ParseError``) carrying the RFC 6455 §7.4.1
``close_code`` to send (1002, 1007, 1009); after that the connection refuses
to read further, and the caller sends that close frame and drops the TCP
connection (§7.1.7 "_Fail the WebSocket Connection_").
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from ._abnf import is_token, split_comma
from ._errors import LocalProtocolError, ParseError
from ._native import python_class

__all__ = [
    "SIP_SUBPROTOCOL",
    "BinaryMessage",
    "CloseReceived",
    "HandshakeParser",
    "HandshakeRequest",
    "Ping",
    "Pong",
    "TextMessage",
    "WebSocketConnection",
    "WebSocketEvent",
    "WebSocketProtocolError",
    "accept_key",
    "accept_response",
    "reject_response",
]

SIP_SUBPROTOCOL: Final = b"sip"
"""RFC 7118 §4: the WebSocket subprotocol name for SIP."""

# RFC 6455 §1.3: the GUID concatenated with the key before hashing.
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_HEADER_END: Final = b"\r\n\r\n"
_WS: Final = b" \t"
_HTTP_VERSION_RE: Final = re.compile(rb"\AHTTP/([0-9]{1,3})\.([0-9]{1,3})\Z")
DEFAULT_MAX_HANDSHAKE_SIZE: Final = 8192
DEFAULT_MAX_MESSAGE_SIZE: Final = 65535

# RFC 6455 §5.2 opcodes.
_CONTINUATION: Final = 0x0
_TEXT: Final = 0x1
_BINARY: Final = 0x2
_CLOSE: Final = 0x8
_PING: Final = 0x9
_PONG: Final = 0xA
_DATA_OPCODES: Final = frozenset({_TEXT, _BINARY})
_CONTROL_OPCODES: Final = frozenset({_CLOSE, _PING, _PONG})
# §5.5: "All control frames MUST have a payload length of 125 bytes or less".
_MAX_CONTROL_PAYLOAD: Final = 125

# §7.4.1 status codes this module sends.
_PROTOCOL_ERROR: Final = 1002
_INVALID_DATA: Final = 1007
_TOO_BIG: Final = 1009
# §7.4.1: 1005 "is a reserved value and MUST NOT be set as a status code in a
# Close control frame by an endpoint"; it reports a close without a code.
_NO_STATUS: Final = 1005
# Codes a peer may put in a Close frame: §7.4.1/§7.4.2 plus the later IANA
# registrations 1012-1014; 3000-4999 are for libraries and applications.
_VALID_CLOSE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


# --- Handshake --------------------------------------------------------------


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeRequest:
    """A valid WebSocket Upgrade request offering the "sip" subprotocol."""

    target: bytes
    #: The request-target, e.g. ``b"/ws"`` (path and query, as sent).
    headers: tuple[tuple[bytes, bytes], ...]
    #: Every header as ``(lower-cased name, value)`` in wire order.
    key: bytes
    #: The Sec-WebSocket-Key, as sent (base64 of 16 octets).
    subprotocols: tuple[bytes, ...]
    #: Every subprotocol the client offered, in order ("sip" among them).

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (any case), or None.

        Useful for Origin, Host, X-Forwarded-For and the like.
        """
        lower = name.lower()
        for key, value in self.headers:
            if key == lower:
                return value
        return None


class HandshakeParser:
    """Reads one HTTP/1.1 Upgrade request, incrementally.

    Args:
        max_size: the largest request accepted, in octets; a larger one is
            refused with 431.
    """

    __slots__ = ("_buf", "_done", "_max", "_scan_from")

    def __init__(self, max_size: int = DEFAULT_MAX_HANDSHAKE_SIZE) -> None:
        if max_size < 1:
            raise LocalProtocolError("max_size must be positive")
        self._max: int = max_size
        self._buf: bytearray = bytearray()
        self._scan_from: int = 0
        self._done: bool = False

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the request; feed them to the connection."""
        return bytes(self._buf) if self._done else b""

    def feed(self, data: bytes) -> None:
        """Add received bytes.

        Raises:
            LocalProtocolError: the request was already returned or refused.
        """
        if self._done:
            raise LocalProtocolError("the handshake request is complete")
        self._buf += data

    def next_request(self) -> HandshakeRequest | None:
        """Return the request once it is complete and valid.

        Returns:
            The request, or None when more data is needed.

        Raises:
            ParseError: the request is refused; ``status_hint`` is the HTTP
                status for :func:`reject_response`.
            LocalProtocolError: the request was already returned or refused.
        """
        if self._done:
            raise LocalProtocolError("the handshake request is complete")
        end = self._buf.find(_HEADER_END, self._scan_from)
        if end < 0:
            self._scan_from = max(0, len(self._buf) - 3)
            if len(self._buf) > self._max:
                self._done = True
                raise ParseError("handshake request too large", status_hint=431)
            return None
        self._done = True
        if end + len(_HEADER_END) > self._max:
            raise ParseError("handshake request too large", status_hint=431)
        block = bytes(self._buf[:end])
        del self._buf[: end + len(_HEADER_END)]
        return _validate(block)


def _validate(block: bytes) -> HandshakeRequest:
    # RFC 7230 §3.5: a server "SHOULD ignore at least one empty line (CRLF)
    # received prior to the request-line".
    lines = block.lstrip(b"\r\n").split(b"\r\n")
    target = _request_target(lines[0])
    headers = tuple(_header(line) for line in lines[1:])

    def values(name: bytes) -> list[bytes]:
        return [v for k, v in headers if k == name]

    def tokens(name: bytes) -> list[bytes]:
        return [t.lower() for v in values(name) for t in split_comma(v)]

    # RFC 6455 §4.2.1 lists what the server checks, in this order.
    if len(values(b"host")) != 1:
        raise ParseError("exactly one Host header is required", header="host")
    if b"websocket" not in tokens(b"upgrade"):
        raise ParseError("Upgrade: websocket is required", header="upgrade")
    if b"upgrade" not in tokens(b"connection"):
        raise ParseError("Connection: Upgrade is required", header="connection")
    key = _key(values(b"sec-websocket-key"))
    version = values(b"sec-websocket-version")
    if not version:
        raise ParseError("Sec-WebSocket-Version is required", header="sec-websocket-version")
    if version != [b"13"]:
        # §4.2.2: "If this version does not match a version understood by the
        # server, the server MUST abort the WebSocket handshake [...] and
        # instead send an appropriate HTTP error code (such as 426 Upgrade
        # Required) and a |Sec-WebSocket-Version| header field".
        raise ParseError("unsupported WebSocket version", status_hint=426)
    offered = tuple(p for v in values(b"sec-websocket-protocol") for p in split_comma(v))
    if not all(is_token(p) for p in offered):
        raise ParseError("malformed Sec-WebSocket-Protocol", header="sec-websocket-protocol")
    # Subprotocol names are tokens (RFC 6455 §4.1: "characters in the range
    # U+0021 to U+007E not including separator characters") compared
    # exactly; "sip" is the name RFC 7118 registers.
    if SIP_SUBPROTOCOL not in offered:
        # RFC 7118 §4.1: the client "MUST include the value "sip" in the
        # Sec-WebSocket-Protocol header"; a server that accepts "MUST include
        # the value "sip" in the Sec-WebSocket-Protocol header in its response".
        raise ParseError("the sip subprotocol was not offered", header="sec-websocket-protocol")
    return HandshakeRequest(target=target, headers=headers, key=key, subprotocols=offered)


def _request_target(line: bytes) -> bytes:
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[1] or not is_token(parts[0]):
        raise ParseError("malformed request line")
    method, target, version = parts
    # §4.1: "The method of the request MUST be GET, and the HTTP version MUST
    # be at least 1.1."
    if method != b"GET":
        raise ParseError("the WebSocket handshake must be a GET")
    match = _HTTP_VERSION_RE.match(version)
    if match is None or (int(match[1]), int(match[2])) < (1, 1):
        raise ParseError("HTTP/1.1 or later is required")
    return target


def _header(line: bytes) -> tuple[bytes, bytes]:
    name, colon, value = line.partition(b":")
    # RFC 7230 §3.2.4: "No whitespace is allowed between the header field-name
    # and colon"; obs-fold may be rejected by a server.
    if not colon or not is_token(name):
        raise ParseError("malformed header line")
    return name.lower(), value.strip(_WS)


def _key(values: list[bytes]) -> bytes:
    # §4.2.1: "A |Sec-WebSocket-Key| header field with a base64-encoded value
    # that, when decoded, is 16 bytes in length."
    if len(values) != 1:
        raise ParseError("exactly one Sec-WebSocket-Key is required", header="sec-websocket-key")
    try:
        decoded = base64.b64decode(values[0], validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) != 16:
        raise ParseError("malformed Sec-WebSocket-Key", header="sec-websocket-key")
    return values[0]


def accept_key(key: bytes) -> bytes:
    """RFC 6455 §4.2.2: base64 of the SHA-1 of the key and the GUID."""
    return base64.b64encode(hashlib.sha1(key + _GUID, usedforsecurity=False).digest())


def accept_response(
    request: HandshakeRequest, extra_headers: tuple[tuple[bytes, bytes], ...] = ()
) -> bytes:
    """The ``101 Switching Protocols`` answer selecting the "sip" subprotocol.

    Args:
        request: the request :meth:`HandshakeParser.next_request` returned.
        extra_headers: more ``(name, value)`` headers to send, e.g. Server.
    """
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + accept_key(request.key),
        b"Sec-WebSocket-Protocol: " + SIP_SUBPROTOCOL,
        *(name + b": " + value for name, value in extra_headers),
    ]
    return b"\r\n".join(lines) + _HEADER_END


_REASONS: Final = {
    400: b"Bad Request",
    426: b"Upgrade Required",
    431: b"Request Header Fields Too Large",
}


def reject_response(error: ParseError) -> bytes:
    """The HTTP answer refusing a handshake; the caller then closes.

    Args:
        error: the error :meth:`HandshakeParser.next_request` raised.
    """
    status = error.status_hint if error.status_hint in _REASONS else 400
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS[status])]
    if status == 426:
        lines.append(b"Sec-WebSocket-Version: 13")
    lines += [b"Connection: close", b"Content-Length: 0"]
    return b"\r\n".join(lines) + _HEADER_END


# --- Frames -------------------------------------------------------------------


@python_class  # its base, ParseError, is not compiled (scripts/compile.py)
class WebSocketProtocolError(ParseError):
    """The peer broke RFC 6455; send a Close with ``close_code``, then drop.

    Attributes:
        close_code: the §7.4.1 status code for the Close frame: 1002 protocol
            error, 1007 invalid UTF-8, 1009 message too big.
    """

    def __init__(self, reason: str, close_code: int = _PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.close_code: int = close_code

    def __repr__(self) -> str:
        return f"WebSocketProtocolError({self.reason!r}, close_code={self.close_code})"


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class TextMessage:
    """A complete text message: one SIP message, valid UTF-8."""

    data: bytes


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class BinaryMessage:
    """A complete binary message: one SIP message."""

    data: bytes


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """A Ping frame; §5.5.2: the endpoint "MUST send a Pong frame in response"."""

    payload: bytes


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    """A Pong frame."""

    payload: bytes


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class CloseReceived:
    """The peer sent a Close frame; nothing more will be read."""

    code: int
    #: The §7.4 status code; 1005 when the frame carried none.
    reason: str
    #: The UTF-8 reason text, possibly empty.


WebSocketEvent = TextMessage | BinaryMessage | Ping | Pong | CloseReceived


@python_class
@dataclass(frozen=True, slots=True)
class _Frame:
    fin: bool
    opcode: int
    payload: bytes


class WebSocketConnection:
    """The server end of an established WebSocket carrying SIP.

    Args:
        max_message_size: the largest message accepted (all its fragments
            together), in octets; a larger one fails the connection with 1009.
    """

    __slots__ = (
        "_buf",
        "_close_received",
        "_close_sent",
        "_errored",
        "_fragments",
        "_max",
        "_message_opcode",
        "_message_size",
        "_utf8",
    )

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 1:
            raise LocalProtocolError("max_message_size must be positive")
        self._max: int = max_message_size
        self._buf: bytearray = bytearray()
        # The data message being reassembled from fragments, if any.
        self._message_opcode: int | None = None
        self._fragments: list[bytes] = []
        self._message_size: int = 0
        self._utf8: codecs.IncrementalDecoder = codecs.getincrementaldecoder("utf-8")()
        self._close_received: bool = False
        self._close_sent: bool = False
        self._errored: bool = False

    def feed(self, data: bytes) -> None:
        """Add received bytes; after a Close was received they are discarded.

        Raises:
            LocalProtocolError: the connection already failed.
        """
        if self._errored:
            raise LocalProtocolError("the WebSocket connection failed earlier")
        if not self._close_received:
            self._buf += data

    def next_event(self) -> WebSocketEvent | None:
        """Return the next complete message or control frame, if there is one.

        Returns:
            An event, or None when more data is needed (always None once a
            :class:`CloseReceived` was returned).

        Raises:
            WebSocketProtocolError: the peer broke RFC 6455; send
                ``send_close(e.close_code)`` and close the TCP connection.
            LocalProtocolError: the connection already failed.
        """
        if self._errored:
            raise LocalProtocolError("the WebSocket connection failed earlier")
        try:
            while not self._close_received:
                frame = self._parse_frame()
                if frame is None:
                    return None
                event = self._handle(frame)
                if event is not None:
                    return event
            return None
        except WebSocketProtocolError:
            self._errored = True
            self._buf.clear()
            self._fragments.clear()
            raise

    def __iter__(self) -> Iterator[WebSocketEvent]:
        """Yield every event the buffered data completes (see :meth:`next_event`)."""
        while (event := self.next_event()) is not None:
            yield event

    def _parse_frame(self) -> _Frame | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        fin, opcode = bool(first & 0x80), first & 0x0F
        if first & 0x70:
            # §5.2: "MUST be 0 unless an extension is negotiated that defines
            # meanings for non-zero values"; none is.
            raise WebSocketProtocolError("reserved bits set")
        if opcode not in _DATA_OPCODES | _CONTROL_OPCODES | {_CONTINUATION}:
            raise WebSocketProtocolError(f"unknown opcode {opcode:#x}")
        if not second & 0x80:
            # §5.1: "The server MUST close the connection upon receiving a frame
            # that is not masked", with status 1002.
            raise WebSocketProtocolError("unmasked client frame")
        length, offset = second & 0x7F, 2
        if opcode in _CONTROL_OPCODES and (length > _MAX_CONTROL_PAYLOAD or not fin):
            # §5.5: control frames "MUST have a payload length of 125 bytes or
            # less and MUST NOT be fragmented".
            raise WebSocketProtocolError("oversized or fragmented control frame")
        if length >= 126:
            width = 2 if length == 126 else 8
            if len(buf) < 2 + width:
                return None
            length, offset = int.from_bytes(buf[2 : 2 + width], "big"), 2 + width
            # §5.2: "the minimal number of bytes MUST be used to encode the
            # length" and "the most significant bit MUST be 0".
            if length < (126 if width == 2 else 0x10000) or length >> 63:
                raise WebSocketProtocolError("non-minimal or invalid payload length")
        if opcode not in _CONTROL_OPCODES and self._message_size + length > self._max:
            raise WebSocketProtocolError("message too big", _TOO_BIG)
        end = offset + 4 + length
        if len(buf) < end:
            return None
        payload = _unmask(bytes(buf[offset : offset + 4]), bytes(buf[offset + 4 : end]))
        del buf[:end]
        return _Frame(fin, opcode, payload)

    def _handle(self, frame: _Frame) -> WebSocketEvent | None:
        if frame.opcode == _PING:
            return Ping(payload=frame.payload)
        if frame.opcode == _PONG:
            return Pong(payload=frame.payload)
        if frame.opcode == _CLOSE:
            self._close_received = True
            self._buf.clear()
            self._fragments.clear()
            return _close_event(frame.payload)
        if frame.opcode == _CONTINUATION:
            if self._message_opcode is None:
                raise WebSocketProtocolError("continuation frame without a message")
        elif self._message_opcode is not None:
            # §5.4: fragments of one message may be interleaved with control
            # frames only, never with another message's frames.
            raise WebSocketProtocolError("new message inside a fragmented message")
        else:
            self._message_opcode = frame.opcode
        return self._add_fragment(frame)

    def _add_fragment(self, frame: _Frame) -> TextMessage | BinaryMessage | None:
        text = self._message_opcode == _TEXT
        if text:
            # §8.1: an endpoint that finds invalid UTF-8 "MUST _Fail the
            # WebSocket Connection_"; checking fragment by fragment finds it
            # as soon as possible.
            _check_utf8(self._utf8, frame.payload, final=frame.fin)
        self._fragments.append(frame.payload)
        self._message_size += len(frame.payload)
        if not frame.fin:
            return None
        data = b"".join(self._fragments)
        self._fragments.clear()
        self._message_size = 0
        self._message_opcode = None
        return TextMessage(data=data) if text else BinaryMessage(data=data)

    # --- Sending ------------------------------------------------------------

    def send_text(self, data: bytes) -> bytes:
        """One SIP message as a text frame (it must be valid UTF-8).

        Raises:
            LocalProtocolError: ``data`` is not UTF-8, or Close was sent.
        """
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LocalProtocolError("a text frame must be valid UTF-8") from exc
        return self._send(_TEXT, data)

    def send_binary(self, data: bytes) -> bytes:
        """One SIP message as a binary frame.

        Raises:
            LocalProtocolError: Close was sent.
        """
        return self._send(_BINARY, data)

    def send_ping(self, payload: bytes = b"") -> bytes:
        """A Ping frame (at most 125 octets of payload)."""
        return self._send(_PING, payload)

    def send_pong(self, payload: bytes = b"") -> bytes:
        """A Pong frame; answer a :class:`Ping` with ``send_pong(ping.payload)``."""
        return self._send(_PONG, payload)

    def send_close(self, code: int | None = 1000, reason: str = "") -> bytes:
        """A Close frame; nothing may be sent after it.

        Args:
            code: the §7.4 status code, or None for a Close without one.
            reason: UTF-8 text; code and reason together fit in 125 octets.

        Raises:
            LocalProtocolError: Close was already sent, or the frame is too big.
        """
        if code is None:
            if reason:
                raise LocalProtocolError("a close reason needs a status code")
            payload = b""
        else:
            if not 1000 <= code <= 4999:
                raise LocalProtocolError(f"invalid close code {code}")
            payload = code.to_bytes(2, "big") + reason.encode("utf-8")
        frame = self._send(_CLOSE, payload)
        self._close_sent = True
        return frame

    def close_reply(self, event: CloseReceived) -> bytes:
        """The Close answering the peer's, echoing its code (§5.5.1).

        Returns ``b""`` when this side already sent its Close.
        """
        if self._close_sent:
            return b""
        return self.send_close(None if event.code == _NO_STATUS else event.code)

    def _send(self, opcode: int, payload: bytes) -> bytes:
        if self._close_sent:
            raise LocalProtocolError("Close was already sent")
        if opcode in _CONTROL_OPCODES and len(payload) > _MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError("control frame payload over 125 octets")
        return _frame_header(opcode, len(payload)) + payload


def _frame_header(opcode: int, length: int) -> bytes:
    # §5.1: "A server MUST NOT mask any frames that it sends to the client."
    first = bytes((0x80 | opcode,))
    if length < 126:
        return first + bytes((length,))
    if length < 0x10000:
        return first + b"\x7e" + length.to_bytes(2, "big")
    return first + b"\x7f" + length.to_bytes(8, "big")


def _unmask(mask: bytes, payload: bytes) -> bytes:
    """§5.3: octet i of the payload XOR octet i mod 4 of the masking key."""
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def _check_utf8(decoder: codecs.IncrementalDecoder, data: bytes, *, final: bool) -> None:
    try:
        decoder.decode(data, final)
    except UnicodeDecodeError as exc:
        decoder.reset()
        raise WebSocketProtocolError("invalid UTF-8 in a text message", _INVALID_DATA) from exc
    if final:
        decoder.reset()


def _close_event(payload: bytes) -> CloseReceived:
    if not payload:
        return CloseReceived(code=_NO_STATUS, reason="")
    if len(payload) == 1:
        raise WebSocketProtocolError("close frame with a one-octet payload")
    code = int.from_bytes(payload[:2], "big")
    if code not in _VALID_CLOSE_CODES and not 3000 <= code <= 4999:
        raise WebSocketProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebSocketProtocolError("invalid UTF-8 in a close reason", _INVALID_DATA) from exc
    return CloseReceived(code=code, reason=reason)
