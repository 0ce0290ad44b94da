"""Background writes to NATS that the SIP reply does not wait for.

The router answers the edge first, then publishes the call events and the
dialog record writes through an :class:`Outbox`: each write is an async
callable run in its own task, at most ``concurrency`` at a time, retried on a
NATS error with a short back-off. Writes with the same key (one call) run one
after the other in submission order, so ``attempt`` reaches stream CALLS
before ``answered``, and a dialog record's put before its delete, even when
one of them is retried.

Trade-off: the reply no longer proves the write was stored. A write is lost
only when the process dies between the reply and the publish (or NATS stays
down for every retry: counted by the caller's ``on_failure``). A SIP
retransmission handled again republishes the same event id, which JetStream
deduplicates (``Nats-Msg-Id``). :meth:`Outbox.drain` waits for the writes still
queued (graceful shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeAlias

import nats.errors
import nats.js.errors

__all__ = ["Outbox", "Write"]

log = logging.getLogger(__name__)

_RETRYABLE: Final = (nats.errors.Error, nats.js.errors.Error, TimeoutError)

#: One write: called anew for each attempt.
Write: TypeAlias = Callable[[], Awaitable[None]]


class Outbox:
    """Fire-and-forget NATS writes with bounded concurrency, retries and per-key order.

    Args:
        concurrency: writes in flight at once.
        max_pending: writes queued or in flight; :meth:`submit` waits for room
            beyond that (back-pressure rather than dropping).
        backoff: the pause before each retry; its length is the number of retries.
    """

    def __init__(
        self,
        *,
        concurrency: int = 64,
        max_pending: int = 10_000,
        backoff: Sequence[float] = (0.05, 0.25, 1.0),
    ) -> None:
        self._inflight = asyncio.Semaphore(concurrency)
        self._room = asyncio.Semaphore(max_pending)
        self._backoff = tuple(backoff)
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.retries = 0
        #: Attempts that failed and were tried again (all writes).

    def __len__(self) -> int:
        """Writes queued or in flight."""
        return len(self._tasks)

    async def submit(
        self,
        key: str,
        write: Write,
        *,
        on_done: Callable[[], None],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        """Run ``write`` in the background after the earlier writes of ``key``.

        ``on_done`` is called once it succeeded, ``on_failure`` once every
        attempt failed (or the write was cancelled by :meth:`drain`).
        """
        await self._room.acquire()
        previous = self._tails.get(key)
        task = asyncio.create_task(self._run(previous, write, on_done, on_failure))
        self._tails[key] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._finished(key, t))

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._room.release()
        if self._tails.get(key) is task:
            del self._tails[key]

    async def _run(
        self,
        previous: asyncio.Task[None] | None,
        write: Write,
        on_done: Callable[[], None],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])
            async with self._inflight:
                for pause in (*self._backoff, None):
                    try:
                        await write()
                    except _RETRYABLE as exc:
                        if pause is None:
                            on_failure(exc)
                            return
                        self.retries += 1
                        await asyncio.sleep(pause)
                    else:
                        on_done()
                        return
        except asyncio.CancelledError as exc:
            on_failure(exc)
            raise
        except Exception as exc:
            log.error("router: background write failed: %r", exc, exc_info=exc)
            on_failure(exc)

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the queued writes; cancel the rest.

        Returns:
            How many writes were cancelled (each reported to its ``on_failure``).
        """
        tasks = set(self._tasks)
        if not tasks:
            return 0
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            log.warning("router: %d background writes cancelled at shutdown", len(late))
        return len(late)

    async def flush(self) -> None:
        """Wait until every write submitted so far is done (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
