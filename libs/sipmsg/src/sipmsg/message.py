"""SIP messages: :func:`parse`, :class:`Request` and :class:`Response`.

``parse`` splits the start line and the header block once and keeps every
header raw (see :class:`~sipmsg.headers.Headers`); nothing else is parsed until
someone asks. Each typed accessor (``msg.via``, ``msg.cseq`` ...) parses its
header on first use and caches the result in an explicit slot, so the edge's
"cheapest parse that can classify" reads five headers and never the rest.

An untouched message serializes to the very bytes it was parsed from; an edited
one rewrites only the lines that were edited.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from ._abnf import TOKEN, is_token
from ._config import ParserConfig
from ._errors import LocalProtocolError, ParseError
from ._message_base import _Message, _reset_cache
from .headers import (
    METHODS,
    Headers,
    split_header_lines,
)
from .uri import AbsoluteUri, SipUri, TelUri, parse_uri

__all__ = ["Request", "Response", "parse"]

_DEFAULT_CONFIG: Final = ParserConfig()
SIP_2_0: Final = b"SIP/2.0"
# Any blank line, for the tolerant path that accepts bare LF line ends.
_BLANK_LINE_RE: Final = re.compile(rb"\r?\n\r?\n")
_VERSION_RE: Final = re.compile(rb"\ASIP/[0-9]+\.[0-9]+\Z", re.IGNORECASE)
_TOKEN_RE: Final = re.compile(rb"\A" + TOKEN + rb"\Z")


def parse(
    data: bytes | bytearray | memoryview, config: ParserConfig | None = None
) -> Request | Response:
    """Parse one SIP message.

    The header block is split into lines once; header values are kept raw and
    parsed on first access. The body is what Content-Length says: RFC 3261
    §18.3 "If a message arrives over an unreliable transport with more octets
    than Content-Length, the extra octets are discarded" (and ``bytes(msg)``
    is then the message without them); without Content-Length the body runs to
    the end of ``data``. CRLFs before the start line are ignored (§7.5).

    Args:
        data: the message octets (a datagram, or one framed stream message).
        config: size limits; the defaults fit a UDP datagram.

    Returns:
        A :class:`Request` or a :class:`Response`.

    Raises:
        ParseError: the bytes are not a SIP message; ``status_hint`` is 400, 505
            for a SIP version other than 2.0, 513 or 413 for the size limits.
    """
    cfg = _DEFAULT_CONFIG if config is None else config
    # The annotation admits any buffer, as the pure-Python module always did
    # (a compiled module checks argument types); the parsers work on bytes.
    buf = data if type(data) is bytes else bytes(data)
    if buf and (buf[0] == 0x0D or buf[0] == 0x0A):
        buf = buf.lstrip(b"\r\n")
    if len(buf) > cfg.max_message_size:
        raise ParseError("message too large", status_hint=513)
    end = buf.find(b"\r\n\r\n")
    if end >= 0:
        head = buf[:end]
        body_start = end + 4
        lines = head.split(b"\r\n")
        if head.count(b"\n") != len(lines) - 1:
            lines = [ln.rstrip(b"\r") for ln in head.split(b"\n")]
    else:
        m = _BLANK_LINE_RE.search(buf)
        if m is None:
            raise ParseError("no empty line after the header block" if buf else "empty message")
        head = buf[: m.start()]
        body_start = m.end()
        lines = [ln.rstrip(b"\r") for ln in head.split(b"\n")]
    if len(lines) - 1 > cfg.max_headers:
        raise ParseError("too many header lines", status_hint=513)
    start = lines[0]
    del lines[0]
    headers, content_length = split_header_lines(lines)
    body_end = len(buf)
    if content_length is not None:
        if content_length > cfg.max_body_size:
            raise ParseError("body too large", status_hint=413, header="content-length")
        body_end = body_start + content_length
        if body_end > len(buf):
            raise ParseError(
                "bad Content-Length header: fewer body octets than it says",
                header="content-length",
            )
        if body_end < len(buf):
            buf = buf[:body_end]
    body = buf[body_start:body_end]
    msg: Request | Response
    # (The first octet first: a request line is then never sliced and upper-cased.)
    if start and (start[0] == 0x53 or start[0] == 0x73) and start[:4].upper() == b"SIP/":
        msg = _response_from_wire(start, headers, body, buf)
    else:
        msg = _request_from_wire(start, headers, body, buf)
    msg._content_length = content_length
    return msg


def _check_version(version: bytes) -> bytes:
    if version == SIP_2_0 or version.upper() == SIP_2_0:
        return SIP_2_0
    if _VERSION_RE.match(version) is not None:
        # §8.2.2.. "505 (Version Not Supported)"
        raise ParseError("SIP version not supported", status_hint=505)
    raise ParseError("bad SIP version")


class Request(_Message):
    """A SIP request."""

    __slots__ = ("_request_uri", "method", "uri")

    method: bytes
    """The method, case-sensitive (§7.1): ``b"INVITE"``."""
    uri: bytes
    """The raw Request-URI."""

    def __init__(
        self,
        *,
        method: bytes,
        uri: bytes,
        headers: Headers | Iterable[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        version: bytes = SIP_2_0,
        _trusted: bool = False,
    ) -> None:
        """Build a request; nothing is added (no Content-Length): use the builders for that.

        ``_trusted`` is sipmsg's own: the parser and the editing methods pass
        parts already checked.

        Raises:
            LocalProtocolError: the method is not a token or the URI holds white space.
        """
        if not _trusted:
            if not is_token(method):
                raise LocalProtocolError(f"method {method!r} is not a token")
            _check_uri(uri)
        self.method = method
        self.uri = uri
        self.version = version
        self.headers = headers if isinstance(headers, Headers) else Headers.from_pairs(headers)
        self.body = body
        self._request_uri: SipUri | TelUri | AbsoluteUri | None = None
        _reset_cache(self, None)

    def _start_line(self) -> bytes:
        return b"%s %s %s" % (self.method, self.uri, self.version)

    def _copy(self, headers: Headers, body: bytes) -> Request:
        new = Request(
            method=self.method,
            uri=self.uri,
            headers=headers,
            body=body,
            version=self.version,
            _trusted=True,
        )
        new._request_uri = self._request_uri
        return new

    def __repr__(self) -> str:
        return f"<Request {self.method!r} {self.uri!r}>"

    def with_uri(self, uri: bytes) -> Request:
        """A copy with Request-URI ``uri``; the method, headers and body are kept as they are.

        Nothing but ``uri`` is checked again (a proxy retargeting a request it
        parsed, RFC 3261 §16.6 step 2: "The Request-URI in the copy's start line
        MUST be replaced with the URI for this target"); ``uri`` is not parsed
        until :attr:`request_uri` is read.

        Raises:
            LocalProtocolError: ``uri`` is empty or holds white space.
        """
        _check_uri(uri)
        new = self._with(self.headers, self.body)
        new.uri = uri
        new._request_uri = None
        return new

    @property
    def request_uri(self) -> SipUri | TelUri | AbsoluteUri:
        """The parsed Request-URI. Raises ParseError when malformed."""
        v = self._request_uri
        if v is None:
            try:
                v = self._request_uri = parse_uri(self.uri)
            except ParseError as exc:
                raise ParseError(
                    f"bad Request-URI: {exc.reason}", status_hint=exc.status_hint
                ) from exc
        return v


def _check_uri(uri: bytes) -> None:
    # White space would break the Request-Line (§7.1: "Request-Line = Method SP
    # Request-URI SP SIP-Version CRLF"). Deleting it is one C pass (~70 ns);
    # `b" " in uri` goes through the buffer protocol (~110 ns each).
    if not uri or len(uri.translate(None, b" \t\r\n")) != len(uri):
        raise LocalProtocolError(f"bad Request-URI {uri!r}")


class Response(_Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    status: int
    """The status code, 100-699."""
    reason: bytes
    """The reason phrase, raw (UTF-8 on the wire; may be empty)."""

    def __init__(
        self,
        *,
        status: int,
        reason: bytes = b"",
        headers: Headers | Iterable[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        version: bytes = SIP_2_0,
        _trusted: bool = False,
    ) -> None:
        """Build a response; see :func:`sipmsg.make_response` for the usual way.

        ``_trusted`` is sipmsg's own: the parser and the editing methods pass
        parts already checked.

        Raises:
            LocalProtocolError: status outside 100-699, or CR/LF in the reason.
        """
        if not _trusted:
            _check_status_line(status, reason)
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers if isinstance(headers, Headers) else Headers.from_pairs(headers)
        self.body = body
        _reset_cache(self, None)

    def _start_line(self) -> bytes:
        return b"%s %d %s" % (self.version, self.status, self.reason)

    def _copy(self, headers: Headers, body: bytes) -> Response:
        return Response(
            status=self.status,
            reason=self.reason,
            headers=headers,
            body=body,
            version=self.version,
            _trusted=True,
        )

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason!r}>"


def _check_status_line(status: int, reason: bytes) -> None:
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} outside 100-699")
    if reason.find(b"\r") >= 0 or reason.find(b"\n") >= 0:
        raise LocalProtocolError("reason phrase holds CR or LF")


def built_response(status: int, reason: bytes, headers: Headers) -> Response:
    """``Response(status=status, reason=reason, headers=headers)``, for the builders.

    The same checks and result; compiled, it is a direct call instead of a
    Python class's keyword call (~0.3 µs less per response built).

    Raises:
        LocalProtocolError: status outside 100-699, or CR/LF in the reason.
    """
    _check_status_line(status, reason)
    return Response(status=status, reason=reason, headers=headers, _trusted=True)


def _request_from_wire(start: bytes, headers: Headers, body: bytes, data: bytes) -> Request:
    # Request-Line = Method SP Request-URI SP SIP-Version CRLF (§25.1): exactly
    # two single spaces; RFC 4475 §3.1.2.7-3.1.2.9 reject anything looser.
    parts = start.split(b" ")
    if len(parts) != 3:
        raise ParseError("bad Request-Line")
    method, uri, version = parts
    if method not in METHODS and _TOKEN_RE.match(method) is None:
        raise ParseError("bad method in Request-Line")
    if not uri or uri[0] == 0x3C or uri.find(b"\t") >= 0 or uri.find(b">") >= 0:
        # RFC 4475 §3.1.2.11: "<>" around the Request-URI is malformed.
        raise ParseError("bad Request-URI")
    req = Request(
        method=method,
        uri=uri,
        headers=headers,
        body=body,
        version=_check_version(version),
        _trusted=True,
    )
    req._data = data
    return req


def _response_from_wire(start: bytes, headers: Headers, body: bytes, data: bytes) -> Response:
    # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF (§25.1)
    # Compiled index scans: the first SP, three digits, the second SP.
    n = len(start)
    sp = 0
    while sp < n and start[sp] != 0x20:
        sp += 1
    version = start[:sp]
    status = 0
    end = sp + 1
    while end < n and start[end] != 0x20:
        c = start[end]
        if c < 0x30 or c > 0x39:
            status = -1
        elif status >= 0:
            status = status * 10 + (c - 0x30)
        end += 1
    if end - sp != 4 or not 100 <= status <= 999:
        # RFC 4475 §3.1.2.15 (bigcode): a status code that is not three digits.
        raise ParseError("bad Status-Code")
    reason = start[end + 1 :] if end < n else b""
    for i in range(len(reason)):
        if reason[i] == 0x0D or reason[i] == 0x0A:
            raise ParseError("bad Reason-Phrase")
    resp = Response(
        status=status,
        reason=reason,
        headers=headers,
        body=body,
        version=_check_version(version),
        _trusted=True,
    )
    resp._data = data
    return resp
