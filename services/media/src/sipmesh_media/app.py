"""The media service's NATS shell: ``sip.media.offer|answer|delete`` in, MediaReply out.

Per request: pick the instance (:class:`~sipmesh_media.pool.Pool`: the offer's
instance when the router passed it back, else one remembered here, else the
Call-ID's place on the hash ring), send one ng command, and map the outcome to a
:class:`~sipmesh_bus.schema.MediaReply`. Failures are replies, never silence:
``code`` says which (``instance_down``, ``timeout``, ``no_instance``,
``rtpengine_error``, ``bad_request``) and ``instance`` names the instance, so
the router can go on unanchored and put the failure in the call's events.

A ping loop keeps the pool's health and, after each good ping, asks the
instance for its ``statistics`` (the sessions it runs, a gauge); ``/readyz``
needs one healthy instance (or none configured: then the service answers
``no_instance`` on purpose).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

import msgspec
from prometheus_client import CollectorRegistry

from sipmesh_bus.runtime import Service
from sipmesh_bus.schema import (
    MediaAnswer,
    MediaDelete,
    MediaOffer,
    MediaReply,
    decode_media_answer,
    decode_media_delete,
    decode_media_offer,
)
from sipmesh_bus.subjects import QUEUE_MEDIA, SIP_MEDIA_ANSWER, SIP_MEDIA_DELETE, SIP_MEDIA_OFFER

from . import ng
from .client import NgClient
from .config import MediaSettings
from .errors import NgError, NgReplyError, NgTimeoutError
from .metrics import OK, UNKNOWN, MediaMetrics
from .pool import Instance, Placement, Pool

__all__ = ["MediaService", "serve"]

log = logging.getLogger(__name__)

_REMEMBERED: Final = 100_000
#: Calls whose instance this replica remembers (least recently used dropped).


class MediaService:
    """One media replica: the pool, an ng client per instance, metrics."""

    def __init__(
        self,
        settings: MediaSettings,
        *,
        instances: Sequence[Instance] | None = None,
        registry: CollectorRegistry,
    ) -> None:
        """Set up; :meth:`start` opens the sockets.

        Args:
            settings: section ``media``.
            instances: the pool (default: ``settings.pool_instances()``).
            registry: where the metrics go.

        Raises:
            ValueError: bad instances or default flags.
        """
        self.settings = settings
        self.defaults = ng.apply_flags(ng.MediaOptions(), settings.default_flags)
        members = list(settings.pool_instances() if instances is None else instances)
        self.pool = Pool(members, policy=settings.health_policy())
        self.metrics = MediaMetrics(registry)
        self.metrics.add_instances(self.pool.instances)
        for name in self.pool.instances:
            self.metrics.instance_up.labels(name).set(1 if self.pool.is_up(name) else 0)
        self._clients: dict[str, NgClient] = {}
        self._calls: OrderedDict[str, str] = OrderedDict()
        self._pinger: asyncio.Task[None] | None = None

    # -- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open one ng socket per instance and start the ping loop."""
        for inst in self.pool.instances.values():
            self._clients[inst.name] = await NgClient.open(
                inst.host,
                inst.port,
                timeout=self.settings.timeout,
                tries=self.settings.tries,
                on_round_trip=self._round_trip(inst.name),
            )
        self._pinger = asyncio.create_task(self._ping_forever())

    async def close(self) -> None:
        """Stop pinging and close the sockets."""
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    async def ready(self) -> bool:
        """True with a healthy instance, or with none configured (anchoring off)."""
        return not self.pool.instances or bool(self.pool.healthy())

    # -- handlers ---------------------------------------------------------------

    async def handle_offer(self, req: MediaOffer) -> MediaReply:
        """Anchor an offer (initial INVITE, re-INVITE or UPDATE)."""
        try:
            options = ng.apply_flags(self.defaults, req.flags)
        except ValueError as exc:
            return self._failed("offer", "bad_request", str(exc))
        known = req.instance or self._calls.get(req.call_id)
        body = ng.offer(
            call_id=req.call_id,
            from_tag=req.from_tag,
            to_tag=req.to_tag,
            sdp=req.sdp,
            options=options,
            received_from=req.received_from,
        )
        if known is not None or req.to_tag is not None:
            return await self._send("offer", self.pool.locate(req.call_id, known), body, req)
        placement = self.pool.place_new(req.call_id)
        reply = await self._send("offer", placement, body, req)
        if reply.code == "timeout" and self.settings.offer_failover:
            # A new call has no session anywhere yet: the next healthy instance
            # clockwise (the dead one counted a failure just now) may take it.
            retry = self._next_healthy(req.call_id, skip=reply.instance)
            if retry.instance is not None:
                reply = await self._send("offer", retry, body, req)
        return reply

    async def handle_answer(self, req: MediaAnswer) -> MediaReply:
        """Anchor an answer (183 or 200 with SDP)."""
        try:
            options = ng.apply_flags(self.defaults, req.flags)
        except ValueError as exc:
            return self._failed("answer", "bad_request", str(exc))
        body = ng.answer(
            call_id=req.call_id,
            from_tag=req.from_tag,
            to_tag=req.to_tag,
            sdp=req.sdp,
            options=options,
            received_from=req.received_from,
        )
        known = req.instance or self._calls.get(req.call_id)
        return await self._send("answer", self.pool.locate(req.call_id, known), body, req)

    async def handle_delete(self, req: MediaDelete) -> MediaReply:
        """Release a call's media (BYE, CANCEL, failure, dialog timeout)."""
        body = ng.delete(
            call_id=req.call_id,
            from_tag=req.from_tag,
            to_tag=req.to_tag,
            delete_delay=self.settings.delete_delay,
        )
        known = req.instance or self._calls.get(req.call_id)
        reply = await self._send("delete", self.pool.locate(req.call_id, known), body, req)
        if reply.ok and req.to_tag is None:
            self._calls.pop(req.call_id, None)
        return reply

    def on_error(self, exc: Exception, _raw: bytes) -> MediaReply:
        """A request that does not decode, or an unexpected failure: an error reply."""
        if isinstance(exc, msgspec.DecodeError | msgspec.ValidationError):
            return self._failed(UNKNOWN, "bad_request", f"bad request: {exc}")
        log.error("media: request failed: %r", exc, exc_info=exc)
        return self._failed(UNKNOWN, "internal", f"{type(exc).__name__}: {exc}")

    # -- helpers ----------------------------------------------------------------

    async def _send(
        self,
        command: str,
        placement: Placement,
        body: ng.Body,
        req: MediaOffer | MediaAnswer | MediaDelete,
    ) -> MediaReply:
        inst = placement.instance
        if inst is None:
            why = "no rtpengine instance is healthy" if self.pool.instances else "no anchoring"
            return self._failed(command, "no_instance", why)
        if not placement.up:
            return self._failed(command, "instance_down", f"{inst.name} is down", inst.name)
        try:
            response = await self._clients[inst.name].request(body)
        except NgTimeoutError as exc:
            if self.pool.record(inst.name, False):
                self._changed(inst.name)
            return self._failed(command, "timeout", str(exc), inst.name)
        except NgReplyError as exc:
            return self._failed(command, "rtpengine_error", exc.reason, inst.name)
        except NgError as exc:
            return self._failed(command, "rtpengine_error", str(exc), inst.name)
        self.metrics.commands.labels(command, OK).inc()
        if command != "delete":
            self._remember(req.call_id, inst.name)
        return MediaReply(ok=True, sdp=response.sdp, instance=inst.name, warning=response.warning)

    def _failed(
        self, command: str, code: str, error: str, instance: str | None = None
    ) -> MediaReply:
        self.metrics.commands.labels(command, code).inc()
        return MediaReply(ok=False, code=code, error=error, instance=instance)

    def _next_healthy(self, call_id: str, *, skip: str | None) -> Placement:
        for name in self.pool.ring.walk(call_id.encode()):
            if name != skip and self.pool.is_up(name):
                return Placement(instance=self.pool.instances[name])
        return Placement(instance=None, up=False)

    def _remember(self, call_id: str, name: str) -> None:
        self._calls[call_id] = name
        self._calls.move_to_end(call_id)
        while len(self._calls) > _REMEMBERED:
            self._calls.popitem(last=False)

    def _round_trip(self, name: str) -> Callable[[str, float], None]:
        histogram = self.metrics.round_trip

        def observe(command: str, seconds: float) -> None:
            histogram.labels(name, command).observe(seconds)

        return observe

    def _changed(self, name: str) -> None:
        up = self.pool.is_up(name)
        self.metrics.instance_up.labels(name).set(1 if up else 0)
        inst = self.pool.instances[name]
        if up:
            log.warning("media: rtpengine %s (%s:%d) is up again", name, inst.host, inst.port)
        else:
            log.warning(
                "media: rtpengine %s (%s:%d) is down: new calls avoid it",
                name,
                inst.host,
                inst.port,
            )

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.gather(*(self._ping(name) for name in self._clients))
            await asyncio.sleep(self.settings.ping_interval)

    async def _ping(self, name: str) -> None:
        try:
            # One try per round: the rounds are the retries, counted by Health.
            await self._clients[name].request(ng.ping(), tries=1)
            ok = True
        except NgError:
            ok = False
        if self.pool.record(name, ok):
            self._changed(name)
        if ok:
            await self._read_sessions(name)

    async def _read_sessions(self, name: str) -> None:
        try:
            response = await self._clients[name].request(ng.statistics(), tries=1)
        except NgError as exc:
            # Silence is the pings' business; an error reply means an RTPEngine
            # without ng ``statistics`` (before 10): the gauge keeps its value.
            log.debug("media: no statistics from rtpengine %s: %s", name, exc)
            return
        sessions = ng.active_sessions(response)
        if sessions is not None:
            self.metrics.sessions_active.labels(name).set(sessions)


async def serve(svc: Service, media: MediaService) -> None:
    """Answer the three media subjects on ``svc`` (queue group ``media``) with ``media``.

    Also makes ``/readyz`` depend on :meth:`MediaService.ready`.
    """
    svc.add_readiness_check("rtpengine instance healthy", media.ready)
    await svc.serve(
        SIP_MEDIA_OFFER,
        media.handle_offer,
        queue=QUEUE_MEDIA,
        decode=decode_media_offer,
        on_error=media.on_error,
    )
    await svc.serve(
        SIP_MEDIA_ANSWER,
        media.handle_answer,
        queue=QUEUE_MEDIA,
        decode=decode_media_answer,
        on_error=media.on_error,
    )
    await svc.serve(
        SIP_MEDIA_DELETE,
        media.handle_delete,
        queue=QUEUE_MEDIA,
        decode=decode_media_delete,
        on_error=media.on_error,
    )
