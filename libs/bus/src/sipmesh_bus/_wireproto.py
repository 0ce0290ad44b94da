"""The NATS client protocol's frames and errors, for :mod:`sipmesh_bus.wire`.

Sans-I/O: :class:`Parser` turns the bytes a server sends into callbacks, one
per frame (docs.nats.io, "Client Protocol"): ``MSG <subject> <sid>
[reply-to] <#bytes>``, ``HMSG <subject> <sid> [reply-to] <#header bytes>
<#total bytes>``, and
every other line (``INFO``, ``PING``, ``PONG``, ``+OK``, ``-ERR``) as is.
The header block of an HMSG is handed over raw; :class:`Reply` reads its
status line and values only when asked. :func:`encode_headers` builds the
block an ``HPUB`` carries. Import these names from :mod:`sipmesh_bus.wire`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Final

__all__ = [
    "NO_RESPONDERS",
    "OnControl",
    "OnMsg",
    "Parser",
    "PayloadTooLargeError",
    "Reply",
    "RequestFailure",
    "WireAuthError",
    "WireClosedError",
    "WireError",
    "WireProtocolError",
    "WireServerError",
    "encode_headers",
    "server_error",
    "status_of",
]

_CRLF: Final = b"\r\n"
_MAX_CONTROL_LINE: Final = 64 * 1024
_STATUS_PREFIX: Final = b"NATS/1.0 "
NO_RESPONDERS: Final = 503
#: The status of the empty reply the server sends when nobody subscribes to a
#: request's subject (``NATS/1.0 503``); a 503 with a payload is someone's reply.


class WireError(Exception):
    """Root of this module's errors."""


class WireClosedError(WireError):
    """Not connected to any server."""


class WireProtocolError(WireError):
    """The server sent bytes that are not the NATS protocol."""


class PayloadTooLargeError(WireError):
    """A payload is larger than the server's ``max_payload``."""


class WireServerError(WireError):
    """The server answered ``-ERR``."""


class WireAuthError(WireServerError):
    """The server refused the credentials (``Authorization Violation``)."""


# -- the parser ---------------------------------------------------------------

OnMsg = Callable[[bytes, bytes, bytes, bytes, bytes], None]
#: (subject, sid, reply, payload, headers): ``headers`` is the HMSG's raw
#: header block (``NATS/1.0 ...\r\n...\r\n\r\n``), ``b""`` for a MSG.
OnControl = Callable[[bytes], None]
#: A control line without its CRLF: INFO, PING, PONG, +OK or -ERR.


class Parser:
    """Incremental reader of server frames: feed bytes, get callbacks.

    Frames may be split anywhere and many may come in one read; what is not
    complete stays buffered for the next :meth:`feed`.

    Args:
        on_msg: called for each MSG and HMSG.
        on_control: called for every other line.
    """

    __slots__ = ("_buf", "_need", "_on_control", "_on_msg")

    def __init__(self, on_msg: OnMsg, on_control: OnControl) -> None:
        self._buf = bytearray()
        #: The start of an incomplete frame, kept for the next :meth:`feed`.
        self._need = 0
        #: How long ``_buf`` must be before that frame can be complete (0: unknown).
        self._on_msg = on_msg
        self._on_control = on_control

    def feed(self, data: bytes) -> None:
        """Parse ``data`` (after what is buffered) and call back for each frame.

        Raises:
            WireProtocolError: malformed input; the connection should be dropped.
        """
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return  # a payload still arriving: no scan and no copy until it is all here
            data = bytes(buf)
            buf.clear()
        # Frames are read from ``data`` itself: the usual read holds whole
        # frames only, and a payload sliced from bytes is copied once (from a
        # bytearray it was copied into the buffer, sliced, then copied again).
        self._need = 0
        on_msg = self._on_msg
        end = len(data)
        pos = 0
        try:
            while pos < end:
                eol = data.find(_CRLF, pos)
                if eol < 0:
                    if end - pos > _MAX_CONTROL_LINE:
                        raise WireProtocolError("control line too long")
                    break
                op = data[pos : pos + 4]
                if op == b"MSG ":
                    args = data[pos + 4 : eol].split()
                    n = len(args)
                    if n == 3:
                        reply = b""
                    elif n == 4:
                        reply = args[2]
                    else:
                        raise WireProtocolError("malformed MSG")
                    size = args[-1]
                    if not size.isdigit():
                        raise WireProtocolError("malformed size")
                    start = eol + 2
                    stop = start + int(size)
                    if stop + 2 > end:
                        self._need = stop + 2 - pos
                        break  # the payload is not all here yet
                    if data[stop : stop + 2] != _CRLF:
                        raise WireProtocolError("MSG payload not followed by CRLF")
                    payload = data[start:stop]
                    pos = stop + 2
                    on_msg(args[0], args[1], reply, payload, b"")
                elif op == b"HMSG":
                    args = data[pos + 5 : eol].split()
                    n = len(args)
                    if n == 4:
                        reply = b""
                    elif n == 5:
                        reply = args[2]
                    else:
                        raise WireProtocolError("malformed HMSG")
                    hsize, total = _size(args[-2]), _size(args[-1])
                    if hsize > total:
                        raise WireProtocolError("HMSG header size over total size")
                    start = eol + 2
                    stop = start + total
                    if stop + 2 > end:
                        self._need = stop + 2 - pos
                        break
                    if data[stop : stop + 2] != _CRLF:
                        raise WireProtocolError("HMSG payload not followed by CRLF")
                    headers = data[start : start + hsize]
                    payload = data[start + hsize : stop]
                    pos = stop + 2
                    on_msg(args[0], args[1], reply, payload, headers)
                else:
                    line = data[pos:eol]
                    pos = eol + 2
                    self._on_control(line)
        finally:
            if pos < end:
                buf += memoryview(data)[pos:]


def _size(text: bytes) -> int:
    if not text.isdigit():
        raise WireProtocolError("malformed size")
    return int(text)


def status_of(headers: bytes) -> int | None:
    """The status code of a header block (``NATS/1.0 503``: no responders), or None."""
    if headers.startswith(_STATUS_PREFIX):
        code = headers[9:12]
        if code.isdigit():
            return int(code)
    return None


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """The ``NATS/1.0`` header block of an HPUB, from name -> value.

    A name is printable ASCII without ':' or space (the MIME field-name rule
    NATS headers follow); a value may hold anything but CR and LF.

    Raises:
        ValueError: a name that is empty or holds a control character, a
            space or ':'; a value holding CR or LF (either would let it end
            the header early or forge another one).
    """
    lines = ["NATS/1.0\r\n"]
    for name, value in headers.items():
        # isprintable() refuses control characters (CR, LF, TAB ...), isascii()
        # what is beyond; the space is printable and needs its own test.
        if not name or not (name.isascii() and name.isprintable()) or ":" in name or " " in name:
            raise ValueError(f"invalid NATS header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"NATS header {name} holds CR or LF")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


class RequestFailure(Enum):
    """Why a request got no reply (see ``WireClient.request``)."""

    #: No reply within the timeout.
    TIMEOUT = "timeout"
    #: The connection dropped (or the client closed) before the reply came.
    UNAVAILABLE = "unavailable"


class Reply:
    """A reply's payload and header block; the headers are read when asked.

    Attributes:
        payload: the message body.
        headers: the raw header block (``b""``: the reply had none).
    """

    __slots__ = ("headers", "payload")

    def __init__(self, payload: bytes, headers: bytes = b"") -> None:
        self.payload = payload
        self.headers = headers

    def __repr__(self) -> str:
        return f"Reply({self.payload!r}, {self.headers!r})"

    @property
    def status(self) -> int | None:
        """The status code (503: no responders; 408, 404 ...), None for a plain reply."""
        return status_of(self.headers) if self.headers else None

    @property
    def no_responders(self) -> bool:
        """Nobody subscribes to the request's subject (:data:`NO_RESPONDERS`, no payload)."""
        return not self.payload and self.status == NO_RESPONDERS

    @property
    def description(self) -> str:
        """The status line's text after the code (``No Responders``), or ``""``."""
        eol = self.headers.find(_CRLF)
        line = self.headers[len(_STATUS_PREFIX) + 3 : eol if eol >= 0 else None]
        return line.strip().decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (matched case-insensitively), or None."""
        if not self.headers:
            return None
        wanted = name.lower().encode()
        for line in self.headers.split(_CRLF)[1:]:
            key, colon, value = line.partition(b":")
            if colon and key.strip().lower() == wanted:
                return value.strip().decode("utf-8", "replace")
        return None


def server_error(line: bytes) -> WireServerError:
    """The error a ``-ERR`` line stands for."""
    text = line[4:].strip().strip(b"'").decode("utf-8", "replace")
    lowered = text.lower()
    if "authorization" in lowered or "authentication" in lowered:
        return WireAuthError(text)
    return WireServerError(text)
