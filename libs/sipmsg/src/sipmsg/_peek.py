"""The classifying parse: :func:`peek` reads what an edge routes on, in one pass.

An edge (or any stateless front) needs a handful of fields before it decides
what to do with a message: the start line, the top Via's sent-by and branch,
Call-ID, CSeq, the From/To tags, Max-Forwards and Content-Length.
:func:`peek` finds those headers with one regex over the header block instead
of building the general header index of :func:`~sipmsg.parse`.

Its result is defined by the general parser: ``peek(data)`` equals
:func:`_peek_general` (``parse`` plus the typed accessors), or both raise
the same :class:`~sipmsg.ParseError`. The one-pass path handles the usual
shape (CRLF line ends, no folding, no leading CRLF, each field written
plainly) and hands anything else, and every error, to the general path, so
an error's reason and status hint are always the general parser's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ._abnf import TOKEN, WS, slot_setters
from ._config import ParserConfig
from ._errors import ParseError
from ._message_base import _quick_tag, _wrap, call_id_ok
from ._native import python_class
from .headers import METHODS
from .message import SIP_2_0, Request, parse
from .via import parse_via_list

__all__ = ["Summary", "peek"]

_DEFAULT_CONFIG: Final = ParserConfig()


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """What a classifying parse reads from a message (see :func:`peek`).

    Exactly one of ``method`` (a request) and ``status`` (a response) is set.
    """

    method: bytes | None
    """The request's method, case-sensitive (§7.1); None for a response."""
    uri: bytes | None
    """The request's raw Request-URI (not parsed); None for a response."""
    status: int | None
    """The response's status code; None for a request."""
    via_transport: bytes
    """The top Via's transport, upper-cased (``b"UDP"``)."""
    via_host: bytes
    """The top Via's sent-by host."""
    via_port: int | None
    """The top Via's sent-by port, None when absent."""
    via_branch: bytes | None
    """The top Via's branch, None when absent (an RFC 2543 peer)."""
    call_id: bytes
    """The Call-ID."""
    cseq_seq: int
    """The CSeq number."""
    cseq_method: bytes
    """The CSeq method, as on the wire."""
    from_tag: bytes | None
    """The From tag, or None."""
    to_tag: bytes | None
    """The To tag, or None (an out-of-dialog request)."""
    max_forwards: int | None
    """Max-Forwards (0-255), None when absent."""
    content_length: int
    """Content-Length, or the body's length when the header is absent."""
    body_start: int
    """Offset in ``data`` of the body's first octet: the body is
    ``data[body_start : body_start + content_length]``."""

    @property
    def is_request(self) -> bool:
        """True for a request, False for a response."""
        return self.method is not None


def peek(data: bytes | bytearray | memoryview, config: ParserConfig | None = None) -> Summary:
    """Read the fields an edge classifies a message by, without a full parse.

    Checked as :func:`sipmsg.parse` checks the message (start line, header
    names, Content-Length, the size limits), plus: the top Via value is
    parsed in full; Call-ID, CSeq, From, To and Via must be present; Call-ID,
    CSeq and Max-Forwards must be well-formed; From and To need only a
    readable tag (their URIs are not parsed, as with ``msg.from_tag``). Other
    headers are not read.

    Args:
        data: the message octets (a datagram, or one framed stream message).
        config: size limits, as for :func:`sipmsg.parse`.

    Returns:
        The :class:`Summary`, equal to what :func:`sipmsg.parse` and the typed
        accessors give.

    Raises:
        ParseError: what ``parse`` or the accessors raise (same reason and
            status hint), or "missing Via header".
    """
    cfg = _DEFAULT_CONFIG if config is None else config
    buf = data if type(data) is bytes else bytes(data)
    summary = _peek_fast(buf, cfg)
    return _peek_general(buf, cfg) if summary is None else summary


# At each line start of the header block: a header peek reads (its name, any
# case, compact forms included, §7.3.3; its value), or a line parse() would
# reject or that needs its general path (not "token *WS ':'": a bad name, no
# colon, a folded line), which matches with both groups empty. The value runs
# to the CR: the block is checked to hold CR only before LF.
_LINE_RE: Final = re.compile(
    rb"\r\n(?:(?i:(via|v|call-id|i|cseq|from|f|to|t|content-length|l|max-forwards))"
    rb"[ \t]*:[ \t]*([^\r]*)|(?!" + TOKEN + rb"[ \t]*:))"
)
_KEYS: Final[dict[bytes, bytes]] = {
    b"via": b"via",
    b"v": b"via",
    b"call-id": b"call-id",
    b"i": b"call-id",
    b"cseq": b"cseq",
    b"from": b"from",
    b"f": b"from",
    b"to": b"to",
    b"t": b"to",
    b"content-length": b"content-length",
    b"l": b"content-length",
    b"max-forwards": b"max-forwards",
}
_TOKEN_RE: Final = re.compile(rb"\A" + TOKEN + rb"\Z")


def _peek_fast(data: bytes, cfg: ParserConfig) -> Summary | None:
    """The one-pass path: a Summary, or None to hand the message to the general path.

    Never raises: anything odd (or wrong) is the general path's to judge.
    """
    if len(data) > cfg.max_message_size:
        return None
    end = data.find(b"\r\n\r\n")
    eol = data.find(b"\r\n")
    if end < 0 or eol < 1:
        return None
    head = data[:end]
    # CRLF line ends only: a bare CR or LF (the tolerant paths) goes general.
    n = head.count(b"\r\n")
    if n > cfg.max_headers or head.count(b"\n") != n or head.count(b"\r") != n:
        return None

    method: bytes | None = None
    uri: bytes | None = None
    status: int | None = None
    start = data[:eol]
    if start[:4].upper() == b"SIP/":
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF (§25.1)
        code = start[8:11]
        if (
            start[:8] != b"SIP/2.0 "
            or not code.isdigit()
            or code[0] == 0x30
            or start[11:12] not in (b" ", b"")
        ):
            return None
        status = int(code)
    else:
        # Request-Line = Method SP Request-URI SP SIP-Version CRLF (§25.1)
        parts = start.split(b" ")
        if len(parts) != 3 or parts[2] != SIP_2_0:
            return None
        method, uri = parts[0], parts[1]
        if method not in METHODS and _TOKEN_RE.match(method) is None:
            return None
        if not uri or uri[0] == 0x3C or uri.find(b"\t") >= 0 or uri.find(b">") >= 0:
            return None

    found: dict[bytes, bytes] = {}
    via: bytes | None = None
    keys = _KEYS
    for name, value in _LINE_RE.findall(head, eol):
        if not name:
            return None  # a line parse() rejects, or folding
        key = keys[name.lower()]
        if key == b"via":
            if via is None:
                via = value
        elif key in found:
            return None  # repeated: the general path says which error
        else:
            found[key] = value

    body_start = end + 4
    raw = found.get(b"content-length")
    if raw is None:
        content_length = len(data) - body_start
    else:
        raw = raw.rstrip(WS)
        if not raw.isdigit() or len(raw) > 9:
            return None
        content_length = int(raw)
        if content_length > cfg.max_body_size or body_start + content_length > len(data):
            return None

    call_id = found.get(b"call-id")
    cseq = found.get(b"cseq")
    from_ = found.get(b"from")
    to = found.get(b"to")
    if via is None or call_id is None or cseq is None or from_ is None or to is None:
        return None
    call_id = call_id.rstrip(WS)
    if not call_id_ok(call_id):
        return None
    parts = cseq.split()
    if len(parts) != 2:
        return None
    digits, cseq_method = parts
    if not digits.isdigit() or len(digits) > 10 or int(digits) >= 2**31:
        return None
    if cseq_method not in METHODS and _TOKEN_RE.match(cseq_method) is None:
        return None
    ok, from_tag = _tag(from_.rstrip(WS))
    if not ok:
        return None
    ok, to_tag = _tag(to.rstrip(WS))
    if not ok:
        return None
    max_forwards: int | None = None
    raw = found.get(b"max-forwards")
    if raw is not None:
        raw = raw.rstrip(WS)
        if not raw.isdigit() or len(raw) > 3:
            return None
        max_forwards = int(raw)
        if max_forwards > 255:
            return None
    top = _top_via(via.rstrip(WS))
    if top is None:
        return None
    return _summary(
        method=method,
        uri=uri,
        status=status,
        via=top,
        call_id=call_id,
        cseq=(int(digits), cseq_method),
        tags=(from_tag, to_tag, max_forwards),
        content_length=content_length,
        body_start=body_start,
    )


# The usual top Via: "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK..." with
# at most rport and an IPv4 received beside one lower-case branch; each part
# is one that parse_via accepts as it is, so a match needs no more checks.
# Anything else (a host name, IPv6, other parameters) takes parse_via_list.
_OCTET: Final = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4: Final = _OCTET + rb"(?:\." + _OCTET + rb"){3}"
_PORT: Final = (
    rb"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
)
_OTHER: Final = rb"(?:;rport(?:=" + _PORT + rb")?|;received=" + _IPV4 + rb")*"
_VIA_RE: Final = re.compile(
    rb"SIP/2\.0/(UDP|TCP|TLS|SCTP|WSS?) ("
    + _IPV4
    + rb")(?::("
    + _PORT
    + rb"))?"
    + _OTHER
    + rb"(?:;branch=("
    + TOKEN
    + rb")"
    + _OTHER
    + rb")?"
)


def _top_via(value: bytes) -> tuple[bytes, bytes, int | None, bytes | None] | None:
    """The top Via's transport, host, port and branch, as ``parse_via_list(value)[0]``.

    None when that raises: the general path then raises it.
    """
    m = _VIA_RE.fullmatch(value)
    if m is not None:
        transport, host, port, branch = m.groups()
        return transport, host, None if port is None else int(port), branch
    try:
        top = parse_via_list(value)[0]
    except ParseError:
        return None
    return top.transport, top.host, top.port, top.branch


# From or To in the usual shape: a quoted (without escapes) or token display
# name, "<uri>", and at most a tag. On these, msg.from_tag / msg.to_tag read
# the tag after the last ">" (see _message_base._quick_tag), which is the group.
_TAG_RE: Final = re.compile(rb'(?:"[^"\\]*"|[^"<>\\]*)[ \t]*<[^<>"]*>(?:;tag=([^;"<>\s]+))?')


def _tag(value: bytes) -> tuple[bool, bytes | None]:
    m = _TAG_RE.fullmatch(value)
    if m is not None:
        return True, m.group(1)
    return _quick_tag(value)


def _peek_general(data: bytes, cfg: ParserConfig) -> Summary:
    """The Summary by :func:`sipmsg.parse` and the typed accessors: peek's definition."""
    msg = parse(data, cfg)
    first_via = msg.headers.single(b"via")[1]
    if first_via is None:
        raise ParseError("missing Via header", header="via")
    top = _wrap(b"via", parse_via_list, first_via)[0]
    call_id = msg.call_id
    cseq = msg.cseq
    tags = (msg.from_tag, msg.to_tag, msg.max_forwards)
    # parse() drops leading CRLFs (§7.5) and any octets after Content-Length.
    skipped = len(data) - len(data.lstrip(b"\r\n"))
    body_start = skipped + len(bytes(msg)) - len(msg.body)
    if isinstance(msg, Request):
        method, uri, status = msg.method, msg.uri, None
    else:
        method, uri, status = None, None, msg.status
    return _summary(
        method=method,
        uri=uri,
        status=status,
        via=(top.transport, top.host, top.port, top.branch),
        call_id=call_id,
        cseq=(cseq.seq, cseq.method),
        tags=tags,
        content_length=msg.content_length,
        body_start=body_start,
    )


def _summary(
    *,
    method: bytes | None,
    uri: bytes | None,
    status: int | None,
    via: tuple[bytes, bytes, int | None, bytes | None],
    call_id: bytes,
    cseq: tuple[int, bytes],
    tags: tuple[bytes | None, bytes | None, int | None],
    content_length: int,
    body_start: int,
) -> Summary:
    summary = object.__new__(Summary)
    (
        set_method,
        set_uri,
        set_status,
        set_via_transport,
        set_via_host,
        set_via_port,
        set_via_branch,
        set_call_id,
        set_cseq_seq,
        set_cseq_method,
        set_from_tag,
        set_to_tag,
        set_max_forwards,
        set_content_length,
        set_body_start,
    ) = _SETTERS
    set_method(summary, method)
    set_uri(summary, uri)
    set_status(summary, status)
    set_via_transport(summary, via[0])
    set_via_host(summary, via[1])
    set_via_port(summary, via[2])
    set_via_branch(summary, via[3])
    set_call_id(summary, call_id)
    set_cseq_seq(summary, cseq[0])
    set_cseq_method(summary, cseq[1])
    set_from_tag(summary, tags[0])
    set_to_tag(summary, tags[1])
    set_max_forwards(summary, tags[2])
    set_content_length(summary, content_length)
    set_body_start(summary, body_start)
    return summary


_SETTERS: Final = slot_setters(
    Summary,
    *("method", "uri", "status", "via_transport", "via_host", "via_port", "via_branch"),
    *("call_id", "cseq_seq", "cseq_method", "from_tag", "to_tag", "max_forwards"),
    *("content_length", "body_start"),
)
