"""The router's client of the media service: ``sip.media.offer|answer|delete`` over NATS.

Every outcome is a :class:`~sipmesh_bus.schema.MediaReply`, so the caller
has one thing to branch on: a media service that is not running (no
responders), slow (``router.media_timeout``) or sending garbage becomes
``ok=False`` with ``code`` ``unavailable``, ``timeout`` or ``bad_reply``, and
the call goes on unanchored (see :func:`sipmesh_router.media.apply_media`).
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

import msgspec
import nats.errors

from sipmesh_bus import subjects
from sipmesh_bus.schema import (
    MediaAnswer,
    MediaDelete,
    MediaOffer,
    MediaReply,
    decode_media_reply,
    encode,
)

__all__ = ["MediaBus", "Requester"]

log = logging.getLogger(__name__)

_SUBJECTS: Final = {
    MediaOffer: subjects.SIP_MEDIA_OFFER,
    MediaAnswer: subjects.SIP_MEDIA_ANSWER,
    MediaDelete: subjects.SIP_MEDIA_DELETE,
}


class _Msg(Protocol):
    data: bytes


class Requester(Protocol):
    """What :class:`MediaBus` needs of a NATS client (``nats.aio.client.Client``)."""

    async def request(self, subject: str, payload: bytes = b"", timeout: float = 0.5) -> _Msg:
        """Send ``payload`` to ``subject`` and return the first reply."""
        ...


class MediaBus:
    """Ask the media service (queue group ``media``) and always get a MediaReply back."""

    def __init__(self, nc: Requester, *, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout

    async def ask(self, req: MediaOffer | MediaAnswer | MediaDelete) -> MediaReply:
        """Send ``req`` to its subject and wait up to the timeout for the reply."""
        subject = _SUBJECTS[type(req)]
        try:
            msg = await self._nc.request(subject, encode(req), timeout=self._timeout)
        except nats.errors.NoRespondersError:
            return MediaReply(ok=False, code="unavailable", error="no media service is running")
        except (nats.errors.TimeoutError, TimeoutError):
            return MediaReply(ok=False, code="timeout", error="the media service did not answer")
        except nats.errors.Error as exc:
            return MediaReply(ok=False, code="unavailable", error=f"{type(exc).__name__}: {exc}")
        try:
            return decode_media_reply(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("router: unreadable media reply on %s: %s", subject, exc)
            return MediaReply(ok=False, code="bad_reply", error=str(exc))
