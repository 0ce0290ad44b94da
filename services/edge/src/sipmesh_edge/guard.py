"""The edge's protection shell: the ``bans`` bucket, publishing bans, metrics.

:class:`~sipmesh_edge.protection.Protection` decides; :class:`Guard` wires it
to the world::

    guard = Guard(config, registry, edge_id="e1")
    if not guard.check(source_ip, data):       # before anything else, no await
        return                                 # dropped silently
    ...
    guard.on_response(request, response, source_ip)   # a 401/407 sent back
    await guard.start(js)                      # the ban cache follows the bucket
    guard.tick()                               # every second or so
    await guard.close()

A ban decided here is in the local cache at once and is written to the
``bans`` bucket in the background (never awaited on the message path); every
edge watches the bucket, so it holds in all of them within the watch latency.
While NATS is unreachable, local decisions still apply locally and are
published once it is back (the newest per target).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from prometheus_client import CollectorRegistry, Counter, Gauge

from sipmesh_bus import bans
from sipmesh_bus.kv import BUCKET_BANS
from sipmesh_edge.protection import NewBan, Protection, ProtectionConfig, Reason, is_auth_failure
from sipmsg import Request, Response

__all__ = ["BAN_REASONS", "DROP_REASONS", "Guard", "GuardMetrics"]

log = logging.getLogger(__name__)

_RETRY: Final = 1.0
_MAX_UNPUBLISHED: Final = 10_000

DROP_REASONS: Final = (Reason.DENY_LIST, Reason.BANNED, Reason.RATE, Reason.SCANNER)
#: What :meth:`Protection.check` drops a message for; these series exist at 0.
BAN_REASONS: Final = (Reason.RATE, Reason.SCANNER, Reason.AUTH_FAILURES)
#: What an edge bans a source for (``manual`` bans come from the operator, not
#: an edge); these series exist at 0.


class GuardMetrics:
    """Protection metrics (names start with ``sipmesh_edge_``); never an address or a secret.

    The known ``reason`` series (:data:`DROP_REASONS`, :data:`BAN_REASONS`)
    exist at 0 from start-up, so panels and ``rate()`` see the first event.

    Args:
        registry: where to register.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.dropped = Counter(
            "sipmesh_edge_protection_dropped",
            "Messages dropped silently by the protection, by reason",
            ["reason"],
            registry=registry,
        )
        self.bans_issued = Counter(
            "sipmesh_edge_bans_issued",
            "Bans this edge decided, by reason (rate, scanner, auth_failures)",
            ["reason"],
            registry=registry,
        )
        self.bans_active = Gauge(
            "sipmesh_edge_bans_active",
            "Bans in this edge's cache (its own and those of the bans bucket)",
            registry=registry,
        )
        self.ban_publish_errors = Counter(
            "sipmesh_edge_ban_publish_errors",
            "Failed writes of a ban to the bans bucket (retried)",
            registry=registry,
        )
        for reason in DROP_REASONS:
            self.dropped.labels(reason.value)
        for reason in BAN_REASONS:
            self.bans_issued.labels(reason.value)


class Guard:
    """Protection for one edge (see the module docstring).

    Args:
        config: the protection settings.
        registry: Prometheus registry for :class:`GuardMetrics`.
        edge_id: written into the bans this edge decides.
        wallclock: epoch seconds (bans are shared between hosts).
    """

    def __init__(
        self,
        config: ProtectionConfig,
        registry: CollectorRegistry,
        *,
        edge_id: str,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.protection = Protection(config)
        self.metrics = GuardMetrics(registry)
        self.edge_id = edge_id
        self._wallclock = wallclock
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None
        self._unpublished: dict[str, NewBan] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._synced = asyncio.Event()

    # -- the message path (no await) --------------------------------------------

    def check(self, source: str, data: bytes) -> bool:
        """True to handle the message; False to drop it silently (counted by reason).

        Args:
            source: the source IP address.
            data: the message octets, unparsed.
        """
        reason = self.protection.check(source, data, self._wallclock())
        if self.protection.has_bans_to_publish:
            self._collect()
        if reason is None:
            return True
        self.metrics.dropped.labels(reason.value).inc()
        return False

    def on_response(self, request: Request, response: Response, source: str) -> None:
        """Count a failed authentication when ``response`` rejects ``request``'s credentials."""
        if is_auth_failure(request, response):
            self.protection.auth_failed(source, self._wallclock())
            self._collect()

    def tick(self) -> None:
        """Forget expired bans and idle sources (call about every second)."""
        self.protection.expire(self._wallclock())
        self.metrics.bans_active.set(len(self.protection.bans))

    # -- NATS ------------------------------------------------------------------

    async def start(self, js: JetStreamContext, *, sync_timeout: float = 2.0) -> None:
        """Load the bans bucket into the cache and follow it; start publishing.

        Waits at most ``sync_timeout`` for the initial load; the watch goes on
        (and retries after errors) in the background either way.
        """
        self._js = js
        self._tasks = [
            asyncio.create_task(self._follow(), name="guard-bans-watch"),
            asyncio.create_task(self._publish_forever(), name="guard-bans-publish"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), sync_timeout)

    async def close(self) -> None:
        """Stop watching and publishing."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- internals -------------------------------------------------------------

    def _collect(self) -> None:
        for ban in self.protection.bans_to_publish():
            self.metrics.bans_issued.labels(ban.reason.value).inc()
            log.warning(
                "edge %s: banned %s for %.0f s (%s)",
                self.edge_id,
                ban.target,
                ban.expires_at - ban.created_at,
                ban.reason.value,
            )
            if len(self._unpublished) < _MAX_UNPUBLISHED:
                self._unpublished[ban.target] = ban
            self._wake.set()

    async def _publish_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._unpublished:
                target, ban = next(iter(self._unpublished.items()))
                record = bans.Ban(
                    target=target,
                    reason=ban.reason.value,
                    created_at=ban.created_at,
                    expires_at=ban.expires_at,
                    source=self.edge_id,
                )
                try:
                    now = self._wallclock()
                    if ban.expires_at > now:
                        await bans.put_ban(await self._bucket(), record, now=now)
                except (nats.errors.Error, OSError, TimeoutError) as exc:
                    self.metrics.ban_publish_errors.inc()
                    log.warning("edge %s: cannot share a ban (%s); retrying", self.edge_id, exc)
                    await asyncio.sleep(_RETRY)
                    continue
                if self._unpublished.get(target) is ban:
                    del self._unpublished[target]

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            assert self._js is not None
            self._kv = await self._js.key_value(BUCKET_BANS)
        return self._kv

    async def _follow(self) -> None:
        last = ""
        while True:
            try:
                await self._watch(await self._bucket())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS down, bucket missing: keep the cache, retry
                if repr(exc) != last:
                    last = repr(exc)
                    log.warning("edge %s: bans watch failed (%s); retrying", self.edge_id, last)
                self._kv = None
                self._synced.set()  # nothing to wait for at start
            await asyncio.sleep(_RETRY)

    async def _watch(self, bucket: KeyValue) -> None:
        watcher = await bucket.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    self._synced.set()
                    continue
                self._apply(entry.key, entry.value, entry.operation)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    def _apply(self, key: str, value: bytes | None, operation: str | None) -> None:
        try:
            target = bans.parse_ban_key(key)
        except ValueError:
            return  # not a ban key: someone else's data
        if operation in (KV_DEL, KV_PURGE):
            self.protection.unban(target)
            self._unpublished.pop(target, None)
            return
        try:
            ban = bans.decode_ban(value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        self.protection.ban(target, expires_at=ban.expires_at)
        self.metrics.bans_active.set(len(self.protection.bans))
