"""Request/reply over NATS for the hot path, without one ``nc.request()`` per message.

``nc.request()`` makes a future, a timer and a wait per call. The edge instead
holds ONE subscription on ``<inbox>.*``, publishes each request with
``reply=<inbox>.<token>`` and matches replies by token in a dict; a single
publisher task drains an outbox, so a datagram handler (which cannot await)
queues a request in O(1) and never creates a task. Timeouts are checked by
:meth:`BusClient.expire`, called from the edge's one timer tick: every request
has the same timeout, so the pending dict (insertion-ordered) is also ordered by
deadline and expiry pops from its front.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Final

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["BusClient", "BusFailure", "ReplyCallback"]

log = logging.getLogger(__name__)


class BusFailure(Enum):
    """Why a request got no reply."""

    #: Not connected to NATS when the request was made (or the publish failed).
    UNAVAILABLE = "unavailable"
    #: NATS said nobody subscribes to the subject (a 503 status message).
    NO_RESPONDERS = "no_responders"
    #: No reply within the timeout.
    TIMEOUT = "timeout"


ReplyCallback = Callable[[bytes | BusFailure], None]
"""Called exactly once with the reply payload, or with why there is none."""

_NO_RESPONDERS_STATUS: Final = "503"


class BusClient:
    """Pipelined NATS requests with one reply subscription.

    Args:
        nc: a connected client (it reconnects by itself).
        timeout: seconds a request may wait for its reply.
        clock: the monotonic clock used for deadlines (``loop.time``).
    """

    def __init__(self, nc: NatsClient, *, timeout: float, clock: Callable[[], float]) -> None:
        self._nc = nc
        self._timeout = timeout
        self._clock = clock
        self._prefix = nc.new_inbox() + "."
        self._next = 0
        self._pending: dict[str, tuple[float, ReplyCallback]] = {}
        self._outbox: deque[tuple[str, str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._sub: Subscription | None = None
        self._publisher: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """True while the NATS connection is up."""
        return bool(self._nc.is_connected)

    @property
    def pending(self) -> int:
        """How many requests wait for a reply."""
        return len(self._pending)

    async def start(self) -> None:
        """Subscribe to the reply inbox and start the publisher task."""
        self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)
        self._publisher = asyncio.create_task(self._publish_forever(), name="edge-bus-publisher")

    async def close(self) -> None:
        """Stop publishing, fail what is pending with UNAVAILABLE, unsubscribe."""
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
        self._fail_all(BusFailure.UNAVAILABLE)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    def request(self, subject: str, payload: bytes, callback: ReplyCallback) -> bool:
        """Queue a request; ``callback`` gets the reply or the failure later.

        Returns:
            False (and ``callback`` is never called) when NATS is disconnected:
            the caller answers at once instead of waiting for a timeout.
        """
        if not self._nc.is_connected:
            return False
        self._next += 1
        token = format(self._next, "x")
        self._pending[token] = (self._clock() + self._timeout, callback)
        self._outbox.append((subject, self._prefix + token, payload))
        if not self._wake.is_set():
            self._wake.set()
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        """Queue a message that expects no reply. False when disconnected."""
        if not self._nc.is_connected:
            return False
        self._outbox.append((subject, "", payload))
        if not self._wake.is_set():
            self._wake.set()
        return True

    def expire(self, now: float) -> None:
        """Fail every request whose deadline is at or before ``now`` with TIMEOUT."""
        pending = self._pending
        while pending:
            token = next(iter(pending))
            deadline, callback = pending[token]
            if deadline > now:
                return
            del pending[token]
            _call(callback, BusFailure.TIMEOUT)

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        entry = self._pending.pop(token, None)
        if entry is None:
            return  # late: the caller already answered 503
        headers = msg.headers
        if not msg.data and headers and headers.get("Status") == _NO_RESPONDERS_STATUS:
            _call(entry[1], BusFailure.NO_RESPONDERS)
        else:
            _call(entry[1], msg.data)

    async def _publish_forever(self) -> None:
        nc = self._nc
        outbox = self._outbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            while outbox:
                subject, reply, payload = outbox.popleft()
                try:
                    await nc.publish(subject, payload, reply=reply)
                except Exception as exc:  # disconnected mid-way, buffer full, closing
                    log.debug("publish to %s failed: %s", subject, exc)
                    entry = self._pending.pop(reply[len(self._prefix) :], None) if reply else None
                    if entry is not None:
                        _call(entry[1], BusFailure.UNAVAILABLE)

    def _fail_all(self, why: BusFailure) -> None:
        pending, self._pending = self._pending, {}
        self._outbox.clear()
        for _, callback in pending.values():
            _call(callback, why)


def _call(callback: ReplyCallback, value: bytes | BusFailure) -> None:
    try:
        callback(value)
    except Exception:
        # The callback is the edge's own code; a bug in it must not stop the
        # reply subscription or the timer tick.
        log.exception("edge: reply callback failed")
