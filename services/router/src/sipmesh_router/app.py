"""The router's NATS shell: ``sip.route`` and ``sip.route.response`` in, the core's reply out.

Per message: parse, look up the AoR bindings :func:`core.location_keys` names
in the watched copy of KV ``location`` (read from NATS only on a miss or when
every cached binding has expired: a REGISTER just stored may not have come
through the watch yet), :func:`core.decide` with the watched caches
(subscribers, routing snapshot, gateway health), and answer. The call events
(JetStream ``Nats-Msg-Id`` = event id, so a retry is stored once) and the
dialog record writes go to the :class:`~.outbox.Outbox`: published in the
background, after the reply (see :mod:`.outbox` for what that trades), their
``NATS/1.0`` header blocks put together from constant parts. The caches are
copies of watched KV data, so any replica answers any message. With the bus
runtime's wire connection the buckets are watched on it
(:class:`~sipmesh_bus.wirewatch.KvWatch`: each entry, the echo of the
router's own dialog put and delete among them, is folded in inside the
connection's reader, no nats-py task per entry); without it, with nats-py's
``watchall``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from typing import Final

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_OP, KeyValue
from prometheus_client import CollectorRegistry

from sipmesh_bus import kv, records, subjects
from sipmesh_bus.calllimits import CallLimits
from sipmesh_bus.records import BindingSet, Subscriber
from sipmesh_bus.routing import HealthSnapshot, RoutingSnapshot
from sipmesh_bus.schema import (
    CallEvent,
    Drop,
    Envelope,
    MediaAnswer,
    MediaDelete,
    MediaOffer,
    MediaReply,
    ReplyType,
    SendResponse,
    decode_envelope,
    encode,
)
from sipmesh_bus.wire import WireClient
from sipmesh_bus.wirewatch import KvWatch, WatchError
from sipmsg import ParseError, Request, Response, make_response, parse
from sipmsg.digest import NonceManager

from . import core, media
from .active import ActiveCalls
from .config import RouterConfig, RouterSettings, make_policy
from .context import encode_dialog
from .mediabus import MediaBus, Requester
from .metrics import EVENT_KINDS, DestinationsUp, RouterMetrics, destination_states
from .model import Decision, Inputs
from .outbox import Outbox, Write
from .prober import KvLease, Prober, ProberConfig, UdpProbeTransport, probe_targets
from .routes import Peer, SnapshotView
from .wiring import PUB_ACK, Fold, WireRequests

__all__ = ["Router"]

log = logging.getLogger(__name__)

_NATS_ERRORS: Final = (nats.errors.Error, nats.js.errors.Error, TimeoutError)
_DELETE_MARKER_TTL: Final = 60
_MSG_ID: Final = "Nats-Msg-Id"
_MSG_TTL: Final = "Nats-TTL"
#: Per-message TTL in seconds (nats-server 2.11+), as ``js.publish(msg_ttl=)`` sends it.
# The header blocks as encode_headers would make them (docs.nats.io, "Client
# Protocol", HPUB: "NATS/1.0" CRLF, then "Name: value" CRLF lines, then CRLF),
# from constant parts: the event id is the only variable part.
_DELETE_BLOCK: Final = b"NATS/1.0\r\n%b: %b\r\n%b: %d\r\n\r\n" % (
    KV_OP.encode(),
    KV_DEL.encode(),
    _MSG_TTL.encode(),
    _DELETE_MARKER_TTL,
)
_MSG_ID_START: Final = b"NATS/1.0\r\n" + _MSG_ID.encode() + b": "
_BLOCK_END: Final = b"\r\n\r\n"
_DIALOG_SUBJECT: Final = f"$KV.{kv.BUCKET_DIALOGS}."
_NONCE_SUBJECT: Final = f"$KV.{kv.BUCKET_NONCES}."
_CLAIM_START: Final = b"NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: 0\r\n%b: " % (
    _MSG_TTL.encode()
)
#: A nonce claim's block up to its TTL: the headers ``KeyValue.create(msg_ttl=)`` sends.
_KEY_RE: Final = re.compile(r"[-/_=.a-zA-Z0-9]+")
#: A key nats-py's KV accepts (and no space to break the HPUB line).
_WRONG_LAST_SEQUENCE: Final = frozenset({10071, 10164})
#: JetStream "wrong last sequence" errors: the nonce key exists.
_FOLDED: Final = (
    (kv.BUCKET_SUBSCRIBERS, "subscribers"),
    (kv.BUCKET_ROUTING, "routing"),
    (kv.BUCKET_HEALTH, "health"),
    (kv.BUCKET_DIALOGS, "dialogs"),
)
#: The buckets folded into a table (bucket, name); ``location`` has its own handler.
_EVENT_SUBJECTS: Final = {k: subjects.call_event(k) for k in EVENT_KINDS}
_PRUNE_EVERY: Final = 60.0
_OUTBOX_LINGER: Final = 0.02
#: Call events and dialog writes leave in one socket write per 20 ms (not one per
#: message): the reply does not wait for them, and the CDR times come from ``at``.
_DRAIN_TIMEOUT: Final = 5.0
_ENTROPY_BYTES: Final = 12
_ENTROPY_POOL: Final = 12 * 1024
#: ``os.urandom`` is a system call: one read serves 1,024 messages.


class Router:
    """One router replica: KV handles, watched caches and metrics."""

    def __init__(
        self,
        config: RouterConfig,
        js: JetStreamContext,
        *,
        secret: bytes,
        registry: CollectorRegistry,
        nc: Requester | None = None,
        wire: WireClient | None = None,
    ) -> None:
        settings = config.router
        self.policy = make_policy(settings, secret)
        self.nonces = NonceManager(secret=secret, ttl=settings.nonce_ttl)
        self.metrics = RouterMetrics(registry)
        self.snapshot = RoutingSnapshot()
        #: The live routing data (replaced whole when a watch restarts).
        self.health = HealthSnapshot()
        self._settings = settings
        self._js = js
        self._replicas = config.nats.jetstream_replicas
        self._subscribers: dict[str, Subscriber] = {}
        self.active = ActiveCalls()
        #: Answered calls per destination (``least_calls``), from KV ``dialogs``.
        self.replica_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.prober: Prober | None = None
        self._probe_transport: UdpProbeTransport | None = None
        self._stop = asyncio.Event()
        names = ("subscribers", "routing", "health", "dialogs", "location")
        self._loaded = {name: asyncio.Event() for name in names}
        self._tasks: list[asyncio.Task[None]] = []
        self._pruned_at = 0.0
        self._location: KeyValue | None = None
        self._locations: dict[str, tuple[BindingSet | None, int]] = {}
        #: AoR key -> (bindings, revision): the watched copy of bucket location.
        self._pending_locations: dict[str, tuple[BindingSet | None, int]] | None = None
        self.outbox = Outbox(js._nc, linger=_OUTBOX_LINGER, wire=wire)
        #: Call events and dialog writes, acked in the background (published on
        #: ``wire``, the bus runtime's lean connection, when given).
        self._wire = wire
        self._request_timeout = config.nats.request_timeout
        self._watches: list[KvWatch] = []
        #: The wire watches started (closed by :meth:`close`).
        self._put_block = b"NATS/1.0\r\n%b: %d\r\n\r\n" % (
            _MSG_TTL.encode(),
            int(settings.dialog_ttl),
        )
        self._event_counters = {
            k: (self.metrics.events.labels(k, "ok"), self.metrics.events.labels(k, "error"))
            for k in EVENT_KINDS
        }
        self._dialog_counters = {
            op: (
                self.metrics.dialog_writes.labels(op, "ok"),
                self.metrics.dialog_writes.labels(op, "error"),
            )
            for op in ("put", "delete")
        }
        self._nonce_kv: KeyValue | None = None
        self._entropy = b""
        self._entropy_at = 0
        self._calls = 0
        self._peers: dict[str, Peer | None] = {}
        #: Source address -> trusted peer of the current snapshot (emptied when it changes).
        self._caps = _has_caps(settings.call_limits)
        self._track_dialogs = _tracks_dialogs(settings, self._caps, self.snapshot)
        #: Whether answered calls get a KV ``dialogs`` record (``router.dialogs``),
        #: decided again when the routing data changes.
        self._requests = None if wire is None else WireRequests(wire, nc)
        #: Nonce claims and media requests on ``wire`` (nats-py while it is down).
        asker: Requester | None = self._requests or nc
        self.media = None if asker is None else MediaBus(asker, timeout=settings.media_timeout)
        #: The media service's client; None: every offer fails (``unavailable``).
        self.metrics.calls_active.set_function(lambda: len(self.active))
        self.metrics.outbox_pending.set_function(lambda: len(self.outbox))
        registry.register(
            DestinationsUp(
                lambda: destination_states(self.snapshot, self.health.records, time.time())
            )
        )

    # -- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the buckets (creating them when missing) and start the watches."""
        try:
            self._location = await self._js.key_value(kv.BUCKET_LOCATION)
        except nats.js.errors.BucketNotFoundError:
            log.warning("router: JetStream buckets missing; creating them (R%d)", self._replicas)
            await kv.ensure_jetstream(self._js, replicas=self._replicas)
            self._location = await self._js.key_value(kv.BUCKET_LOCATION)
        self._nonce_kv = await self._js.key_value(kv.BUCKET_NONCES)
        await self.outbox.start()
        folds = {
            "subscribers": self._fold_subscribers,
            "routing": self._fold_routing,
            "health": self._fold_health,
            "dialogs": self._fold_dialogs,
        }
        wire = self._wire
        for bucket, name in _FOLDED:
            if wire is None:
                self._watch(bucket, name, folds[name])
            else:
                fold = Fold(folds[name], self._loaded[name].set)
                self._watch_on_wire(wire, bucket, fold.entry, fold.loaded)
        if wire is None:
            self._tasks.append(asyncio.create_task(self._watch_locations(), name="location"))
        else:
            self._pending_locations = {}
            self._watch_on_wire(
                wire, kv.BUCKET_LOCATION, self._location_entry, self._locations_loaded
            )
        if self._settings.probe:
            await self._start_prober(self._settings)

    async def _start_prober(self, settings: RouterSettings) -> None:
        """Probe the routing snapshot's ``probe`` addresses while holding the lease."""
        transport = UdpProbeTransport(local_host=settings.probe_bind)
        await transport.start()
        self._probe_transport = transport
        health_kv = await self._js.key_value(kv.BUCKET_HEALTH)
        config = ProberConfig(
            interval=settings.probe_interval,
            timeout=settings.probe_timeout,
            down_after=settings.probe_down_after,
            up_after=settings.probe_up_after,
            lease_ttl=settings.probe_lease_ttl,
        )
        lease = KvLease(health_kv, self.replica_id, ttl=settings.probe_lease_ttl)
        self.prober = Prober(
            transport,
            health_kv,
            lambda: probe_targets(self.snapshot),
            config=config,
            prober_id=self.replica_id,
            lease=lease,
        )
        self._tasks.append(asyncio.create_task(self.prober.run(self._stop), name="prober"))

    async def close(self) -> None:
        """Publish the queued events and dialog writes, then stop the prober and the watches."""
        await self.outbox.drain(_DRAIN_TIMEOUT)
        self._stop.set()
        if self._probe_transport is not None:
            self._probe_transport.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for watch in self._watches:
            await watch.close()

    async def ready(self) -> bool:
        """True once every watched bucket has been read whole."""
        return all(e.is_set() for e in self._loaded.values())

    async def wait_loaded(self, timeout: float) -> None:
        """Wait until :meth:`ready` (tests, start-up)."""
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._loaded.values())), timeout)

    async def flush(self) -> None:
        """Wait until the events and dialog writes queued so far are published (tests)."""
        await self.outbox.flush()

    # -- the message path ---------------------------------------------------------

    async def handle(self, envelope: Envelope) -> ReplyType:
        """Answer one envelope (the ``sip.route`` and ``sip.route.response`` handler)."""
        started = time.perf_counter()
        try:
            msg = parse(envelope.data)
        except ParseError as exc:
            self.metrics.decisions.labels("unparseable").inc()
            return Drop(reason=f"unparseable: {exc.reason}")
        try:
            now = time.time()
            locations = self._cached_locations(msg, now)
            if locations is None:  # a binding to read from NATS first
                locations = await self._read_locations(msg, now)
            decision = self._decide(envelope, msg, now, locations)
            claim = decision.nonce_claim
            if claim is not None and not await self._claim(claim.key, claim.ttl):
                assert isinstance(msg, Request)  # only requests are authenticated
                decision = core.replayed(msg, claim, self._inputs(now=time.time()))
            if decision.media is not None:
                reply = await self._ask_media(decision.media)
                decision = media.apply_media(decision, reply, secret=self.policy.secret)
        except ParseError as exc:
            decision = _error(msg, 400, "bad_request", exc.reason)
        except _NATS_ERRORS as exc:
            log.warning("router: NATS failed: %s: %s", type(exc).__name__, exc)
            decision = _error(msg, 503, "unavailable", None, self._settings.retry_after)
        late = self._side_effects(decision)
        if late is not None:
            await self._finish(late, decision)
        method = msg.method if isinstance(msg, Request) else None
        self.metrics.decided(decision, method=method, seconds=time.perf_counter() - started)
        return decision.reply

    def on_error(self, exc: Exception, raw: bytes) -> ReplyType | None:
        """Map an unexpected error to a 500 when the request allows one, else Drop."""
        log.error("router: message failed: %r", exc, exc_info=exc)
        try:
            msg = parse(decode_envelope(raw).data)
        except (ParseError, msgspec.DecodeError, msgspec.ValidationError):
            return Drop(reason=f"bad envelope: {type(exc).__name__}")
        return _error(msg, 500, "error", None).reply

    def _cached_locations(
        self, msg: Request | Response, now: float
    ) -> dict[str, BindingSet | None] | None:
        """The bindings :func:`core.location_keys` names, from the watched copy
        without a suspension (None: one is missing there, or all its bindings
        have expired: :meth:`_read_locations`)."""
        locations: dict[str, BindingSet | None] = {}
        if isinstance(msg, Request):
            for key in core.location_keys(msg, self.policy):
                cached = self._locations.get(key)
                if cached is None or not _any_live(cached[0], now):
                    return None
                locations[key] = cached[0]
        return locations

    async def _read_locations(
        self, msg: Request | Response, now: float
    ) -> dict[str, BindingSet | None]:
        """:meth:`_cached_locations`, reading from NATS what the watched copy lacks."""
        locations: dict[str, BindingSet | None] = {}
        if isinstance(msg, Request):
            for key in core.location_keys(msg, self.policy):
                cached = self._locations.get(key)
                if cached is not None and _any_live(cached[0], now):
                    locations[key] = cached[0]
                else:
                    locations[key] = await self._read_location(key)
        return locations

    def _decide(
        self,
        envelope: Envelope,
        msg: Request | Response,
        now: float,
        locations: dict[str, BindingSet | None],
    ) -> Decision:
        if isinstance(msg, Request) and msg.method == b"INVITE" and msg.to_tag is None:
            self._calls += 1
        return core.decide(envelope, msg, self._inputs(now=now, locations=locations))

    def _inputs(
        self, *, now: float, locations: dict[str, BindingSet | None] | None = None
    ) -> Inputs:
        if now - self._pruned_at > _PRUNE_EVERY:
            self._pruned_at = now
            self.active.prune(older_than=now - self._settings.dialog_ttl)
        view = SnapshotView(
            self.snapshot,
            self.health.records,
            now=now,
            rr_counter=self._calls,
            active_calls=self.active.counts,
            peers=self._peers,
        )
        return Inputs(
            routing=view,
            policy=self.policy,
            nonces=self.nonces,
            now=now,
            entropy=self._fresh_entropy(),
            locations=locations or {},
            subscribers=self._subscribers,
            user_calls=self.active.users,
            trunk_calls=self.active.trunks,
        )

    def _fresh_entropy(self) -> bytes:
        """12 random bytes never handed out before (a slice of one larger ``os.urandom``)."""
        at = self._entropy_at
        if at + _ENTROPY_BYTES > len(self._entropy):
            self._entropy = os.urandom(_ENTROPY_POOL)
            at = 0
        self._entropy_at = at + _ENTROPY_BYTES
        return self._entropy[at : at + _ENTROPY_BYTES]

    # -- side outputs ------------------------------------------------------------------

    async def _ask_media(self, req: MediaOffer | MediaAnswer | MediaDelete) -> MediaReply:
        """The media service's reply to ``req``; a failure is logged and counted, never raised."""
        command = type(req).__name__.removeprefix("Media").lower()
        if self.media is None:
            reply = MediaReply(ok=False, code="unavailable", error="no NATS client for media")
        else:
            reply = await self.media.ask(req)
        self.metrics.media.labels(command, "ok" if reply.ok else reply.code or "error").inc()
        if not reply.ok:
            log.warning(
                "router: media %s for call %s failed (%s: %s); going on unanchored",
                command,
                req.call_id,
                reply.code,
                reply.error,
            )
        return reply

    async def _release(self, req: MediaDelete) -> None:
        await self._ask_media(req)

    def _side_effects(self, decision: Decision) -> list[Write] | None:
        """Queue the events and dialog writes; what is left to await (None: nothing).

        Events and dialog writes are published now and acked in the background
        (one key per call and stream keeps them in order), each handed to
        :meth:`Outbox.offer` without a coroutine; a write it refuses (the
        outbox is full) and the ones after it go to :meth:`_finish`, as does
        the media release, which is awaited as before.
        """
        late: list[Write] = []
        for event in decision.events:
            self._queue(self._event_write(event), late)
        if decision.dialog_put is not None and self._track_dialogs:
            key, record = decision.dialog_put
            write = self._dialog_write(key, "put", encode_dialog(record), self._put_block)
            self._queue(write, late)
        gone = decision.dialog_delete
        if gone is not None and (self._track_dialogs or gone in self.active):
            # Also when no longer tracking: the record of a call answered
            # while tracking (the watched copy has it) must not linger.
            self._queue(self._dialog_write(gone, "delete", b"", _DELETE_BLOCK), late)
        if late or decision.media_delete is not None:
            return late
        return None

    def _queue(self, write: Write, late: list[Write]) -> None:
        if late or not self.outbox.offer(write):
            late.append(write)

    async def _finish(self, late: list[Write], decision: Decision) -> None:
        """The writes :meth:`_side_effects` could not queue at once, then the media release."""
        for write in late:
            await self.outbox.put(write)
        if decision.media_delete is not None:
            await self._release(decision.media_delete)

    def _event_write(self, event: CallEvent) -> Write:
        ok, failed = self._event_counters[event.kind]
        event_id = event.event_id

        def on_failure(exc: BaseException) -> None:
            # The call goes on; the CDR misses one step (logged and counted).
            log.warning("router: call event %s not published: %r", event_id, exc)
            failed.inc()

        headers: bytes | dict[str, str]
        if "\r" in event_id or "\n" in event_id:
            headers = {_MSG_ID: event_id}  # refused (ValueError) as before
        else:
            headers = _MSG_ID_START + event_id.encode() + _BLOCK_END
        return Write(
            "e" + event.call_id,
            _EVENT_SUBJECTS[event.kind],
            encode(event),
            headers,
            ok.inc,
            on_failure,
        )

    def _dialog_write(self, key: str, op: str, data: bytes, headers: bytes) -> Write:
        ok, failed = self._dialog_counters[op]

        def on_failure(exc: BaseException) -> None:
            log.warning("router: dialog %s of %s failed: %r", op, key, exc)
            failed.inc()

        return Write("d" + key, _DIALOG_SUBJECT + key, data, headers, ok.inc, on_failure)

    # -- KV ----------------------------------------------------------------------------

    async def _claim(self, key: str, ttl: float) -> bool:
        """Record a nonce-count as used; False when some replica (or the registrar) had it.

        On the wire connection it is ``KeyValue.create`` by hand: a publish
        expecting no earlier message on the key's subject, acked by JetStream.
        A refusal goes through nats-py's ``create``, which also writes over a
        delete marker (nobody deletes nonces: it is the rare replay).
        """
        seconds = max(1, math.ceil(ttl))
        requests = self._requests
        if requests is not None and _KEY_RE.fullmatch(key):
            block = _CLAIM_START + b"%d" % seconds + _BLOCK_END
            timeout = self._js._timeout  # private in nats-py
            reply = await requests.ask(_NONCE_SUBJECT + key, b"1", timeout, block)
            if reply is not None:
                ack = PUB_ACK.decode(reply.payload)
                if ack.error is None:
                    return True
                if ack.error.get("err_code") not in _WRONG_LAST_SEQUENCE:
                    nats.js.errors.APIError.from_error(ack.error)  # raises the matching error
                    raise nats.js.errors.APIError(description=str(ack.error))
        assert self._nonce_kv is not None
        try:
            await self._nonce_kv.create(key, b"1", msg_ttl=seconds)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        return True

    async def _read_location(self, key: str) -> BindingSet | None:
        assert self._location is not None
        try:
            entry = await self._location.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        value = _decode_location(key, entry.value)
        self._note_location(key, value, entry.revision or 0)
        return value

    def _note_location(self, key: str, value: BindingSet | None, revision: int) -> None:
        """Keep the newer of the cached and the given version of ``key``."""
        known = self._locations.get(key)
        if known is None or known[1] < revision:
            self._locations[key] = (value, revision)

    def _location_entry(self, key: str, value: bytes | None, revision: int) -> None:
        """One entry of bucket ``location`` (None or empty: deleted)."""
        bindings = _decode_location(key, value)
        if self._pending_locations is not None:
            self._pending_locations[key] = (bindings, revision)
        else:
            self._note_location(key, bindings, revision)

    def _locations_loaded(self) -> None:
        """A (re)started watch's replay is in: it replaces the table."""
        self._locations = self._pending_locations or {}
        self._pending_locations = None
        self._loaded["location"].set()

    async def _watch_locations(self) -> None:
        """Follow bucket ``location`` with nats-py (no wire connection)."""
        while True:
            try:
                assert self._location is not None
                watcher = await self._location.watchall()
                self._pending_locations = {}
                async for entry in watcher:
                    if entry is None:
                        self._locations_loaded()
                        continue
                    deleted = entry.operation in (KV_DEL, "PURGE")
                    value = None if deleted else entry.value
                    self._location_entry(entry.key, value, entry.revision or 0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("router: location watch failed (%r); restarting", exc)
                self._pending_locations = None
                await asyncio.sleep(1.0)

    def _watch_on_wire(
        self,
        wire: WireClient,
        bucket: str,
        on_entry: Callable[[str, bytes | None, int], None],
        on_loaded: Callable[[], None],
    ) -> None:
        """Watch ``bucket`` on the wire connection (started again until it works)."""

        async def start() -> None:
            while True:
                watch = KvWatch(
                    wire,
                    bucket,
                    on_entry,
                    on_loaded=on_loaded,
                    api_prefix=self._js._prefix,  # private in nats-py
                    timeout=self._request_timeout,
                )
                try:
                    await watch.start()
                except asyncio.CancelledError:
                    await watch.close()  # closing meanwhile
                    raise
                except (WatchError, TimeoutError, ConnectionError, msgspec.DecodeError) as exc:
                    await watch.close()
                    log.warning("router: %s watch failed (%r); restarting", bucket, exc)
                    await asyncio.sleep(1.0)
                    continue
                self._watches.append(watch)
                return

        self._tasks.append(asyncio.create_task(start(), name=f"watch-{bucket}"))

    def _watch(
        self, bucket: str, name: str, fold: Callable[[str, bytes | None, bool], None]
    ) -> None:
        self._tasks.append(asyncio.create_task(self._watch_forever(bucket, name, fold)))

    async def _watch_forever(
        self, bucket_name: str, name: str, fold: Callable[[str, bytes | None, bool], None]
    ) -> None:
        loaded = self._loaded[name]
        while True:
            try:
                bucket = await self._js.key_value(bucket_name)
                watcher = await bucket.watchall()
                fresh = True
                async for entry in watcher:
                    if entry is None:
                        fold("", None, True)  # the initial values are all in: swap
                        fresh = False
                        loaded.set()
                        continue
                    deleted = entry.operation in (KV_DEL, "PURGE") or not entry.value
                    fold(entry.key, None if deleted else entry.value, fresh)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("router: %s watch failed (%r); restarting", name, exc)
                await asyncio.sleep(1.0)

    # Each fold gets (key, value, initial): during the initial replay of a
    # (re)started watch it builds a new table, swapped in at the end marker
    # (key ""), so deletions made while the watch was down are not kept.

    _pending_subscribers: dict[str, Subscriber] | None = None
    _pending_routing: RoutingSnapshot | None = None
    _pending_health: HealthSnapshot | None = None
    _pending_active: ActiveCalls | None = None

    def _fold_subscribers(self, key: str, value: bytes | None, initial: bool) -> None:
        if initial and key == "":
            self._subscribers = self._pending_subscribers or {}
            self._pending_subscribers = None
            self.metrics.subscribers.set(len(self._subscribers))
            return
        if initial:
            if self._pending_subscribers is None:
                self._pending_subscribers = {}
            table = self._pending_subscribers
        else:
            table = self._subscribers
        table.pop(key, None)
        if value is not None:
            try:
                table[key] = records.decode_subscriber(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("router: unreadable subscriber %s ignored", key)
        self.metrics.subscribers.set(len(self._subscribers))

    def _fold_routing(self, key: str, value: bytes | None, initial: bool) -> None:
        if initial and key == "":
            self.snapshot = self._pending_routing or RoutingSnapshot()
            self._pending_routing = None
            self._routing_changed()
            return
        if initial:
            if self._pending_routing is None:
                self._pending_routing = RoutingSnapshot()
            target = self._pending_routing
        else:
            target = self.snapshot
        if not target.apply(key, value):
            log.warning("router: routing key %s ignored (unknown or unreadable)", key)
        if not initial:
            self._routing_changed()

    def _routing_changed(self) -> None:
        self._peers = {}
        self._track_dialogs = _tracks_dialogs(self._settings, self._caps, self.snapshot)
        self.metrics.routing_keys.set(len(self.snapshot.sets) + len(self.snapshot.gateways))
        self.metrics.known_gateways(self.snapshot)

    def _fold_health(self, key: str, value: bytes | None, initial: bool) -> None:
        if initial and key == "":
            self.health = self._pending_health or HealthSnapshot()
            self._pending_health = None
            return
        if initial:
            if self._pending_health is None:
                self._pending_health = HealthSnapshot()
            target = self._pending_health
        else:
            target = self.health
        target.apply(key, value)

    def _fold_dialogs(self, key: str, value: bytes | None, initial: bool) -> None:
        if initial and key == "":
            self.active = self._pending_active or ActiveCalls()
            self._pending_active = None
            return
        if initial:
            if self._pending_active is None:
                self._pending_active = ActiveCalls()
            target = self._pending_active
        else:
            target = self.active
        if not target.apply(key, value):
            log.warning("router: unreadable dialog record %s ignored", key)


def _any_live(bindings: BindingSet | None, now: float) -> bool:
    """``bool(live_bindings(bindings, now))`` without the list and its sort (core sorts them)."""
    return bindings is not None and any(b.expires_at > now for b in bindings.bindings)


def _has_caps(limits: CallLimits) -> bool:
    """Whether any call cap is set (0 is none)."""
    return bool(
        limits.per_user
        or limits.per_trunk
        or any(limits.users.values())
        or any(limits.trunks.values())
    )


def _tracks_dialogs(settings: RouterSettings, caps: bool, snapshot: RoutingSnapshot) -> bool:
    """Whether answered calls get a ``dialogs`` record: ``router.dialogs`` is
    ``always``, or something counts the records (call caps, ``least_calls``)."""
    if settings.dialogs == "always" or caps:
        return True
    return any(ds.algorithm == "least_calls" for ds in snapshot.sets.values())


def _decode_location(key: str, value: bytes | None) -> BindingSet | None:
    if not value:
        return None
    try:
        return records.decode_binding_set(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.warning("router: unreadable location value for %s", key)
        return None


def _error(
    msg: object, status: int, outcome: str, reason: str | None, retry_after: int | None = None
) -> Decision:
    if not isinstance(msg, Request) or msg.method == b"ACK":
        return Decision(reply=Drop(reason=outcome), outcome=outcome)
    headers = [(b"Retry-After", b"%d" % retry_after)] if retry_after else []
    text = None if reason is None else "".join(c if " " <= c < "\x7f" else "?" for c in reason[:80])
    try:
        resp = make_response(msg, status, None if text is None else text.encode(), headers=headers)
    except ParseError:
        return Decision(reply=Drop(reason=outcome), outcome=outcome)
    return Decision(reply=SendResponse(data=bytes(resp)), outcome=outcome)
