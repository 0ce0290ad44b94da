"""Errors of the media service's ng client.

::

    NgError
    ├── NgProtocolError   the bytes are not a valid ng message (bad bencode, no cookie ...)
    ├── NgTimeoutError    no answer after every retry: the instance is unreachable
    └── NgReplyError      the instance answered ``result: error`` (with its reason)
"""

from __future__ import annotations

__all__ = ["NgError", "NgProtocolError", "NgReplyError", "NgTimeoutError"]


class NgError(Exception):
    """Root of the ng protocol errors."""


class NgProtocolError(NgError):
    """Malformed ng data (bencode, framing or a reply without ``result``)."""


class NgTimeoutError(NgError):
    """An RTPEngine instance did not answer within the retries."""

    def __init__(self, address: str, *, tries: int, timeout: float) -> None:
        super().__init__(f"no answer from rtpengine at {address} after {tries} x {timeout:g} s")
        self.address = address
        #: ``host:port`` of the ng socket.


class NgReplyError(NgError):
    """The instance answered ``result: error``."""

    def __init__(self, reason: str, *, command: str) -> None:
        super().__init__(f"rtpengine {command} failed: {reason}")
        self.reason = reason
        #: RTPEngine's ``error-reason``.
        self.command = command
