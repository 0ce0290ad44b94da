"""The errors sipmsg raises. One root, after h11 and httpx::

    SipError
     ├── ParseError          the bytes on the wire are not valid SIP; carries the
     │                       status a server should answer with (status_hint)
     └── LocalProtocolError  the caller misused the API (a final response sent
                             from Terminated, a CANCEL built from a response ...)

Bad wire input is never signalled with ``ValueError`` or ``assert``: a server
catches ``ParseError`` alone and answers ``status_hint`` without parsing twice.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ParseError", "SipError"]


class SipError(Exception):
    """Root of every error sipmsg raises on purpose."""


class ParseError(SipError):
    """The input is not valid SIP (or not SIP we accept).

    Attributes:
        reason: a short human-readable reason, naming the bad header where there
            is one; fit for a response's reason phrase.
        status_hint: the status code a server should answer with: 400 by default,
            413 (entity too large), 416 (unsupported URI scheme), 420 (bad
            extension), 505 (version not supported), 513 (message too large).
        header: the canonical lower-case name of the offending header, if any.
    """

    def __init__(self, reason: str, *, status_hint: int = 400, header: str | None = None) -> None:
        super().__init__(reason)
        self.reason: str = reason
        self.status_hint: int = status_hint
        self.header: str | None = header

    def __repr__(self) -> str:
        return f"ParseError({self.reason!r}, status_hint={self.status_hint})"


class LocalProtocolError(SipError):
    """The caller used the API in a way the protocol forbids."""
