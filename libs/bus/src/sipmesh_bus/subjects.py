"""Every NATS subject and queue group sipmesh uses, and nothing else.

No other module spells out a subject: services import the constants and builders
below, so a rename is one edit and a grep finds every publisher and subscriber.

Subject tree::

    sip.register              edge -> registrar (request/reply, queue group "registrar")
    sip.route                 edge -> router (request/reply, queue group "router")
    sip.route.response        edge -> router: responses to proxied requests, with context
    sip.edge.<edge-id>.send   anyone -> the edge that owns a connection or transaction
    sip.media.offer|answer|delete   router -> media (request/reply, queue group "media")
    call.events.<kind>        router -> JetStream stream CALLS (attempt, ringing, ...)
    cdr.dead.<kind>           cdr -> dead letters: call events it could not turn into rows
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "CALL_EVENTS",
    "CALL_EVENTS_PREFIX",
    "CDR_DEAD_LETTER",
    "CDR_DEAD_LETTER_PREFIX",
    "EDGE_SEND_WILDCARD",
    "QUEUE_CDR",
    "QUEUE_EDGE",
    "QUEUE_MEDIA",
    "QUEUE_REGISTRAR",
    "QUEUE_ROUTER",
    "SIP_MEDIA_ANSWER",
    "SIP_MEDIA_DELETE",
    "SIP_MEDIA_OFFER",
    "SIP_REGISTER",
    "SIP_ROUTE",
    "SIP_ROUTE_RESPONSE",
    "call_event",
    "cdr_dead_letter",
    "edge_send",
    "is_valid_token",
]

SIP_REGISTER: Final = "sip.register"
#: REGISTER requests from an edge, answered by one registrar replica.
SIP_ROUTE: Final = "sip.route"
#: Every request but REGISTER, answered by one router replica.
SIP_ROUTE_RESPONSE: Final = "sip.route.response"
#: Responses to a proxied request, with the router's opaque context echoed back.

EDGE_SEND_WILDCARD: Final = "sip.edge.*.send"
#: Matches every edge's send subject (monitoring, tests).

SIP_MEDIA_OFFER: Final = "sip.media.offer"
SIP_MEDIA_ANSWER: Final = "sip.media.answer"
SIP_MEDIA_DELETE: Final = "sip.media.delete"

CALL_EVENTS_PREFIX: Final = "call.events"
CALL_EVENTS: Final = "call.events.>"
#: Everything the CALLS stream stores.

CDR_DEAD_LETTER_PREFIX: Final = "cdr.dead"
CDR_DEAD_LETTER: Final = "cdr.dead.>"
#: Call events the CDR service gave up on (poison messages), kept for inspection.

QUEUE_REGISTRAR: Final = "registrar"
QUEUE_ROUTER: Final = "router"
QUEUE_MEDIA: Final = "media"
QUEUE_CDR: Final = "cdr"
#: Also the durable consumer name of the CDR service on the CALLS stream.
QUEUE_EDGE: Final = "edge"
#: Not used for sip.edge.<id>.send (that subject has exactly one owner).

# A subject token: no whitespace, no dots, no wildcards. NATS would otherwise
# silently turn "a.b" into two tokens and deliver to the wrong edge.
_TOKEN = re.compile(r"[A-Za-z0-9_\-]+")


def is_valid_token(token: str) -> bool:
    """Tell whether ``token`` can be one token of a subject.

    Args:
        token: the candidate, e.g. an edge id.

    Returns:
        True when it is non-empty and holds only letters, digits, ``_`` and ``-``.
    """
    return _TOKEN.fullmatch(token) is not None


def _checked(token: str, what: str) -> str:
    if not is_valid_token(token):
        raise ValueError(f"invalid {what} for a NATS subject: {token!r}")
    return token


def edge_send(edge_id: str) -> str:
    """The subject the edge ``edge_id`` listens on for bytes to send.

    Args:
        edge_id: the owning edge's id (letters, digits, ``_``, ``-``).

    Returns:
        ``"sip.edge.<edge_id>.send"``.

    Raises:
        ValueError: ``edge_id`` is empty or holds a dot, space or wildcard.
    """
    return f"sip.edge.{_checked(edge_id, 'edge id')}.send"


def call_event(kind: str) -> str:
    """The subject a call event of ``kind`` is published on.

    Args:
        kind: ``attempt``, ``ringing``, ``answered``, ``failed`` or ``ended``.

    Returns:
        ``"call.events.<kind>"``, captured by the CALLS stream.

    Raises:
        ValueError: ``kind`` is not a valid subject token.
    """
    return f"{CALL_EVENTS_PREFIX}.{_checked(kind, 'call event kind')}"


def cdr_dead_letter(kind: str) -> str:
    """The dead-letter subject for a call event of ``kind`` the CDR service rejected.

    Args:
        kind: the event kind, as in :func:`call_event`.

    Returns:
        ``"cdr.dead.<kind>"``, captured by the CDR_DEAD stream.

    Raises:
        ValueError: ``kind`` is not a valid subject token.
    """
    return f"{CDR_DEAD_LETTER_PREFIX}.{_checked(kind, 'call event kind')}"
