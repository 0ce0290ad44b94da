"""Parser limits: a frozen object passed in, never a global (as h2's ``H2Configuration``)."""

from __future__ import annotations

from dataclasses import dataclass

from ._native import python_class

__all__ = ["ParserConfig"]


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class ParserConfig:
    """Limits :func:`sipmsg.parse` enforces before it looks at the content.

    The defaults fit a UDP datagram (RFC 3261 §18.1.1 keeps requests near the
    path MTU, and nothing over IPv4 exceeds 65535 octets).
    """

    max_message_size: int = 65535
    """Largest message accepted, in octets; beyond it ``ParseError`` with status_hint 513."""
    max_headers: int = 256
    """Most header lines accepted; beyond it ``ParseError`` with status_hint 513."""
    max_body_size: int = 65535
    """Largest body (Content-Length) accepted; beyond it ``ParseError`` with status_hint 413."""
