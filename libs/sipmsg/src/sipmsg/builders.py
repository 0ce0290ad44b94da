"""Building messages from messages, and the checks a server runs first.

- :func:`make_response` answers a request (RFC 3261 §8.2.6).
- :func:`make_ack_for_non2xx` acknowledges a non-2xx final response (§17.1.1.3).
- :func:`make_cancel` cancels a pending request (§9.1).
- :func:`validate_request` / :func:`validate_response` parse the headers every
  request or response must carry, so that a server answers 400/416 up front.
- :func:`unsupported_options` lists the Require option-tags a server lacks (420).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from ._abnf import WS, split_comma
from ._errors import LocalProtocolError, ParseError
from ._message_base import _quick_tag, check_address_header
from .address import parse_address
from .headers import Headers, canonical_name, copied_line, line_value, make_line
from .message import Request, Response, built_response
from .uri import SipUri
from .via import Via, parse_via

__all__ = [
    "REASON_PHRASES",
    "make_ack_for_non2xx",
    "make_cancel",
    "make_response",
    "unsupported_options",
    "validate_request",
    "validate_response",
]

REASON_PHRASES: Final[dict[int, bytes]] = {
    # RFC 3261 §21, and the common codes of later RFCs (3265, 3329, 3903, 4028,
    # 4412, 4474, 5079, 5360, 5393, 5839, 6086, 6228, 8224, 8599, 8688).
    100: b"Trying",
    180: b"Ringing",
    181: b"Call Is Being Forwarded",
    182: b"Queued",
    183: b"Session Progress",
    199: b"Early Dialog Terminated",
    200: b"OK",
    202: b"Accepted",
    204: b"No Notification",
    300: b"Multiple Choices",
    301: b"Moved Permanently",
    302: b"Moved Temporarily",
    305: b"Use Proxy",
    380: b"Alternative Service",
    400: b"Bad Request",
    401: b"Unauthorized",
    402: b"Payment Required",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    406: b"Not Acceptable",
    407: b"Proxy Authentication Required",
    408: b"Request Timeout",
    410: b"Gone",
    412: b"Conditional Request Failed",
    413: b"Request Entity Too Large",
    414: b"Request-URI Too Long",
    415: b"Unsupported Media Type",
    416: b"Unsupported URI Scheme",
    417: b"Unknown Resource-Priority",
    420: b"Bad Extension",
    421: b"Extension Required",
    422: b"Session Interval Too Small",
    423: b"Interval Too Brief",
    428: b"Use Identity Header",
    429: b"Provide Referrer Identity",
    433: b"Anonymity Disallowed",
    436: b"Bad Identity-Info",
    437: b"Unsupported Certificate",
    438: b"Invalid Identity Header",
    439: b"First Hop Lacks Outbound Support",
    440: b"Max-Breadth Exceeded",
    469: b"Bad Info Package",
    470: b"Consent Needed",
    480: b"Temporarily Unavailable",
    481: b"Call/Transaction Does Not Exist",
    482: b"Loop Detected",
    483: b"Too Many Hops",
    484: b"Address Incomplete",
    485: b"Ambiguous",
    486: b"Busy Here",
    487: b"Request Terminated",
    488: b"Not Acceptable Here",
    489: b"Bad Event",
    491: b"Request Pending",
    493: b"Undecipherable",
    494: b"Security Agreement Required",
    500: b"Server Internal Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Server Time-out",
    505: b"Version Not Supported",
    513: b"Message Too Large",
    555: b"Push Notification Service Not Supported",
    580: b"Precondition Failure",
    600: b"Busy Everywhere",
    603: b"Decline",
    604: b"Does Not Exist Anywhere",
    606: b"Not Acceptable",
    607: b"Unwanted",
    608: b"Rejected",
}

# §12.1.1: the requests whose 1xx/2xx responses establish a dialog, and so
# carry the request's Record-Route back.
_DIALOG_METHODS: Final = frozenset({b"INVITE", b"SUBSCRIBE", b"REFER", b"NOTIFY"})
_DEFAULT_MAX_FORWARDS: Final = b"70"
# The canonical keys of what make_response copies (the shared key objects).
_VIA: Final = canonical_name(b"Via")
_RECORD_ROUTE: Final = canonical_name(b"Record-Route")
_SINGLE_KEYS: Final = tuple([canonical_name(n) for n in (b"From", b"To", b"Call-ID", b"CSeq")])
_CONTENT_LENGTH_KEY: Final = canonical_name(b"Content-Length")


def make_response(
    req: Request,
    status: int,
    reason: bytes | None = None,
    *,
    to_tag: bytes | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
    strict: bool = True,
) -> Response:
    """Build the response to ``req`` (RFC 3261 §8.2.6).

    §8.2.6.2: "The From field of the response MUST equal the From header field
    of the request. The Call-ID header field of the response MUST equal the
    Call-ID header field of the request. The CSeq header field of the response
    MUST equal the CSeq field of the request. The Via header field values in
    the response MUST equal the Via header field values in the request and MUST
    maintain the same ordering." The values are copied byte for byte. When the
    request's To has no tag, one is added (except to a 100): ``to_tag``, or one
    derived from the request, so a retransmitted request gets the same tag.
    Record-Route is copied into 1xx/2xx answers to dialog-creating requests
    (§12.1.1). ``headers`` come next, then ``Content-Length: 0``.

    Args:
        req: the request.
        status: 100-699.
        reason: the reason phrase; by default the usual one for ``status``.
        to_tag: the tag to add to To when the request's To has none.
        headers: extra ``(name, value)`` header lines.
        strict: validate From, To, Call-ID and CSeq before copying them.
            ``False`` is for the error response to a request that failed its
            checks: RFC 4475 expects a 400 to a malformed From or To
            ("baddn", "quotbal"), an out-of-range CSeq (§3.1.2.4) or repeated
            single-value headers (§3.3, "multi01"). From, To, Call-ID and CSeq
            are then copied raw, the first line of each when repeated (see
            :func:`_raw`); only the tags are read, and the top via-parm must
            parse: it is what the response is sent back by (§18.2.2).

    Raises:
        LocalProtocolError: ``req`` is an ACK (never answered, §17.1.1.3),
            ``status`` is outside 100-699, or an extra header is malformed.
        ParseError: a header the response copies is missing or malformed.
    """
    if req.method == b"ACK":
        raise LocalProtocolError("an ACK is never answered")
    if reason is None:
        reason = REASON_PHRASES.get(status, b"Unknown")
    if strict:
        # Validate what is copied raw below, From and To without building
        # them (in the order the accessors were read before: the same error
        # comes first when several headers are bad).
        check_address_header(req, b"from")
        _ = req.cseq, req.call_id
        to_line = _raw_line(req, b"to")
        check_address_header(req, b"to")
        has_tag = req.to_tag is not None
    else:
        _lenient_top_via(req)
        to_line = _raw_line(req, b"to")
        has_tag = _lenient_tag(b"to", line_value(to_line)) is not None
    hdrs = req.headers
    folded = hdrs._folded
    if status != 100 and not has_tag:
        tag = to_tag if to_tag is not None else _derived_tag(req, strict)
        to_line = b"To: " + (line_value(to_line) + b";tag=" + tag).strip(WS)
    else:
        to_line = copied_line(b"To: ", to_line, folded)
    lines = [copied_line(b"Via: ", v, folded) for v in hdrs._raw_lines(b"via")]
    if 100 < status < 300 and req.method in _DIALOG_METHODS:
        lines += [
            copied_line(b"Record-Route: ", v, folded) for v in hdrs._raw_lines(b"record-route")
        ]
    n_copied = len(lines)
    lines += [
        copied_line(b"From: ", _raw_line(req, b"from"), folded),
        to_line,
        copied_line(b"Call-ID: ", _raw_line(req, b"call-id"), folded),
        copied_line(b"CSeq: ", _raw_line(req, b"cseq"), folded),
    ]
    return built_response(status, reason, _response_headers(lines, n_copied, headers))


def _response_headers(
    copied: list[bytes], n_lists: int, extra: Iterable[tuple[bytes, bytes]]
) -> Headers:
    """The copied lines (``Name: value``: the Via lines, then any Record-Route,
    ``n_lists`` in all, then From, To, Call-ID, CSeq), then ``extra``, then
    Content-Length.

    The names are known tokens and the values were stripped: only CR and LF
    are checked, as ``Headers.from_pairs`` would, in one pass over them all.
    """
    blob = b"".join(copied)
    if blob.find(b"\r") >= 0 or blob.find(b"\n") >= 0:
        bad = next(ln for ln in copied if b"\r" in ln or b"\n" in ln)
        raise LocalProtocolError(f"header value for {bad[: bad.find(b':')]!r} holds CR or LF")
    lines = copied
    keys = [_VIA if ln[:1] == b"V" else _RECORD_ROUTE for ln in copied[:n_lists]]
    keys += _SINGLE_KEYS
    for name, value in extra:
        key, line = make_line(name, value)
        keys.append(key)
        lines.append(line)
    keys.append(_CONTENT_LENGTH_KEY)
    lines.append(b"Content-Length: 0")
    return Headers(tuple(lines), tuple(keys))


def _raw_line(req: Request, key: bytes) -> bytes:
    """The first stored ``key`` line; see :func:`_raw`."""
    line = req.headers._first_line(key)
    if line is None:
        raise ParseError(f"missing {key.decode()} header", header=key.decode())
    return line


def _raw(req: Request, key: bytes) -> bytes:
    """The raw value of the first ``key`` line (the only one once the accessor validated it).

    Not strict, a repeated From, To, Call-ID or CSeq (RFC 4475 §3.3 "multi01",
    multiple values in single-value required fields: a 400 is expected)
    is answered with the first of each copied: §8.2.6.2 "MUST equal" cannot
    hold for several values, and one value each keeps the 400 well-formed, so
    the client can match it by its top Via branch and CSeq method (§17.1.3),
    which it reads from the same first lines it sent.
    """
    value = req.headers.single(key)[1]
    if value is None:
        raise ParseError(f"missing {key.decode()} header", header=key.decode())
    return value


def _lenient_tag(key: bytes, raw: bytes) -> bytes | None:
    """The tag of a From/To value; by the quick path when it can, else by the full parse."""
    ok, tag = _quick_tag(raw)
    if ok:
        return tag
    try:
        return parse_address(raw).tag
    except ParseError as exc:
        raise ParseError(
            f"bad {key.decode().title()} header: {exc.reason}", header=key.decode()
        ) from exc


def _lenient_top_via(req: Request) -> Via:
    """The top via-parm alone: a broken later one does not stop the answer.

    §18.2.2 sends a response by the top Via only ("the response MUST be sent
    using the existing connection"; over UDP to "received" and the sent-by
    port), so it alone must be usable. RFC 4475 §3.1.2.1 "badinv01" ends its
    Via with ";;,;,,": the top value reads as ``SIP/2.0/UDP 192.0.2.15``.
    """
    lines = req.headers.get_lines(b"via")
    if not lines:
        raise ParseError("missing Via header", header="via")
    parts = split_comma(lines[0]) if b"," in lines[0] else [lines[0]]
    if not parts:
        raise ParseError("bad Via header: empty", header="via")
    return parse_via(parts[0])


def _derived_tag(req: Request, strict: bool = True) -> bytes:
    # The same request (same Call-ID, From tag, CSeq and top branch) yields the
    # same tag, which is what a stateless retransmission needs.
    if strict:
        top = req.via[0].branch if req.via else None
        from_tag = req.from_tag  # From is validated (make_response); to_tag likewise
        seq = b"%d" % req.cseq.seq
    else:
        # What the request carries raw (make_response checked the top Via).
        top = _lenient_top_via(req).branch
        from_tag = _lenient_tag(b"from", _raw(req, b"from"))
        seq = _raw(req, b"cseq")  # its number may be out of range (RFC 4475 §3.1.2.4)
    seed = b"|".join((_raw(req, b"call-id"), from_tag or b"", seq, top or b"", req.method))
    return hashlib.blake2s(seed, digest_size=8).hexdigest().encode()


def _top_via(req: Request) -> bytes:
    values = req.headers.get_all(b"via")
    if not values:
        raise ParseError("missing Via header", header="via")
    return values[0]


def make_ack_for_non2xx(invite: Request, response: Response) -> Request:
    """Build the ACK a client transaction sends for a 300-699 response (§17.1.1.3).

    "The ACK request constructed by the client transaction MUST contain values
    for the Call-ID, From, and Request-URI that are equal to the values of those
    header fields in the request ... The To header field in the ACK MUST equal
    the To header field in the response being acknowledged ... The ACK MUST
    contain a single Via header field, and this MUST be equal to the top Via
    header field of the original request. The CSeq header field in the ACK MUST
    contain the same value for the sequence number as was present in the
    original request, but the method parameter MUST be equal to "ACK". If the
    INVITE request whose response is being acknowledged had Route header
    fields, those header fields MUST appear in the ACK."

    Raises:
        LocalProtocolError: ``invite`` is not an INVITE, or ``response`` is not 300-699.
        ParseError: a header the ACK copies is missing or malformed.
    """
    if invite.method != b"INVITE":
        raise LocalProtocolError("only an INVITE is acknowledged")
    if response.status < 300:
        raise LocalProtocolError("the ACK for a 2xx belongs to the dialog, not the transaction")
    _ = response.to
    return _in_transaction(invite, b"ACK", response.headers.get(b"to") or b"")


def make_cancel(invite: Request) -> Request:
    """Build the CANCEL for a pending request (§9.1).

    "The Request-URI, Call-ID, To, the numeric part of CSeq, and From header
    fields in the CANCEL request MUST be identical to those in the request
    being cancelled, including tags. A CANCEL constructed by a client MUST have
    only a single Via header field value matching the top Via value in the
    request being cancelled. ... If the request being cancelled contains a
    Route header field, the CANCEL request MUST include that Route header
    field's values."

    Raises:
        LocalProtocolError: ``invite`` is an ACK or a CANCEL (§9.1: "it makes no
            sense to cancel an ACK" ... nor a CANCEL).
        ParseError: a header the CANCEL copies is missing or malformed.
    """
    if invite.method in (b"ACK", b"CANCEL"):
        raise LocalProtocolError(f"a {invite.method.decode()} cannot be cancelled")
    _ = invite.to
    return _in_transaction(invite, b"CANCEL", _raw(invite, b"to"))


def _in_transaction(req: Request, method: bytes, to: bytes) -> Request:
    _ = req.from_
    pairs = [
        (b"Via", _top_via(req)),
        *((b"Route", v) for v in req.headers.get_lines(b"route")),
        (b"Max-Forwards", _DEFAULT_MAX_FORWARDS),
        (b"From", _raw(req, b"from")),
        (b"To", to),
        (b"Call-ID", req.call_id),
        (b"CSeq", b"%d %s" % (req.cseq.seq, method)),
        (b"Content-Length", b"0"),
    ]
    return Request(method=method, uri=req.uri, headers=Headers.from_pairs(pairs))


def unsupported_options(req: Request, supported: Iterable[bytes]) -> tuple[bytes, ...]:
    """The option-tags of Require that are not in ``supported``, in order.

    §8.2.2.3: "If a UAS does not understand an option-tag listed in a Require
    header field, it MUST respond by generating a response with status code 420
    (Bad Extension). The UAS MUST add an Unsupported header field, and list in
    it those options it does not understand". An empty result means go on.

    Raises:
        ParseError: the Require header is malformed.
    """
    known = frozenset(supported)
    return tuple(tag for tag in req.require if tag not in known)


def validate_request(req: Request, *, schemes: Iterable[bytes] = (b"sip", b"sips", b"tel")) -> None:
    """Check what a server must see before it acts on a request (RFC 3261 §8.2, §16.3).

    Parses the Request-URI, Via, Call-ID, CSeq, From, To, Max-Forwards, Contact
    and Content-Type, and checks that each single-valued header appears once.

    Args:
        req: the request.
        schemes: the lower-case Request-URI schemes this server handles.

    Raises:
        ParseError: 416 for a Request-URI scheme not in ``schemes`` (§8.2.2.1:
            "it SHOULD reject the request with a 416 (Unsupported URI Scheme)"),
            400 naming the header for anything else (a missing To, From, Call-ID,
            CSeq or Via; a CSeq method that differs from the request's method).
    """
    scheme = req.uri.partition(b":")[0].lower()
    if scheme not in schemes:
        raise ParseError("unsupported URI scheme", status_hint=416)
    uri = req.request_uri
    if isinstance(uri, SipUri) and uri.headers:
        # §19.1.1 Table 1: headers are "not allowed" in a Request-URI (RFC 4475 §3.1.2.13).
        raise ParseError("bad Request-URI: it carries headers")
    if not req.via:
        raise ParseError("missing Via header", header="via")
    _ = req.call_id, req.from_, req.to, req.max_forwards, req.contact, req.content_type
    # §8.1.1.5: "The method MUST match that of the request."
    if req.cseq.method != req.method:
        raise ParseError("bad CSeq header: method does not match the request", header="cseq")


def validate_response(resp: Response) -> None:
    """Check the headers a client needs to match a response (§8.1.3, §17.1.3).

    Raises:
        ParseError: 400 naming a missing, repeated or malformed Via, Call-ID,
            CSeq, From or To.
    """
    if not resp.via:
        raise ParseError("missing Via header", header="via")
    _ = resp.call_id, resp.cseq, resp.from_, resp.to
