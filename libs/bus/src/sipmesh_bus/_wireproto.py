"""The NATS client protocol's frames and errors, for :mod:`sipmesh_bus.wire`.

Sans-I/O: :class:`Parser` turns the bytes a server sends into callbacks, one
per frame (docs.nats.io, "Client Protocol"): ``MSG <subject> <sid>
[reply-to] <#bytes>``, ``HMSG <subject> <sid> [reply-to] <#header bytes>
<#total bytes>`` (the status of ``NATS/1.0 503`` headers is reported), and
every other line (``INFO``, ``PING``, ``PONG``, ``+OK``, ``-ERR``) as is.
Import these names from :mod:`sipmesh_bus.wire`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

__all__ = [
    "OnControl",
    "OnMsg",
    "Parser",
    "PayloadTooLargeError",
    "WireAuthError",
    "WireClosedError",
    "WireError",
    "WireProtocolError",
    "WireServerError",
    "server_error",
]

_CRLF: Final = b"\r\n"
_MAX_CONTROL_LINE: Final = 64 * 1024
_STATUS_PREFIX: Final = b"NATS/1.0 "


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

OnMsg = Callable[[bytes, bytes, bytes, bytes, "int | None"], None]
#: (subject, sid, reply, payload, status)
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

    __slots__ = ("_buf", "_on_control", "_on_msg")

    def __init__(self, on_msg: OnMsg, on_control: OnControl) -> None:
        self._buf = bytearray()
        self._on_msg = on_msg
        self._on_control = on_control

    def feed(self, data: bytes) -> None:
        """Parse ``data`` (after what is buffered) and call back for each frame.

        Raises:
            WireProtocolError: malformed input; the connection should be dropped.
        """
        buf = self._buf
        buf += data
        end = len(buf)
        pos = 0
        try:
            while pos < end:
                eol = buf.find(_CRLF, pos)
                if eol < 0:
                    if end - pos > _MAX_CONTROL_LINE:
                        raise WireProtocolError("control line too long")
                    break
                op = buf[pos : pos + 4]
                if op == b"MSG ":
                    args = bytes(buf[pos + 4 : eol]).split()
                    n = len(args)
                    if n == 3:
                        reply = b""
                    elif n == 4:
                        reply = args[2]
                    else:
                        raise WireProtocolError("malformed MSG")
                    start = eol + 2
                    stop = start + _size(args[-1])
                    if stop + 2 > end:
                        break  # the payload is not all here yet
                    if buf[stop : stop + 2] != _CRLF:
                        raise WireProtocolError("MSG payload not followed by CRLF")
                    payload = bytes(buf[start:stop])
                    pos = stop + 2
                    self._on_msg(args[0], args[1], reply, payload, None)
                elif op == b"HMSG":
                    args = bytes(buf[pos + 5 : eol]).split()
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
                        break
                    if buf[stop : stop + 2] != _CRLF:
                        raise WireProtocolError("HMSG payload not followed by CRLF")
                    status = _status(bytes(buf[start : start + hsize]))
                    payload = bytes(buf[start + hsize : stop])
                    pos = stop + 2
                    self._on_msg(args[0], args[1], reply, payload, status)
                else:
                    line = bytes(buf[pos:eol])
                    pos = eol + 2
                    self._on_control(line)
        finally:
            del buf[:pos]


def _size(text: bytes) -> int:
    if not text.isdigit():
        raise WireProtocolError("malformed size")
    return int(text)


def _status(headers: bytes) -> int | None:
    # "NATS/1.0 503\r\n\r\n": a status message (503 = no responders).
    if headers.startswith(_STATUS_PREFIX):
        code = headers[9:12]
        if code.isdigit():
            return int(code)
    return None


def server_error(line: bytes) -> WireServerError:
    """The error a ``-ERR`` line stands for."""
    text = line[4:].strip().strip(b"'").decode("utf-8", "replace")
    lowered = text.lower()
    if "authorization" in lowered or "authentication" in lowered:
        return WireAuthError(text)
    return WireServerError(text)
