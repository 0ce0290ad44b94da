"""The registrar's NATS shell: ``sip.register`` in, the core's answer out.

Per REGISTER: parse, :func:`core.admit` (subscribers come from a local cache kept
by a KV watch, so authentication costs no round trip), then
:func:`core.apply_bindings` against the AoR's record from a second watched
cache (bucket ``location``: value and revision per key), then one NATS round
trip: a compare-and-set write (expected last revision = the cached one) that
stores the bindings and the request's nonce-count together (replay detection,
:mod:`.replay`), sent as an HPUB request on the service's wire connection
(:meth:`sipmesh_bus.wire.WireClient.request`; nats-py's own connection when
there is none). On a wrong-revision error the key is read directly (JetStream
direct get) and the request decided again, a bounded number of times, so two
replicas updating one AoR never lose a binding nor both accept one
nonce-count. A stale cache costs a retry, never correctness; a query (no
Contact, nothing written) is answered from the cache, so it may miss a change
another replica made a moment before (the watch's delay, about a millisecond).
The key's per-key TTL is its last binding's or remembered nonce's expiry, so
dead AoRs vanish by themselves.

Nothing here outlives a request but the two caches, copies of watched data:
any replica answers any REGISTER.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from typing import Any, Final

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue
from prometheus_client import CollectorRegistry

from sipmesh_bus import kv, records
from sipmesh_bus.records import BindingSet, Subscriber
from sipmesh_bus.schema import Drop, Envelope, ReplyType, SendResponse, decode_envelope
from sipmesh_bus.wire import Reply, RequestFailure, WireClient
from sipmesh_bus.wirewatch import KvWatch, WatchError
from sipmsg import ParseError, Request, Response, parse
from sipmsg.digest import NonceManager

from . import core
from .config import RegistrarConfig, make_policy
from .fastpath import FastAdmitted, FastPath
from .metrics import RegistrarMetrics

__all__ = ["Registrar"]

log = logging.getLogger(__name__)

# JetStream "wrong last sequence" API errors (JSStreamWrongLastSequenceErrF and
# its constant variant): another writer changed the key since we read it.
_WRONG_LAST_SEQUENCE: Final = frozenset({10071, 10164})
_EXPECTED_LAST: Final = "Nats-Expected-Last-Subject-Sequence"
_NATS_ERRORS: Final = (nats.errors.Error, nats.js.errors.Error, TimeoutError)
_SAMPLE_EVERY: Final = 15.0
_SWEEP_EVERY: Final = 60.0
_SWEEP_BATCH: Final = 1000
_DELETE_MARKER_TTL: Final = 60
_MSG_TTL: Final = "Nats-TTL"
#: JetStream's per-message TTL header (what ``js.publish(msg_ttl=)`` sets).
_DECODED_MAX: Final = 100_000
_ENTROPY: Final = 12


class _PubAck(msgspec.Struct):
    """A JetStream publish ack: ``{"stream": ..., "seq": N}`` or ``{"error": {...}}``."""

    seq: int = 0
    error: dict[str, Any] | None = None


_PUB_ACK: Final = msgspec.json.Decoder(_PubAck)
_PUT_BLOCK: Final = f"NATS/1.0\r\n{_EXPECTED_LAST}: %d\r\n{_MSG_TTL}: %d\r\n\r\n".encode()
_DELETE_BLOCK: Final = (
    f"NATS/1.0\r\n{_EXPECTED_LAST}: %d\r\n{_MSG_TTL}: %d\r\n{KV_OP}: {KV_DEL}\r\n\r\n".encode()
)
#: The compare-and-set write's headers on the wire: expected revision, then TTL.
_BACKOFF: Final = 0.0005
_BACKOFF_CAP: Final = 0.05


class Registrar:
    """One registrar replica: its KV handles, subscriber cache and metrics."""

    def __init__(
        self,
        config: RegistrarConfig,
        js: JetStreamContext,
        *,
        secret: bytes,
        registry: CollectorRegistry,
        wire: WireClient | None = None,
    ) -> None:
        settings = config.registrar
        self.policy = make_policy(settings)
        self.nonces = NonceManager(secret=secret, ttl=settings.nonce_ttl)
        self.metrics = RegistrarMetrics(registry)
        self._fast = FastPath(self.policy, self.nonces)
        self._challenges = self.metrics.result("challenge")
        self._oks = self.metrics.result("ok")
        self._observe = self.metrics.latency.observe
        self._settings = settings
        self._js = js
        self._wire = wire
        self._replicas = config.nats.jetstream_replicas
        self._subscribers: dict[str, Subscriber] = {}
        self._loaded = asyncio.Event()
        self._location_loaded = asyncio.Event()
        self._locations: dict[str, tuple[bytes | None, int]] = {}
        self._decoded: dict[str, tuple[bytes, BindingSet | None]] = {}
        # AoR key -> (value, its decoded record), valid while _locations holds that value.
        self._location_subject = f"$KV.{kv.BUCKET_LOCATION}."
        # AoR key -> (value, revision): the watched copy of bucket location.
        # None is a deleted key (its delete marker's revision still counts).
        self._tasks: list[asyncio.Task[None]] = []
        self._location: KeyValue | None = None
        self._location_watch: KvWatch | None = None
        self._direct_get: str | None = None
        self._read_timeout = config.nats.request_timeout
        self._pool = b""
        self._pool_at = 0

    # -- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the buckets (creating them when missing) and start the watches."""
        try:
            self._location = await self._js.key_value(kv.BUCKET_LOCATION)
        except nats.js.errors.BucketNotFoundError:
            log.warning("registrar: JetStream buckets missing; creating them (R%d)", self._replicas)
            await kv.ensure_jetstream(self._js, replicas=self._replicas)
            self._location = await self._js.key_value(kv.BUCKET_LOCATION)
        if self._location._direct:  # private in nats-py
            # $JS.API.DIRECT.GET.<stream>.<subject>: the last message on a subject.
            prefix = self._js._prefix
            self._direct_get = (
                f"{prefix}.DIRECT.GET.KV_{kv.BUCKET_LOCATION}.$KV.{kv.BUCKET_LOCATION}."
            )
        if self.policy.auth:
            subscribers = await self._js.key_value(kv.BUCKET_SUBSCRIBERS)
            self._tasks.append(asyncio.create_task(self._watch_subscribers(subscribers)))
        else:
            self._loaded.set()
        if self._wire is None:
            self._tasks.append(asyncio.create_task(self._watch_locations(self._location)))
        else:
            self._tasks.append(asyncio.create_task(self._watch_locations_wire(self._wire)))
        self._tasks.append(asyncio.create_task(self._sweep_locations()))
        self._tasks.append(asyncio.create_task(self._sample_aors()))

    async def close(self) -> None:
        """Stop the background watches."""
        if self._location_watch is not None:
            await self._location_watch.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def ready(self) -> bool:
        """True once the subscriber and location caches hold their whole buckets."""
        return self._loaded.is_set() and self._location_loaded.is_set()

    async def wait_loaded(self, timeout: float) -> None:
        """Wait until :meth:`ready` (tests, start-up)."""

        async def both() -> None:
            await self._loaded.wait()
            await self._location_loaded.wait()

        await asyncio.wait_for(both(), timeout)

    # -- the request path ---------------------------------------------------------

    async def handle(self, envelope: Envelope) -> ReplyType:
        """Answer one REGISTER envelope (the ``sip.register`` handler)."""
        started = time.perf_counter()
        try:
            msg = parse(envelope.data)
        except ParseError as exc:
            self.metrics.registrations.labels("unparseable").inc()
            return Drop(reason=f"unparseable: {exc.reason}")
        if not isinstance(msg, Request):
            return Drop(reason="a response on sip.register")
        try:
            data = await self._register(msg, envelope)
        except ParseError as exc:
            response = self._bad(msg, exc)
            data = None if response is None else bytes(response)
        except _NATS_ERRORS as exc:
            log.warning("registrar: NATS failed: %s: %s", type(exc).__name__, exc)
            response = self._unavailable(msg, 503)
            data = None if response is None else bytes(response)
        if data is None:
            return Drop(reason="no response can be built")
        self._observe(time.perf_counter() - started)
        return SendResponse(data=data)

    def on_error(self, exc: Exception, raw: bytes) -> ReplyType | None:
        """Map an unexpected error to a 500 when the request allows one, else Drop."""
        log.error("registrar: request failed: %r", exc, exc_info=exc)
        try:
            msg = parse(decode_envelope(raw).data)
        except (ParseError, msgspec.DecodeError, msgspec.ValidationError):
            return Drop(reason=f"bad envelope: {type(exc).__name__}")
        response = self._unavailable(msg, 500) if isinstance(msg, Request) else None
        return (
            Drop(reason="internal error")
            if response is None
            else SendResponse(data=bytes(response))
        )

    def _bad(self, req: Request, exc: ParseError) -> Response | None:
        self.metrics.registrations.labels("bad_request").inc()
        try:
            return core.answer(req, 400, "bad_request", reason=_reason(exc)).response
        except ParseError:
            return None

    def _unavailable(self, req: Request, status: int) -> Response | None:
        self.metrics.registrations.labels("unavailable" if status == 503 else "error").inc()
        try:
            return core.server_error(req, status, retry_after=self._settings.retry_after)
        except ParseError:
            return None

    async def _register(self, req: Request, envelope: Envelope) -> bytes | None:
        now = time.time()
        entropy = self._entropy()
        fast = self._fast.admit(req, subscribers=self._subscribers, now=now, entropy=entropy)
        if isinstance(fast, bytes):
            self._challenges.inc()
            return fast
        if fast is not None:
            data = await self._register_fast(req, fast, envelope, now)
            if data is not None:
                return data
        response = await self._register_typed(req, envelope, now, entropy)
        return None if response is None else bytes(response)

    async def _register_fast(
        self, req: Request, fast: FastAdmitted, envelope: Envelope, now: float
    ) -> bytes | None:
        """:meth:`_register_typed`'s loop for the usual REGISTER (:mod:`.fastpath`).

        None: the fast path stepped aside (a replay, a retransmission ...); the
        typed path decides from scratch (nothing was written).
        """
        key = fast.key
        value, revision = self._cached(key)
        for attempt in range(self._settings.kv_retries):
            if attempt > 1:
                await asyncio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF * 2**attempt)))
            if attempt:
                value, revision = await self._read(key)
            decision = self._fast.apply(fast, value, envelope, now=now)
            if decision is None:
                return None
            if await self._write(key, decision.record, decision.ttl, revision):
                self._oks.inc()
                return decision.response
            self.metrics.kv_conflicts.inc()
        log.warning(
            "registrar: gave up on %s after %d conflicts", fast.aor, self._settings.kv_retries
        )
        response = self._unavailable(req, 500)
        return None if response is None else bytes(response)

    async def _register_typed(
        self, req: Request, envelope: Envelope, now: float, entropy: bytes
    ) -> Response | None:
        try:
            step = core.admit(
                req,
                self.policy,
                subscribers=self._subscribers,
                nonces=self.nonces,
                now=now,
                entropy=entropy,
            )
        except ParseError:
            return None  # not even a 400 can be built
        if isinstance(step, core.Answer):
            return self._count(step)
        value, revision = self._cached(step.key)
        for attempt in range(self._settings.kv_retries):
            if attempt > 1:
                # Jittered exponential backoff, or the losers of one race all
                # collide again on the next round. None before the first
                # re-read: that conflict is most often just a stale cache.
                await asyncio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF * 2**attempt)))
            if attempt:
                value, revision = await self._read(step.key)
            decision = core.apply_bindings(step, value, envelope, self.policy, now=now)
            if isinstance(decision, core.Replayed):
                again = core.replayed(
                    step, self.nonces, self.policy, now=now, entropy=self._entropy()
                )
                return self._count(again)
            if not isinstance(decision, core.Registered) or not decision.changed:
                return self._count(decision)
            if await self._write(step.key, decision.bindings, decision.ttl, revision):
                return self._count(decision)
            self.metrics.kv_conflicts.inc()
        log.warning(
            "registrar: gave up on %s after %d conflicts", step.aor, self._settings.kv_retries
        )
        return self._unavailable(req, 500)

    def _entropy(self) -> bytes:
        """12 fresh random bytes for a nonce, cut from a pool read 6 KiB at a time.

        Every REGISTER gets some (the challenge is decided inside the fast
        path); one ``os.urandom`` call per request was a syscall each.
        """
        at = self._pool_at
        if at >= len(self._pool):
            self._pool = os.urandom(_ENTROPY * 512)
            at = 0
        self._pool_at = at + _ENTROPY
        return self._pool[at : at + _ENTROPY]

    def _count(self, decision: core.Answer) -> Response:
        self.metrics.result(decision.result).inc()
        if decision.auth_failure is not None:
            self.metrics.auth_failures.labels(decision.auth_failure).inc()
        return decision.response

    # -- KV ---------------------------------------------------------------------------

    def _cached(self, key: str) -> tuple[BindingSet | None, int]:
        """The AoR's record and revision as the watched cache has them (0: no key).

        The decoded record is kept while the cache holds the very value it
        was decoded from (a refresh decodes nothing; the watch's echo of our
        own write leaves the value in place).
        """
        value, revision = self._locations.get(key, (None, 0))
        if not value:
            return None, revision
        known = self._decoded.get(key)
        if known is not None and known[0] is value:
            return known[1], revision
        record = _decode_location(key, value)
        if len(self._decoded) >= _DECODED_MAX:
            self._decoded.clear()
        self._decoded[key] = (value, record)
        return record, revision

    def _note(self, key: str, value: bytes | None, revision: int) -> None:
        """Put what was read or written in the cache, unless it holds newer."""
        known = self._locations.get(key)
        if known is None or known[1] < revision:
            self._locations[key] = (value or None, revision)

    async def _read(self, key: str) -> tuple[BindingSet | None, int]:
        """The AoR's record and the revision to write against, read from NATS now."""
        if self._direct_get is None:
            value, revision = await self._read_kv(key)
        else:
            value, revision = await self._read_direct(key)
        self._note(key, value, revision)
        return _decode_location(key, value), revision

    async def _read_kv(self, key: str) -> tuple[bytes | None, int]:
        assert self._location is not None
        try:
            entry = await self._location.get(key)
        except nats.js.errors.KeyNotFoundError as exc:
            # A deleted key still has a last revision: its delete marker.
            marker = getattr(exc, "entry", None)
            return None, marker.revision if marker is not None else 0
        return entry.value, entry.revision or 0

    async def _read_direct(self, key: str) -> tuple[bytes | None, int]:
        """The key's last message by a JetStream direct get, read by hand.

        What ``KeyValue.get`` does on a bucket with direct gets, without the
        JSON request body, the timestamp parse and the entry objects (the read
        was 7 % of the registrar's CPU under load). Headers: ``Status: 404``
        for no message; else ``Nats-Sequence`` (the revision) and, on a delete
        or purge marker, ``KV-Operation``.
        """
        assert self._direct_get is not None
        subject = self._direct_get + key
        reply = await self._request_wire(subject, b"", self._read_timeout, None)
        if reply is None:
            return await self._read_direct_nats(subject)
        if not reply.payload:
            status = reply.status
            if status == 404:
                return None, 0
            if status is not None:
                raise nats.js.errors.APIError(code=status, description=reply.description)
        revision = int(reply.header("Nats-Sequence") or 0)
        if reply.header(KV_OP) in (KV_DEL, KV_PURGE):
            return None, revision
        return reply.payload, revision

    async def _read_direct_nats(self, subject: str) -> tuple[bytes | None, int]:
        """:meth:`_read_direct` on nats-py's connection (no wire)."""
        msg = await self._js._nc.request(subject, b"", timeout=self._read_timeout)
        headers = msg.headers or {}
        if not msg.data:
            status = headers.get("Status")
            if status == "404":
                return None, 0
            if status is not None:
                raise nats.js.errors.APIError.from_msg(msg)
        revision = int(headers.get("Nats-Sequence", 0))
        if headers.get(KV_OP) in (KV_DEL, KV_PURGE):
            return None, revision
        return msg.data, revision

    async def _request_wire(
        self, subject: str, payload: bytes, timeout: float, headers: bytes | None
    ) -> Reply | None:
        """A request on the wire connection; None when there is none (or it is down).

        Raises:
            nats.errors.TimeoutError: no reply in time.
            nats.errors.ConnectionClosedError: the connection dropped meanwhile.
            nats.js.errors.NoStreamResponseError: no responders (503).
        """
        wire = self._wire
        if wire is None:
            return None
        reply = await wire.ask(subject, payload, timeout=timeout, headers=headers)
        if reply is None:
            return None
        if reply is RequestFailure.TIMEOUT:
            raise nats.errors.TimeoutError
        if reply is RequestFailure.UNAVAILABLE:
            raise nats.errors.ConnectionClosedError
        assert isinstance(reply, Reply)
        if reply.no_responders:
            raise nats.js.errors.NoStreamResponseError
        return reply

    async def _write(self, key: str, record: BindingSet | None, ttl: int, revision: int) -> bool:
        """Compare-and-set the AoR's bindings; False when another writer came first.

        KeyValue.update() takes no per-key TTL, so this publishes on the bucket's
        subject as the KV protocol does, with the expected-last-revision header.
        It is ``JetStreamContext.publish`` by hand (a request on the context's
        own connection, or as an HPUB on the wire), with the ack decoded by
        msgspec into the two fields used instead of ``json.loads`` and a ``PubAck``.
        """
        if record is None:
            payload, ttl, block = b"", _DELETE_MARKER_TTL, _DELETE_BLOCK
        else:
            payload, block = records.encode_record(record), _PUT_BLOCK
        subject = self._location_subject + key
        timeout = self._js._timeout
        # The wire takes a ready header block (checked at its ends only).
        reply = await self._request_wire(subject, payload, timeout, block % (revision, ttl))
        if reply is not None:
            data = reply.payload
        else:
            headers = {_EXPECTED_LAST: str(revision), _MSG_TTL: str(ttl)}
            if record is None:
                headers[KV_OP] = KV_DEL
            try:
                msg = await self._js._nc.request(subject, payload, timeout=timeout, headers=headers)
            except nats.errors.NoRespondersError:
                raise nats.js.errors.NoStreamResponseError from None
            data = msg.data
        ack = _PUB_ACK.decode(data)
        if ack.error is not None:
            if ack.error.get("err_code") in _WRONG_LAST_SEQUENCE:
                return False
            nats.js.errors.APIError.from_error(ack.error)  # raises the matching APIError
            raise nats.js.errors.APIError(description=str(ack.error))
        # The watch brings this back (often before the ack: then it holds
        # equal bytes, replaced by ours, whose decoded record is known);
        # meanwhile the next REGISTER of the AoR (a refresh, the other phone
        # of a pair) finds it already.
        known = self._locations.get(key)
        if known is None or known[1] <= ack.seq:
            self._locations[key] = (payload or None, ack.seq)
            if record is not None:
                self._decoded[key] = (payload, record)
        return True

    async def _watch_locations_wire(self, wire: WireClient) -> None:
        """Watch bucket location on the wire connection (:mod:`sipmesh_bus.wirewatch`).

        Each entry is noted inside the connection's ``data_received``: no task
        wakes per entry, and most are the echoes of our own writes, which
        :meth:`_note` finds already there. Started again until it works.
        """
        while True:
            watch = KvWatch(
                wire,
                kv.BUCKET_LOCATION,
                self._note,
                on_loaded=self._location_loaded.set,
                api_prefix=self._js._prefix,  # private in nats-py
                timeout=self._read_timeout,
            )
            try:
                await watch.start()
            except (WatchError, TimeoutError, ConnectionError, msgspec.DecodeError) as exc:
                await watch.close()
                log.warning("registrar: location watch failed (%r); restarting", exc)
                await asyncio.sleep(1.0)
                continue
            self._location_watch = watch
            return

    async def _watch_locations(self, bucket: KeyValue) -> None:
        while True:
            try:
                watcher = await bucket.watchall()
                # A restart applies the bucket again over the cache; keys deleted
                # meanwhile stay until the sweep (a stale entry costs one retry).
                async for entry in watcher:
                    if entry is None:
                        self._location_loaded.set()
                        continue
                    deleted = entry.operation in (KV_DEL, KV_PURGE)
                    self._note(entry.key, None if deleted else entry.value, entry.revision or 0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registrar: location watch failed (%r); restarting", exc)
                await asyncio.sleep(1.0)

    async def _sweep_locations(self) -> None:
        """Drop dead AoRs from the cache: keys that expired send no delete to the watch."""
        while True:
            await asyncio.sleep(_SWEEP_EVERY)
            keys = list(self._locations)
            for start in range(0, len(keys), _SWEEP_BATCH):
                now = time.time()
                for key in keys[start : start + _SWEEP_BATCH]:
                    value, _ = self._locations.get(key, (None, 0))
                    if not _alive(_decode_location(key, value), now):
                        # Should the key still exist, the CAS write against
                        # revision 0 fails and reads it: one retry.
                        self._locations.pop(key, None)
                        self._decoded.pop(key, None)
                await asyncio.sleep(0)  # let requests run between batches

    async def _watch_subscribers(self, bucket: KeyValue) -> None:
        while True:
            try:
                watcher = await bucket.watchall()
                # Each (re)start rebuilds the table, dropping what was deleted meanwhile.
                table: dict[str, Subscriber] = {}
                async for entry in watcher:
                    if entry is None:
                        self._subscribers = table
                        self._loaded.set()
                    else:
                        self._apply_subscriber(table, entry)
                        if table is not self._subscribers:
                            continue
                    self.metrics.subscribers.set(len(self._subscribers))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registrar: subscriber watch failed (%r); restarting", exc)
                await asyncio.sleep(1.0)

    @staticmethod
    def _apply_subscriber(table: dict[str, Subscriber], entry: KeyValue.Entry) -> None:
        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
            table.pop(entry.key, None)
            return
        try:
            table[entry.key] = records.decode_subscriber(entry.value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("registrar: unreadable subscriber %s ignored", entry.key)
            table.pop(entry.key, None)

    async def _sample_aors(self) -> None:
        assert self._location is not None
        while True:
            with contextlib.suppress(*_NATS_ERRORS):
                status = await self._location.status()
                self.metrics.aors.set(status.values)
            self.metrics.bindings.set(await self.count_bindings())
            await asyncio.sleep(_SAMPLE_EVERY)

    async def count_bindings(self, now: float | None = None) -> int:
        """Live bindings across the AoRs of the location cache (``sipmesh_registrar_bindings``).

        A record keeps expired bindings until its next write, so each is checked
        against ``now`` (default: the time of each batch), the rule of
        :func:`records.live_bindings`. Decoded in batches, letting requests run
        between them.
        """
        keys = list(self._locations)
        total = 0
        for start in range(0, len(keys), _SWEEP_BATCH):
            at = time.time() if now is None else now
            for key in keys[start : start + _SWEEP_BATCH]:
                value, _ = self._locations.get(key, (None, 0))
                record = _decode_location(key, value)
                if record is not None:
                    total += sum(1 for b in record.bindings if b.expires_at > at)
            await asyncio.sleep(0)
        return total


def _decode_location(key: str, value: bytes | None) -> BindingSet | None:
    if not value:
        return None
    try:
        return records.decode_binding_set(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.warning("registrar: unreadable location value for %s; replacing it", key)
        return None


def _alive(record: BindingSet | None, now: float) -> bool:
    """Whether a record still holds a live binding or a nonce to remember."""
    if record is None:
        return False
    return (
        record.nonce_floor > now
        or any(b.expires_at > now for b in record.bindings)
        or any(e.until > now for e in record.seen_nonces)
    )


def _reason(exc: ParseError) -> bytes:
    return "".join(c if " " <= c < "\x7f" else "?" for c in exc.reason[:80]).encode("ascii")
