"""sipmsg: a sans-I/O SIP library.

Bytes in, bytes out: no sockets, no asyncio, no clock, no global mutable state.
Anything that depends on time takes ``now: float``.

``COMPILED`` tells which build runs: True when the modules are the C
extensions ``make compile`` builds with mypyc (scripts/compile.py), False for
the pure-Python modules (``SIPMESH_PURE=1``, or no compiler).
"""

from __future__ import annotations

from typing import Final

from . import message as _message
from ._config import ParserConfig
from ._errors import LocalProtocolError, ParseError, SipError
from ._peek import Summary, peek
from .address import Address, Star, parse_address, parse_address_list, parse_contact_list
from .builders import (
    REASON_PHRASES,
    make_ack_for_non2xx,
    make_cancel,
    make_response,
    unsupported_options,
    validate_request,
    validate_response,
)
from .digest import Challenge, Credentials, NonceManager, parse_challenge, parse_credentials
from .framing import StreamFramer
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
from .sdp import SessionDescription, parse_sdp
from .uri import AbsoluteUri, SipUri, TelUri, parse_uri
from .via import Via, parse_via_list

#: True when sipmsg runs compiled by mypyc (a ``.so`` beside each ``.py``).
COMPILED: Final[bool] = _message.__file__.endswith((".so", ".pyd"))

__all__ = [
    "COMPACT_FORMS",
    "COMPILED",
    "REASON_PHRASES",
    "AbsoluteUri",
    "Address",
    "CSeq",
    "Challenge",
    "Credentials",
    "Headers",
    "LocalProtocolError",
    "MediaType",
    "NonceManager",
    "ParseError",
    "ParserConfig",
    "Request",
    "Response",
    "SessionDescription",
    "SipError",
    "SipUri",
    "Star",
    "StreamFramer",
    "Summary",
    "TelUri",
    "Via",
    "canonical_name",
    "make_ack_for_non2xx",
    "make_cancel",
    "make_response",
    "parse",
    "parse_address",
    "parse_address_list",
    "parse_challenge",
    "parse_contact_list",
    "parse_credentials",
    "parse_cseq",
    "parse_media_type",
    "parse_sdp",
    "parse_token_list",
    "parse_uri",
    "parse_via_list",
    "peek",
    "unsupported_options",
    "validate_request",
    "validate_response",
]
