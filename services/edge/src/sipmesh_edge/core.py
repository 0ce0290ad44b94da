"""What the edge decides about one message by itself: pure, no sockets, no clock, no NATS.

RFC 3261 §16.3 lists the checks a proxy runs before it forwards a request; the
edge runs the ones that need no service (syntax, Max-Forwards, loops, OPTIONS
addressed to itself, methods it does not know) and passes everything else on::

    triage(data)            -> KeepAlive | Garbage | Peeked | Response  (the hot path)
    transaction_key(peeked) -> ServerKey
    admit(peeked)           -> Request | Garbage  (the rest of the checks)
    classify(data)          -> KeepAlive | Garbage | Request | Response  (triage + admit)
    answer_locally(req, me) -> Response | None   (None: ask the registrar/router)
    stamp_via(req, host, port) -> bytes          (received/rport on the top Via)
    response_destination(via, ...)               (where a response over UDP goes)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from sipmesh_bus.subjects import SIP_REGISTER, SIP_ROUTE
from sipmesh_edge.branch import BranchInfo, is_loop, parse_branch
from sipmesh_edge.stamp import stamp_via
from sipmsg import (
    LocalProtocolError,
    ParseError,
    ParserConfig,
    Request,
    Response,
    Summary,
    make_response,
    parse,
    parse_uri,
    peek,
)
from sipmsg._abnf import ip_key, split_comma
from sipmsg.headers import split_header_lines
from sipmsg.transaction import MAGIC_COOKIE, ServerKey, server_key
from sipmsg.uri import FAST_SIP, SipUri
from sipmsg.via import Via, is_rfc3261_branch

__all__ = [
    "ALLOW",
    "SUPPORTED_METHODS",
    "EdgeIdentity",
    "Garbage",
    "Incoming",
    "KeepAlive",
    "Peeked",
    "admit",
    "answer_locally",
    "bus_subject_for",
    "carries_sdp",
    "check_request",
    "check_response",
    "classify",
    "error_response",
    "peek_triage",
    "response_destination",
    "retry_later",
    "stamp_via",
    "transaction_key",
    "triage",
    "without_top_via",
]

SUPPORTED_METHODS: Final = frozenset(
    b"REGISTER INVITE ACK BYE CANCEL OPTIONS PRACK UPDATE INFO REFER NOTIFY SUBSCRIBE "
    b"MESSAGE PUBLISH".split()
)
#: The Allow header value of 501 and of the answer to OPTIONS (§20.5).
ALLOW: Final = b", ".join(sorted(SUPPORTED_METHODS))
_ACCEPT: Final = b"application/sdp"
_SDP: Final = b"application/sdp"
_DEFAULT_SIP_PORT: Final = 5060
_CANONICAL_IPV4: Final = re.compile(rb"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
_DEFAULT_SIPS_PORT: Final = 5061


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeIdentity:
    """The names and ports under which this edge is reached (what "to itself" means)."""

    edge_id: str
    #: This edge's id (a NATS token).
    hosts: frozenset[bytes]
    #: Host names (lower-case) and IP literals the edge answers to, advertised ones included.
    ports: frozenset[int]
    #: The ports the edge listens on (UDP and streams).
    supported: tuple[bytes, ...] = ()
    #: Option-tags listed in Supported in the answer to OPTIONS.
    _host_keys: frozenset[bytes] = field(init=False, repr=False, compare=False)
    _ipv4_texts: frozenset[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Packed IP literals, computed once: is_self runs for every Via of every request.
        keys = frozenset(k for k in (ip_key(h) for h in self.hosts) if k is not None)
        object.__setattr__(self, "_host_keys", keys)
        # The IPv4 ones as the canonical dotted quad (no leading zeros).
        texts = frozenset(b"%d.%d.%d.%d" % tuple(k) for k in keys if len(k) == 4)
        object.__setattr__(self, "_ipv4_texts", texts)

    def is_self(self, host: bytes, port: int | None, *, sips: bool = False) -> bool:
        """True when ``host:port`` names this edge (IP literals compared by value)."""
        if port is None:
            port = _DEFAULT_SIPS_PORT if sips else _DEFAULT_SIP_PORT
        if port not in self.ports:
            return False
        if host.lower() in self.hosts:
            return True
        if _CANONICAL_IPV4.fullmatch(host) is not None:
            # Written without leading zeros: the text alone says which address.
            return host in self._ipv4_texts
        key = ip_key(host)
        return key is not None and key in self._host_keys


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlive:
    """CRLF keep-alive (RFC 5626 §4.4.1): nothing to answer over UDP."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Garbage:
    """Bytes that are not a usable SIP message."""

    error: ParseError
    #: Why; ``error.status_hint`` is the status to answer with.
    response: Response | None
    #: The error response to send back, or None when none can be built (silence).


Incoming: TypeAlias = KeepAlive | Garbage | Request | Response


class Peeked:
    """A request that passed :func:`triage`: its :class:`~sipmsg.Summary`, parsed in full on demand.

    What the edge absorbs by itself (a retransmission matched by
    :func:`transaction_key`) is never parsed further; :attr:`request` runs
    :func:`sipmsg.parse` once, when the request is answered, forwarded or
    rewritten.
    """

    __slots__ = ("_request", "config", "data", "method", "summary")

    def __init__(
        self,
        data: bytes,
        summary: Summary | None,
        config: ParserConfig | None,
        *,
        request: Request | None = None,
    ) -> None:
        self.data = data
        #: The octets as received.
        self.summary = summary
        #: What :func:`sipmsg.peek` read; None when the request came the
        #: general way (``request`` is then already parsed).
        self.config = config
        #: The parser limits the peek ran with (the parse uses the same).
        self._request = request
        method = summary.method if summary is not None else None
        if method is None:
            method = b"" if request is None else request.method
        self.method: bytes = method
        #: The request's method.

    @property
    def request(self) -> Request:
        """The fully parsed request (parsed on first access, then kept).

        Raises:
            ParseError: never in practice: ``peek`` accepted these octets
                under the same limits, and its result is defined by ``parse``.
        """
        req = self._request
        if req is None:
            msg = parse(self.data, self.config)
            if not isinstance(msg, Request):
                raise ParseError("peeked a request, parsed a response")
            self._request = req = msg
        return req


def triage(
    data: bytes, config: ParserConfig | None = None
) -> KeepAlive | Garbage | Peeked | Response:
    """Classify one datagram or framed message: just what matching a transaction needs.

    A request is parsed and its top Via read (what the transaction key
    needs); the checks of :func:`check_request` wait for :func:`admit`, which
    the sink skips for a retransmission it absorbs (an RFC 2543 request,
    keyed on more, is checked here in full). A response gets
    :func:`check_response` (what the edge reads of it); garbage is answered
    as by :func:`classify`.

    Args:
        data: the message octets.
        config: parser size limits.

    Returns:
        KeepAlive, Garbage (with the 4xx/5xx to send, or None), the request
        as :class:`Peeked` (parsed, ``summary`` None), or the Response.
    """
    if data[:1] in _CRLF and not data.strip(b"\r\n"):
        return KeepAlive()
    try:
        msg = parse(data, config)
    except ParseError as exc:
        return Garbage(error=exc, response=error_response(data, exc))
    try:
        if isinstance(msg, Response):
            check_response(msg)
            return msg
        if not msg.via:
            raise ParseError("missing Via header", header="via")
        if not is_rfc3261_branch(msg.via[0].branch):
            # RFC 2543 matching (§17.2.3) keys on the Request-URI, From/To
            # tags, Call-ID and CSeq: check them all before the sink computes
            # the key. With an RFC 3261 branch the key is the top Via and the
            # method alone, and the Request-URI checks wait for admit: a
            # retransmission gets the last response whatever its URI says.
            check_request(msg)
    except ParseError as exc:
        if isinstance(msg, Response) or msg.method == b"ACK":
            return Garbage(error=exc, response=None)
        return Garbage(error=exc, response=_answer_error(msg, exc))
    return Peeked(data, None, config, request=msg)


def peek_triage(
    data: bytes, config: ParserConfig | None = None
) -> KeepAlive | Garbage | Peeked | Response:
    """:func:`triage` by :func:`sipmsg.peek`: a request is not parsed in full until :func:`admit`.

    Not the sink's default: peek plus the parse of every request not absorbed
    costs more than the parse alone saves on retransmissions
    (``bench/edge/run.py``, docs/benchmarks.md "Edge"). Kept to compare.

    A request is read by :func:`sipmsg.peek` (start line, top Via, Call-ID,
    CSeq, From/To tags, Max-Forwards, Content-Length) plus the Request-URI
    checks of :func:`check_request` and comes back as :class:`Peeked`.
    Responses and anything ``peek`` rejects take :func:`classify`'s path:
    garbage gets the same answer (the error and status hint are ``parse``'s).

    Args:
        data: the message octets.
        config: parser size limits.

    Returns:
        KeepAlive, Garbage (with the 4xx/5xx to send, or None), a Peeked
        request, or the parsed Response (checked by :func:`check_response`).
    """
    if not data.strip(b"\r\n"):
        return KeepAlive()
    if data[:4].upper() == b"SIP/":
        return _fallback(data, config)
    try:
        summary = peek(data, config)
    except ParseError:
        return _fallback(data, config)
    if summary.method is None:
        return _fallback(data, config)  # a response after leading CRLFs
    peeked = Peeked(data, summary, config)
    try:
        _check_start(summary.method, summary.uri or b"", summary.cseq_method)
    except ParseError as exc:
        if summary.method == b"ACK":
            return Garbage(error=exc, response=None)
        return Garbage(error=exc, response=_answer_error(peeked.request, exc))
    return peeked


def _fallback(data: bytes, config: ParserConfig | None) -> KeepAlive | Garbage | Peeked | Response:
    incoming = _classify_parsed(data, config)
    if isinstance(incoming, Request):
        # Not expected (peek reads less than check_request), kept safe anyway.
        return Peeked(data, None, config, request=incoming)
    return incoming


def admit(peeked: Peeked) -> Request | Garbage:
    """The rest of :func:`check_request` for a request the sink does not absorb.

    After :func:`triage`: everything :func:`check_request` reads (the
    Request-URI, Call-ID, From and To, Max-Forwards, CSeq; the Via triage
    read is cached). After
    :func:`peek_triage`: the full parse, and every Via (``peek`` reads the
    top one; the edge walks them all for loops, §16.3 step 4). Either way a
    request gets the answer :func:`classify` gives it.

    Args:
        peeked: what :func:`triage` returned.

    Returns:
        The Request, or Garbage (a 400, or None for an ACK).
    """
    req = peeked.request
    try:
        if peeked.summary is None:
            check_request(req)
        else:
            _ = req.via
            req.check_from_to()
    except ParseError as exc:
        if req.method == b"ACK":
            return Garbage(error=exc, response=None)
        return Garbage(error=exc, response=_answer_error(req, exc))
    return req


def transaction_key(peeked: Peeked, *, method: bytes | None = None) -> ServerKey:
    """:func:`sipmsg.transaction.server_key` of the request, from its Summary when it can.

    With an RFC 3261 branch the key is the branch, the sent-by and the method
    (§17.2.3), all in the Summary: a retransmission is matched without a full
    parse. An RFC 2543 request (no magic cookie) is keyed on its parse.

    Args:
        peeked: what :func:`triage` returned.
        method: as for ``server_key`` (``b"INVITE"`` finds what a CANCEL cancels).

    Returns:
        The key; equal to ``server_key(peeked.request, method=method)``.
    """
    s = peeked.summary
    if s is None:
        return server_key(peeked.request, method=method)
    if method is None:
        method = peeked.method
    if method == b"ACK":
        method = b"INVITE"
    branch = s.via_branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        # As server_key builds it: host names compare case-insensitively.
        port = b"" if s.via_port is None else b"%d" % s.via_port
        return (branch, s.via_host.lower(), port, method)
    return server_key(peeked.request, method=method)


def classify(data: bytes, config: ParserConfig | None = None) -> Incoming:
    """Parse one datagram or framed message just enough to route it.

    A request gets the checks the edge itself relies on (see
    :func:`check_request`); the rest of §16.3 step 1 ("The request MUST be
    well-formed") is left to the registrar and router, which parse From, To,
    Contact and Content-Type anyway and answer 400 naming the header. A
    response the edge cannot match is dropped (see :func:`check_response`):
    §18.1.2 "If there are any mismatches, the response MUST be silently
    discarded". The sink runs the same in two
    steps (:func:`triage`, then :func:`admit` for what is not absorbed).

    Args:
        data: the message octets.
        config: parser size limits.

    Returns:
        KeepAlive, Garbage (with the 4xx/5xx to send, or None), or the parsed
        Request/Response.
    """
    incoming = triage(data, config)
    return admit(incoming) if isinstance(incoming, Peeked) else incoming


def _classify_parsed(data: bytes, config: ParserConfig | None) -> Incoming:
    """:func:`classify` by ``parse`` and :func:`check_request` / :func:`check_response`."""
    try:
        msg = parse(data, config)
    except ParseError as exc:
        return Garbage(error=exc, response=error_response(data, exc))
    try:
        if isinstance(msg, Request):
            check_request(msg)
        else:
            check_response(msg)
    except ParseError as exc:
        if isinstance(msg, Response) or msg.method == b"ACK":
            return Garbage(error=exc, response=None)
        return Garbage(error=exc, response=_answer_error(msg, exc))
    return msg


def check_request(req: Request) -> None:
    """The checks of a request that the edge needs before it acts on it (the hot path).

    What the edge reads: the Request-URI (416 for a scheme it does not serve,
    §8.2.2.1; 400 for headers in it, §19.1.1 Table 1), the Via (stamped and
    used for the response), Call-ID and CSeq with its method (the transaction
    key, §17.2.3; §8.1.1.5 "The method MUST match that of the request"), the
    From and To as name-addrs (every response the edge builds copies them, and
    a server transaction's key reads From's tag; RFC 4475 "baddn"
    must get a 400 here, not an internal error later) and Max-Forwards (483).
    ``sipmsg.validate_request`` checks more (Contact, Content-Type): the
    services run it, as they parse those headers themselves.

    Raises:
        ParseError: 416 or 400 naming the header.
    """
    _check_keyed(req)
    _ = req.call_id
    # Valid From and To without building them (sipmsg's check_from_to): a
    # response copies them raw (§8.2.6.2) and the key reads only From's tag.
    req.check_from_to()
    _ = req.max_forwards
    if req.cseq.method != req.method:
        raise ParseError("bad CSeq header: method does not match the request", header="cseq")


def check_response(resp: Response) -> None:
    """The checks of a response that the edge needs before it acts on it (the hot path).

    What the edge reads of a response: the top Via and the CSeq, which match
    it to a client transaction (§17.1.3: "the same value of the branch
    parameter in the top Via header field ... [and] the method parameter in
    the CSeq header field matches the method of the request"), the status,
    and To's tag (a 2xx is told apart per dialog, RFC 6026 §8.4). Nothing
    else: the Vias below ours, From, Call-ID and the rest go upstream as they
    came (a proxy passes on what it does not read, §16.7), and the router
    parses in full every response the edge asks it about. The ACK of a
    non-2xx copies To (§17.1.1.3); its builder checks To itself and the
    client transaction drops the response when it cannot build one.
    ``sipmsg.validate_response`` checks From, Call-ID and every Via as well.

    Raises:
        ParseError: naming the missing, repeated or malformed top Via, CSeq
            or To (§18.1.2: the response is then discarded, never answered).
    """
    if resp.top_via is None:
        raise ParseError("missing Via header", header="via")
    _ = resp.cseq, resp.to_tag


def _check_keyed(req: Request) -> None:
    """The first checks of :func:`check_request`: what a transaction is matched by."""
    raw = req.uri
    colon = raw.find(b":")
    scheme = (raw if colon < 0 else raw[:colon]).lower()
    if scheme not in _SCHEMES:
        raise ParseError("unsupported URI scheme", status_hint=416)
    if scheme == b"tel" or not _plain_sip_uri(raw, colon):
        uri = req.request_uri
        if isinstance(uri, SipUri) and uri.headers:
            raise ParseError("bad Request-URI: it carries headers")
    if not req.via:
        raise ParseError("missing Via header", header="via")


def _plain_sip_uri(uri: bytes, colon: int) -> bool:
    """True when ``parse_uri`` surely accepts this sip/sips URI and it carries no headers.

    Nothing at the edge reads the SipUri: sipmsg's fast-path regex (``FAST_SIP``)
    decides the usual shape without building it, exactly as ``parse_uri`` would
    (port <= 65535; a ttl or maddr value, which it checks, goes to the parse).
    """
    m = _FAST_SIP_URI.fullmatch(uri, colon + 1)
    if m is None:
        return False
    port_at = m.start(3)
    if port_at >= 0 and m.end(3) - port_at == 5 and uri[port_at : m.end(3)] > b"65535":
        return False
    params_at = m.start(4)
    if params_at == m.end(4):
        return True
    params = uri[params_at:].lower()
    return params.find(b"ttl") < 0 and params.find(b"maddr") < 0


def _check_start(method: bytes, uri: bytes, cseq_method: bytes) -> None:
    """What :func:`check_request` checks beyond the peek: the Request-URI, CSeq's method."""
    scheme = uri.partition(b":")[0].lower()
    if scheme not in _SCHEMES:
        raise ParseError("unsupported URI scheme", status_hint=416)
    try:
        parsed = parse_uri(uri)
    except ParseError as exc:
        # As Request.request_uri words it.
        raise ParseError(f"bad Request-URI: {exc.reason}", status_hint=exc.status_hint) from exc
    if isinstance(parsed, SipUri) and parsed.headers:
        raise ParseError("bad Request-URI: it carries headers")
    if cseq_method != method:
        raise ParseError("bad CSeq header: method does not match the request", header="cseq")


_SCHEMES: Final = frozenset({b"sip", b"sips", b"tel"})
_FAST_SIP_URI: Final = re.compile(FAST_SIP)
_CRLF: Final = (b"\r", b"\n")


def error_response(data: bytes, error: ParseError) -> Response | None:
    """The error response for bytes ``parse`` rejected, when it can be built.

    The start line or the framing is broken, but a request's Via, From, To,
    Call-ID and CSeq may still be readable, and that is all a response needs
    (§8.2.6.2). Responses and ACKs are never answered.

    Args:
        data: the raw message.
        error: what ``parse`` raised; its ``status_hint`` becomes the status.

    Returns:
        The response, or None (silence).
    """
    data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    lines = head.split(b"\r\n")
    start = lines[0]
    if start[:4].upper() == b"SIP/" or start.split(b" ", 1)[0] == b"ACK":
        return None
    try:
        # The body is not needed: leave out Content-Length, which may be the
        # very header that broke the parse (negative, repeated).
        kept = [ln for ln in lines[1:] if _header_name(ln) not in _CONTENT_LENGTH_NAMES]
        headers, _ = split_header_lines(kept)
        salvaged = Request(method=b"INVITE", uri=b"sip:invalid", headers=headers)
    except (ParseError, LocalProtocolError):
        return None
    if salvaged.header("cseq") is not None and _cseq_method(salvaged) == b"ACK":
        return None
    return _answer_error(salvaged, error)


def _header_name(line: bytes) -> bytes:
    return line.partition(b":")[0].strip(b" \t").lower()


_CONTENT_LENGTH_NAMES: Final = frozenset({b"content-length", b"l"})


def _cseq_method(req: Request) -> bytes | None:
    try:
        return req.cseq.method
    except ParseError:
        return None


def _answer_error(req: Request, error: ParseError) -> Response | None:
    status = error.status_hint if 400 <= error.status_hint <= 699 else 400
    # The reason names the header (ParseError.reason is made for that); it must
    # stay one clean line of text.
    reason = error.reason.encode("utf-8", "replace")[:100]
    reason = bytes(b if 0x20 <= b < 0x7F else 0x3F for b in reason)
    try:
        # Not strict: the error may be in the very headers the response copies,
        # and RFC 4475 still expects a 400: a bad From/To ("baddn"), a CSeq out
        # of range ("scalar02"), repeated Call-ID/CSeq/From/To ("multi01", the
        # first of each is copied), broken Via values after a usable top one
        # ("badinv01"). Only an unusable top Via leaves nowhere to answer.
        return make_response(req, status, reason, strict=False)
    except (ParseError, LocalProtocolError):
        return None


def answer_locally(req: Request, me: EdgeIdentity) -> Response | None:
    """The response the edge gives a valid request by itself, or None to ask a service.

    In §16.3 order, after the syntax checks of :func:`classify`: OPTIONS to the
    edge itself (§11), methods the platform does not implement (501), Max-Forwards
    0 (483), loops (482). ACK is never answered (§17.1.1.3).

    Args:
        req: a request that passed :func:`classify`.
        me: the edge's names and ports.

    Returns:
        The response to send through the server transaction, or None.
    """
    if req.method == b"ACK":
        return None
    if req.method == b"OPTIONS" and _targets_self(req, me):
        # §11.2: "The response to an OPTIONS is constructed using the standard
        # rules for a SIP response ... Allow, Accept, Accept-Encoding,
        # Accept-Language, and Supported header fields SHOULD be present".
        return make_response(
            req,
            200,
            headers=[
                (b"Allow", ALLOW),
                (b"Accept", _ACCEPT),
                (b"Supported", b", ".join(me.supported)),
            ],
        )
    if req.method not in SUPPORTED_METHODS:
        # §8.2.1: "If a UAS recognizes but does not support a method, it MUST
        # return a 405 ... If the method is not recognized ... 501"; §21.5.2
        # lists the methods it does support in Allow.
        return make_response(req, 501, headers=[(b"Allow", ALLOW)])
    if req.max_forwards == 0:
        # §16.3 step 3: "If the Max-Forwards value reaches 0 ... the element
        # MUST NOT forward the request ... the element MUST return a 483".
        return make_response(req, 483)
    if _is_loop(req, me):
        # §16.3 step 4: "If it is, ... the request has looped. The element
        # MUST respond with a 482 (Loop Detected)".
        return make_response(req, 482)
    return None


def _targets_self(req: Request, me: EdgeIdentity) -> bool:
    uri = req.request_uri
    if not isinstance(uri, SipUri) or uri.user is not None:
        return False
    return me.is_self(uri.host, uri.port, sips=uri.scheme == b"sips")


def _is_loop(req: Request, me: EdgeIdentity) -> bool:
    # §16.3 item 4: "the element MUST check whether its own address is already
    # present in the Via header field values. If it is not, the element MUST
    # NOT perform any further loop detection". With a Via of ours, the branch
    # tells a loop (the same request back again) from a spiral (sent back to
    # us on purpose, with another Request-URI): see sipmesh_edge.branch. A Via
    # of ours without our branch format is counted as a loop.
    own: list[BranchInfo] = []
    for via in req.via:
        if me.is_self(via.host, via.port):
            info = parse_branch(via.branch or b"")
            if info is None:
                return True
            own.append(info)
    return is_loop(req, own)


def bus_subject_for(req: Request) -> str:
    """``sip.register`` for REGISTER, ``sip.route`` for every other request."""
    return SIP_REGISTER if req.method == b"REGISTER" else SIP_ROUTE


def response_destination(via: Via, source: tuple[str, int]) -> tuple[str, int]:
    """Where a response to a request received over UDP goes (RFC 3261 §18.2.2, RFC 3581 §4).

    "the response MUST be sent to the address in the "received" parameter,
    using the port indicated in the "sent-by" value, or using port 5060 if
    none is specified"; with rport, to the source port ("the server MUST send
    it to the IP address from which the request was received, and the port
    from which the request was sent"). The received address is the source by
    construction (see :func:`stamp_via`).

    Args:
        via: the request's top Via as received.
        source: the packet's (host, port).

    Returns:
        (host, port).
    """
    if via.has_rport:
        return source
    return source[0], via.port if via.port is not None else _DEFAULT_SIP_PORT


def carries_sdp(resp: Response) -> bool:
    """True when a response has an SDP body (sent to the router even when provisional)."""
    if not resp.body:
        return False
    count, value = resp.headers.single(b"content-type")
    if count == 1 and value is not None and value.strip(b" \t").lower() == _SDP:
        # The usual value: the parse's answer, without building its MediaType.
        return True
    try:
        ctype = resp.content_type
    except ParseError:
        return False
    return ctype is not None and ctype.mime == b"application/sdp"


def retry_later(req: Request, seconds: int) -> Response | None:
    """503 Service Unavailable with Retry-After (§21.5.4), or None for an ACK."""
    if req.method == b"ACK":
        return None
    return make_response(req, 503, headers=[(b"Retry-After", b"%d" % seconds)])


def without_top_via(resp: Response) -> Response:
    """The response a proxy passes upstream: its own (top) Via removed (§16.7 step 3).

    "The proxy removes the topmost Via header field value from the response."

    Raises:
        ParseError: the response has a single Via (it was meant for us, not upstream).
    """
    index = resp.headers.keys().index(b"via")
    raw_line = resp.headers.lines[index]
    values = split_comma(resp.headers[index][2])
    if len(resp.via) < 2:
        raise ParseError("response has no Via left to send it to", header="via")
    data = bytes(resp)
    at = data.find(b"\n" + raw_line + b"\r\n")
    if at < 0:
        raise ParseError("cannot locate the top Via line", header="via")
    if len(values) > 1:
        name = raw_line.partition(b":")[0].rstrip(b" \t")
        replacement = name + b": " + b", ".join(values[1:]) + b"\r\n"
    else:
        replacement = b""
    out = data[: at + 1] + replacement + data[at + 1 + len(raw_line) + 2 :]
    result = parse(out)
    if not isinstance(result, Response):
        raise ParseError("not a response after removing the top Via")
    return result
