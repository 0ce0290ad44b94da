"""sipmsg: a sans-I/O SIP library.

Bytes in, bytes out: no sockets, no asyncio, no clock, no global mutable state.
Anything that depends on time takes ``now: float``.
"""

from __future__ import annotations

from ._config import ParserConfig
from ._errors import LocalProtocolError, ParseError, SipError
from .builders import (
    REASON_PHRASES,
    make_ack_for_non2xx,
    make_cancel,
    make_response,
    unsupported_options,
    validate_request,
    validate_response,
)
from .headers import (
    COMPACT_FORMS,
    CSeq,
    Headers,
    MediaType,
    canonical_name,
    parse_cseq,
    parse_media_type,
    parse_token_list,
)
from .message import Request, Response, parse

__all__ = [
    "COMPACT_FORMS",
    "REASON_PHRASES",
    "CSeq",
    "Headers",
    "LocalProtocolError",
    "MediaType",
    "ParseError",
    "ParserConfig",
    "Request",
    "Response",
    "SipError",
    "canonical_name",
    "make_ack_for_non2xx",
    "make_cancel",
    "make_response",
    "parse",
    "parse_cseq",
    "parse_media_type",
    "parse_token_list",
    "unsupported_options",
    "validate_request",
    "validate_response",
]
