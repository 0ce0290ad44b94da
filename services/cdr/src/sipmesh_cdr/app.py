"""The CDR service's NATS wiring: pull call events, fold, commit, then ack.

One durable pull consumer (``QUEUE_CDR``) on the stream ``CALLS``, shared by all
replicas. Each batch goes: decode -> :func:`fold_batch` (pure) -> one store
transaction -> dead letters published -> acks. An event is acked only after the
row holding its id is committed, so a crash anywhere redelivers it, and the
id in the row makes the redelivery a no-op. A store conflict (another replica
wrote one of the rows) reloads the rows and folds the batch again.

Poison events (undecodable, or contradicting the call's history) are published
to ``cdr.dead.<kind>`` with the reason in the ``Sipmesh-Reason`` header, logged,
then acked: they never block the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sipmesh_bus import kv, schema, subjects
from sipmesh_bus.schema import CallEvent

from . import core
from .config import CdrSettings, limits_of
from .core import Applied, Cdr, Duplicate, Limits, Rejected
from .store import CdrStore, ConflictError

__all__ = ["REASON_HEADER", "BatchResult", "CdrConsumer", "fold_batch"]

log = logging.getLogger(__name__)

REASON_HEADER: Final = "Sipmesh-Reason"
SUBJECT_HEADER: Final = "Sipmesh-Subject"
_KINDS: Final = frozenset({"attempt", "ringing", "answered", "failed", "ended"})
_CONFLICT_RETRIES: Final = 8
_LAG_EVERY: Final = 1.0
_SWEEP_LIMIT: Final = 1000


@dataclass(slots=True)
class BatchResult:
    """What :func:`fold_batch` made of a batch."""

    rows: dict[str, Cdr] = field(default_factory=dict)
    #: Rows to write, by Call-ID.
    rejected: dict[int, str] = field(default_factory=dict)
    #: Index in the batch -> reason, for dead letters.
    applied: int = 0
    duplicates: int = 0


def fold_batch(
    stored: dict[str, Cdr], events: Sequence[CallEvent | str], limits: Limits
) -> BatchResult:
    """Fold a batch of events into the stored rows, in order.

    Args:
        stored: the rows as read, by Call-ID.
        events: decoded events, or the decode error text of one that was not.
        limits: rating and timeout settings.

    Returns:
        The changed rows (their ``version`` still the one read) and the rejects.
    """
    result = BatchResult()
    for index, event in enumerate(events):
        if isinstance(event, str):
            result.rejected[index] = event
            continue
        current = result.rows.get(event.call_id) or stored.get(event.call_id)
        match core.apply(current, event, limits):
            case Applied(cdr=cdr):
                result.rows[event.call_id] = cdr
                result.applied += 1
            case Duplicate():
                result.duplicates += 1
            case Rejected(reason=reason):
                result.rejected[index] = reason
    return result


def _decode(msg: Msg) -> CallEvent | str:
    try:
        return schema.decode_call_event(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return f"undecodable: {exc}"


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "sipmesh_cdr_events",
            "Call events processed, by outcome (applied, duplicate, rejected)",
            ["outcome"],
            registry=registry,
        )
        self.records = Counter(
            "sipmesh_cdr_records_written",
            "CDR rows written (inserts and updates)",
            registry=registry,
        )
        self.dead = Counter(
            "sipmesh_cdr_dead_letters", "Events sent to the dead-letter subject", registry=registry
        )
        self.timeouts = Counter(
            "sipmesh_cdr_timeouts", "Calls closed by the dialog timeout", registry=registry
        )
        self.conflicts = Counter(
            "sipmesh_cdr_store_conflicts",
            "Batches folded again after a conflict",
            registry=registry,
        )
        self.pending = Gauge(
            "sipmesh_cdr_consumer_pending",
            "Events in CALLS not yet delivered to the CDR consumer (the lag)",
            registry=registry,
        )
        self.ack_pending = Gauge(
            "sipmesh_cdr_consumer_ack_pending",
            "Events delivered but not acknowledged yet",
            registry=registry,
        )
        self.lag = Gauge(
            "sipmesh_cdr_consumer_lag_seconds",
            "0 when no event waits undelivered, else now minus the newest event time"
            " (CallEvent.at) this replica has committed and acked",
            registry=registry,
        )
        self.commit = Histogram(
            "sipmesh_cdr_commit_seconds",
            "Time to commit one batch to the store",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )


class CdrConsumer:
    """Pull call events from JetStream into the CDR store."""

    def __init__(
        self,
        js: JetStreamContext,
        store: CdrStore,
        settings: CdrSettings,
        *,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        replicas: int = 1,
    ) -> None:
        self._js = js
        self._replicas = replicas
        #: ``nats.jetstream_replicas``: for the streams this consumer creates.
        self._store = store
        self._settings = settings
        self._limits = limits_of(settings)
        self._clock = clock
        self._metrics = _Metrics(registry)
        self._sub: JetStreamContext.PullSubscription | None = None
        self._last_sweep = 0.0
        self._last_lag = 0.0
        self._pending: int | None = None
        #: The consumer's undelivered events at the last look (None: not looked yet).
        self._newest_at: float | None = None
        #: The largest ``CallEvent.at`` of the events this replica acked (the lag's base).

    async def start(self) -> None:
        """Create the streams if missing and bind the durable consumer."""
        await kv.ensure_jetstream(self._js, replicas=self._replicas)
        self._sub = await self._js.pull_subscribe(
            subjects.CALL_EVENTS,
            durable=subjects.QUEUE_CDR,
            stream=kv.STREAM_CALLS,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                max_ack_pending=self._settings.max_ack_pending,
                ack_wait=self._settings.ack_wait,
                max_deliver=-1,
            ),
        )

    async def run(self, stopped: asyncio.Event) -> None:
        """Fetch and process batches until ``stopped`` is set."""
        if self._sub is None:
            raise RuntimeError("start() first")
        while not stopped.is_set():
            try:
                msgs = await self._sub.fetch(self._settings.batch, timeout=1.0)
            except TimeoutError:
                # Not only nats.errors.TimeoutError: nats-py's fetch also raises a
                # bare asyncio.TimeoutError when the server's 408 comes right at
                # the deadline. Either way, nothing arrived in time.
                msgs = []
            except Exception as exc:
                log.warning("cdr: fetch failed: %r", exc)
                await asyncio.sleep(0.5)
                continue
            try:
                if msgs:
                    await self.process(msgs)
                await self._housekeeping()
            except Exception:
                # An ack lost with the NATS connection, say: the unacked events
                # come back after ack_wait. Never let it end the loop while
                # /readyz still says ready and nothing is consumed any more.
                log.exception("cdr: a batch failed; its unacked events will be redelivered")
                await asyncio.sleep(0.5)

    async def process(self, msgs: Sequence[Msg]) -> None:
        """Fold, commit, dead-letter and ack one batch (acks only after the commit)."""
        events = [_decode(m) for m in msgs]
        try:
            result = await self._commit(events)
        except Exception:
            log.exception("cdr: could not store a batch of %d events; will retry", len(msgs))
            for msg in msgs:
                await msg.nak(delay=1.0)
            await asyncio.sleep(1.0)
            return
        try:
            for index, reason in result.rejected.items():
                await self._dead_letter(msgs[index], events[index], reason)
        except Exception:
            # Rows are committed; unacked events come back and are duplicates then.
            log.exception("cdr: could not publish a dead letter; leaving the batch unacked")
            return
        for msg in msgs:
            await msg.ack()
        done = [e.at for e in events if isinstance(e, CallEvent)]
        if done:
            self._newest_at = max(done) if self._newest_at is None else max(self._newest_at, *done)
        m = self._metrics
        m.events.labels("applied").inc(result.applied)
        m.events.labels("duplicate").inc(result.duplicates)
        m.events.labels("rejected").inc(len(result.rejected))
        m.records.inc(len(result.rows))

    async def _commit(self, events: list[CallEvent | str]) -> BatchResult:
        call_ids = {e.call_id for e in events if not isinstance(e, str)}
        for _ in range(_CONFLICT_RETRIES):
            stored = await self._store.load(call_ids) if call_ids else {}
            result = fold_batch(stored, events, self._limits)
            if not result.rows:
                return result
            started = time.perf_counter()
            try:
                await self._store.commit(list(result.rows.values()))
            except ConflictError:
                self._metrics.conflicts.inc()
                continue
            self._metrics.commit.observe(time.perf_counter() - started)
            return result
        raise ConflictError(f"gave up after {_CONFLICT_RETRIES} conflicting commits")

    async def _dead_letter(self, msg: Msg, event: CallEvent | str, reason: str) -> None:
        kind = msg.subject.rsplit(".", 1)[-1]
        kind = kind if kind in _KINDS else "invalid"
        event_id = event.event_id if isinstance(event, CallEvent) else ""
        msg_id = f"{event_id or msg.metadata.sequence.stream}.dead"
        one_line = " ".join(reason.split())[:500]
        log.warning("cdr: dead letter %s (%s): %s", event_id or "?", msg.subject, one_line)
        await self._js.publish(
            subjects.cdr_dead_letter(kind),
            msg.data,
            headers={REASON_HEADER: one_line, SUBJECT_HEADER: msg.subject, "Nats-Msg-Id": msg_id},
        )
        self._metrics.dead.inc()

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_lag >= _LAG_EVERY and self._sub is not None:
            self._last_lag = now
            try:
                info = await self._sub.consumer_info()
            except Exception as exc:
                log.debug("cdr: consumer info failed: %r", exc)
            else:
                self._pending = info.num_pending or 0
                self._metrics.pending.set(self._pending)
                self._metrics.lag.set(self._lag(self._pending))
                self._metrics.ack_pending.set(info.num_ack_pending or 0)
        # Sweep only once caught up: after an outage the BYEs of the calls to
        # close may still be in the backlog.
        if self._pending == 0 and now - self._last_sweep >= self._settings.sweep_interval:
            self._last_sweep = now
            try:
                await self.sweep()
            except Exception:
                log.exception("cdr: closing timed-out calls failed; retrying later")

    def _lag(self, pending: int) -> float:
        """``sipmesh_cdr_consumer_lag_seconds``: how far behind the stream's events this is.

        0 while nothing waits undelivered. Else the age of the newest event
        processed: the oldest waiting event was published after it, so this
        bounds the wait from above (by the gap between the two events when the
        stream was idle before the backlog). Before the first event it is 0.
        """
        if pending == 0 or self._newest_at is None:
            return 0.0
        return max(0.0, self._clock() - self._newest_at)

    async def sweep(self) -> int:
        """Close the calls whose end never came (:func:`core.close_expired`).

        Returns:
            How many were closed.
        """
        now = self._clock()
        horizon = now - min(self._limits.max_call_duration, self._limits.setup_timeout)
        candidates = await self._store.open_calls(horizon, _SWEEP_LIMIT)
        closed = [c for c in (core.close_expired(r, now, self._limits) for r in candidates) if c]
        if closed:
            try:
                await self._store.commit(closed)
            except ConflictError:
                return 0  # an event just changed one of them; the next sweep sees it
            self._metrics.timeouts.inc(len(closed))
            self._metrics.records.inc(len(closed))
            log.info("cdr: closed %d calls by the dialog timeout", len(closed))
        return len(closed)
