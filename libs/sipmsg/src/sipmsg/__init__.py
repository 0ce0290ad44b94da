"""sipmsg: a sans-I/O SIP library.

Bytes in, bytes out: no sockets, no asyncio, no clock, no global mutable state.
Anything that depends on time takes ``now: float``.
"""

from __future__ import annotations

from ._errors import LocalProtocolError, ParseError, SipError

__all__ = ["LocalProtocolError", "ParseError", "SipError"]
