"""JetStream writes that the SIP reply does not wait for, pipelined.

The router answers the edge and hands the call events and the dialog record
writes to an :class:`Outbox`. Each write is published with a reply subject of
its own under one inbox (``<inbox>.<seq>``), the way
``JetStreamContext.publish`` does it, but without a future, a ``wait_for`` and
a task per write: the acks of every write come back on one wildcard
subscription and are matched by sequence number; a sweep started only while
writes are in flight times out the ones without an ack. In the router process
both go over the bus runtime's wire connection
(:class:`sipmesh_bus.wire.WireClient`): a publish is a synchronous append to
its buffer and an ack a plain callback inside its reader, so no nats-py
coroutine, flusher wakeup or task runs per write. Without a wire connection
(tests) the writes go over nats-py. A write whose ack is an error, that times
out, or that NATS refuses is sent again after a back-off, and reported to
``on_failure`` once every attempt failed. A write the wire connection cannot
take (it is reconnecting) counts as sent and unanswered: it goes again once its
ack is overdue, as a write that nats-py buffered across a reconnection would.
With ``linger``, the writes of a few milliseconds leave together: one socket
write for many, where each on its own cost one.

Writes with the same key run one after the other: the next one is sent once
the previous one has its ack (or gave up), so ``attempt`` reaches stream CALLS
before ``answered`` and a dialog record's put is stored before its delete,
even when one of them is retried. Writes of other keys do not wait.

Trade-off: the reply does not prove the write was stored. A write is lost
only when the process dies between the reply and the ack (or NATS refuses
every attempt). A retried event carries the same ``Nats-Msg-Id``, which
JetStream deduplicates; a retried KV put or delete writes the same thing
again. :meth:`Outbox.drain` waits for what is still pending (shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import nats.errors

from sipmesh_bus.wire import HeaderBlock, WireError

__all__ = ["AckMessage", "Outbox", "PublishClient", "WirePort", "Write", "WriteFailedError"]

log = logging.getLogger(__name__)

_OK_PREFIX: Final = b'{"stream"'
#: A JetStream PubAck (``{"stream":"CALLS","seq":7}``, maybe ``"duplicate":true``);
#: an error ack is ``{"error":{...}}``, "no responders" a status message without data.


class WriteFailedError(Exception):
    """JetStream answered a write with an error, or nobody answered in time."""


class AckMessage(Protocol):
    """What the outbox reads of a message on its ack subscription (``nats.aio.msg.Msg``)."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...


class PublishClient(Protocol):
    """The part of ``nats.aio.client.Client`` the outbox uses."""

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None: ...

    async def subscribe(
        self,
        subject: str,
        queue: str = "",
        cb: Callable[[AckMessage], Awaitable[None]] | None = None,
    ) -> object: ...

    def new_inbox(self) -> str: ...


class WirePort(Protocol):
    """The part of ``sipmesh_bus.wire.WireClient`` the outbox uses: sync publish and callbacks."""

    def publish(
        self,
        subject: str | bytes,
        payload: bytes,
        reply: str | bytes | None = None,
        *,
        headers: HeaderBlock | None = None,
    ) -> bool: ...

    def subscribe(
        self,
        subject: str,
        callback: Callable[[bytes, bytes, bytes, int | None], None],
        queue: str | None = None,
    ) -> int: ...


@dataclass(slots=True, eq=False)
class Write:
    """One JetStream write: what :meth:`Outbox.submit` takes, as one object."""

    key: str
    #: Writes with the same key are published one after the other.
    subject: str
    payload: bytes
    headers: dict[str, str] | bytes | None
    #: name -> value, or a ready ``NATS/1.0`` block (see :meth:`Outbox.submit`).
    on_done: Callable[[], None]
    #: Called once JetStream acked it.
    on_failure: Callable[[BaseException], None]
    #: Called once every attempt failed (or :meth:`Outbox.drain` gave up on it).
    attempts: int = 0
    deadline: float = 0.0
    #: monotonic time by which its ack must have come.
    waiting: deque[Write] | None = None
    #: Later writes of the same key (only the first write of a key holds any;
    #: made for the first that waits: most keys never have one).


class Outbox:
    """Pipelined JetStream publishes with acks on one subscription, retries and per-key order.

    Args:
        client: the nats-py connection: names the inbox; publishes and takes
            the acks only when there is no ``wire``.
        ack_timeout: seconds to wait for a write's ack before trying again.
        linger: seconds to collect writes before publishing them together
            (0: publish each at once). Every publish written on its own costs
            a socket write; writes collected for a few milliseconds leave in one.
        wire: the connection to publish on and take the acks from
            (``sipmesh_bus.wire.WireClient``): a publish is a buffer append,
            an ack a callback inside its reader; None: ``client``.
        backoff: the pause before each retry; its length is the number of retries.
        max_pending: writes queued or in flight; :meth:`submit` waits for room
            beyond that (back-pressure rather than dropping).
    """

    def __init__(
        self,
        client: PublishClient,
        *,
        ack_timeout: float = 5.0,
        backoff: Sequence[float] = (0.05, 0.25, 1.0),
        max_pending: int = 10_000,
        linger: float = 0.0,
        wire: WirePort | None = None,
    ) -> None:
        self._client = client
        self._wire = wire
        self._skip = 0
        self._linger = linger
        self._batch: list[Write] = []
        self._timer: asyncio.TimerHandle | None = None
        self._ack_timeout = ack_timeout
        self._backoff = tuple(backoff)
        self._max_pending = max_pending
        self._prefix = ""
        self._subscribing = asyncio.Lock()
        self._seq = 0
        self._inflight: dict[int, Write] = {}
        #: seq -> write sent and not acked, in send order.
        self._heads: dict[str, Write] = {}
        #: key -> the write of that key in flight or waiting for a retry.
        self._retry: list[tuple[float, Write]] = []
        self._pending = 0
        self._changed = asyncio.Event()
        self._putters = 0
        #: :meth:`put` calls waiting for room or the subscription.
        self._flushers = 0
        #: :meth:`flush` calls waiting (for ``_changed``).
        self._sweeper: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self.retries = 0
        #: Attempts that failed and were tried again (all writes).

    def __len__(self) -> int:
        """Writes queued, in flight or waiting for a retry."""
        return self._pending

    async def submit(
        self,
        key: str,
        subject: str,
        payload: bytes,
        *,
        headers: dict[str, str] | bytes | None = None,
        on_done: Callable[[], None],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        """Publish ``payload`` to JetStream ``subject`` after the earlier writes of ``key``.

        ``headers`` is name -> value or a ready ``NATS/1.0`` block (see
        ``WireClient.publish``: built by the caller, checked at its ends only).

        ``on_done`` is called once JetStream acked it, ``on_failure`` once every
        attempt failed (or :meth:`drain` gave up on it). Returns as soon as the
        write is sent or queued behind its key.
        """
        await self.put(Write(key, subject, payload, headers, on_done, on_failure))

    async def put(self, write: Write) -> None:
        """:meth:`submit` a ready :class:`Write` (a new one: not submitted before)."""
        self._putters += 1
        try:
            while self._pending >= self._max_pending:
                self._changed.clear()
                await self._changed.wait()
            if not self._prefix:
                await self._subscribe()
        finally:
            self._putters -= 1
        if not self._queue(write):
            await self._send(write)

    def offer(self, write: Write) -> bool:
        """:meth:`put` without a coroutine, when it would not wait.

        Returns:
            False, and nothing is queued, when :meth:`put` would have to
            wait (no room, the ack subscription not made yet, an earlier
            :meth:`put` still waiting: it goes first) or publish through
            nats-py (no wire connection and no ``linger``): await
            :meth:`put` then.
        """
        if (
            self._pending >= self._max_pending
            or self._putters
            or not self._prefix
            or (self._wire is None and self._linger <= 0)
        ):
            return False
        return self._queue(write)

    def _queue(self, write: Write) -> bool:
        """Count ``write``; hold it behind its key, or send it (False: await :meth:`_send`)."""
        self._pending += 1
        head = self._heads.get(write.key)
        if head is not None:
            if head.waiting is None:
                head.waiting = deque()
            head.waiting.append(write)
            return True
        self._heads[write.key] = write
        if self._linger > 0:
            self._start_soon(write)
        elif self._wire is not None:
            self._post(write, self._wire)
        else:
            return False
        return True

    def _start_soon(self, write: Write) -> None:
        """Send ``write`` with the next batch (from a synchronous caller)."""
        self._batch.append(write)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._send_batch)

    def _send_batch(self) -> None:
        self._timer = None
        batch, self._batch = self._batch, []
        wire = self._wire
        if wire is None:
            self._spawn(self._send_all(batch))
            return
        for write in batch:  # appended to one buffer: one socket write for all
            self._post(write, wire)

    async def _send_all(self, batch: list[Write]) -> None:
        try:
            for write in batch:
                await self._send(write)
        except Exception as exc:  # a bug, not NATS (_send handles that): never silent
            log.error("router: outbox batch failed: %r", exc, exc_info=exc)

    async def start(self) -> None:
        """Subscribe to the acks now (else the first :meth:`submit` does)."""
        if not self._prefix:
            await self._subscribe()

    async def _subscribe(self) -> None:
        async with self._subscribing:
            if not self._prefix:  # not done by a submit that came first
                await self._subscribe_once()

    async def _subscribe_once(self) -> None:
        prefix = self._client.new_inbox()
        if self._wire is not None:
            # The SUB is queued before the first PUB on the same connection,
            # and the server reads a connection in order: no flush needed.
            self._wire.subscribe(f"{prefix}.*", self._on_wire_ack)
        else:
            await self._client.subscribe(f"{prefix}.*", cb=self._on_ack)
        self._prefix = prefix
        self._skip = len(prefix) + 1

    def _track(self, write: Write) -> str:
        """Count an attempt of ``write``, hold it in flight; its reply subject."""
        self._seq += 1
        seq = self._seq
        write.attempts += 1
        write.deadline = time.monotonic() + self._ack_timeout
        self._inflight[seq] = write
        sweeper = self._sweeper
        if sweeper is None or sweeper.done():  # _wake, inlined: once per write
            self._wake()
        return f"{self._prefix}.{seq}"

    def _post(self, write: Write, wire: WirePort) -> None:
        """Publish ``write`` on the wire connection (queued, written at the end of this turn)."""
        reply = self._track(write)
        try:
            # False (reconnecting): nothing went; the ack is overdue after
            # ack_timeout and the sweep sends it again, as nats-py's
            # reconnect buffer would have sent it after the reconnection.
            wire.publish(write.subject, write.payload, reply, headers=write.headers)
        except WireError as exc:  # over max_payload
            self._inflight.pop(self._seq, None)
            self._failed(write, exc)

    async def _send(self, write: Write) -> None:
        if self._wire is not None:
            self._post(write, self._wire)
            return
        reply = self._track(write)
        seq = self._seq
        try:
            headers = write.headers
            if isinstance(headers, bytes):
                headers = _header_dict(headers)
            await self._client.publish(write.subject, write.payload, reply=reply, headers=headers)
        except nats.errors.Error as exc:
            # Closed, draining, or the reconnect buffer is full: try again later.
            self._inflight.pop(seq, None)
            self._failed(write, exc)

    async def _on_ack(self, msg: AckMessage) -> None:
        self._ack(msg.subject.encode(), msg.data)

    def _on_wire_ack(self, subject: bytes, reply: bytes, data: bytes, status: int | None) -> None:
        self._ack(subject, data)

    def _ack(self, subject: bytes, data: bytes) -> None:
        """One ack (or error, or no-responders status) for the write of ``<inbox>.<seq>``."""
        try:
            seq = int(subject[self._skip :])
        except ValueError:
            return
        write = self._inflight.pop(seq, None)
        if write is None:
            return  # late: that attempt timed out and was sent again
        if data.startswith(_OK_PREFIX):
            write.on_done()
            if write.waiting is None and self._putters == 0 and self._flushers == 0:
                # _finished, inlined for the usual write: nothing behind it,
                # nobody waiting for room or for the outbox to empty.
                self._pending -= 1
                del self._heads[write.key]
            else:
                self._finished(write)
        else:
            reason = data.decode("utf-8", "replace")[:200] or "no responders"
            self._failed(write, WriteFailedError(reason))

    def _failed(self, write: Write, exc: BaseException) -> None:
        if write.attempts > len(self._backoff):
            write.on_failure(exc)
            self._finished(write)
            return
        self.retries += 1
        due = time.monotonic() + self._backoff[write.attempts - 1]
        self._retry.append((due, write))
        self._wake()

    def _finished(self, write: Write) -> None:
        """``write`` is done: send the next write of its key, if any."""
        self._pending -= 1
        self._changed.set()
        waiting = write.waiting
        if waiting:
            nxt = waiting.popleft()
            nxt.waiting = waiting
            self._heads[write.key] = nxt
            if self._linger > 0:
                self._start_soon(nxt)
            elif self._wire is not None:
                self._post(nxt, self._wire)
            else:
                self._spawn(self._send_all([nxt]))
        else:
            del self._heads[write.key]

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coro, name="outbox-send")
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    def _wake(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="outbox-sweep")

    async def _sweep(self) -> None:
        """Time out the writes without an ack and send the retries that are due."""
        try:
            await self._sweep_while_pending()
        except Exception as exc:  # a bug: log it; the next send starts a new sweep
            log.error("router: outbox sweep failed: %r", exc, exc_info=exc)

    async def _sweep_while_pending(self) -> None:
        tick = min(0.05, self._ack_timeout / 4)
        while self._inflight or self._retry:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for seq, write in list(self._inflight.items()):
                if write.deadline > now:
                    break  # sent in order, with the same timeout: the rest is younger
                if self._inflight.pop(seq, None) is None:
                    continue  # acked meanwhile
                self._failed(write, WriteFailedError("no ack in time"))
            due = [w for t, w in self._retry if t <= now]
            if due:
                self._retry = [(t, w) for t, w in self._retry if t > now]
                for write in due:
                    await self._send(write)

    async def flush(self) -> None:
        """Wait until every write submitted so far is done (tests)."""
        self._flushers += 1
        try:
            while self._pending:
                self._changed.clear()
                await self._changed.wait()
        finally:
            self._flushers -= 1

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the pending writes; give up on the rest.

        Returns:
            How many writes were given up (each reported to its ``on_failure``).
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        late = [*self._heads.values()]
        lost = 0
        for head in late:
            for write in (head, *(head.waiting or ())):
                write.on_failure(TimeoutError("router stopping"))
                lost += 1
        self._heads.clear()
        self._inflight.clear()
        self._retry.clear()
        self._batch.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = 0
        if self._sweeper is not None:
            self._sweeper.cancel()
        if lost:
            log.warning("router: %d background writes given up at shutdown", lost)
        return lost


def _header_dict(block: bytes) -> dict[str, str]:
    """Name -> value of a ``NATS/1.0`` block (for nats-py, which takes a dict)."""
    headers: dict[str, str] = {}
    for line in block.decode().split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip()] = value.strip()
    return headers
