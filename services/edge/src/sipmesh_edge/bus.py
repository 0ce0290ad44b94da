"""Request/reply over NATS for the hot path, without one ``nc.request()`` per message.

``nc.request()`` makes a future, a timer and a wait per call. The edge instead
holds ONE subscription on ``<inbox>.*``, publishes each request with
``reply=<inbox>.<token>`` and matches replies by token in a dict. Both go
through the service's :class:`~sipmesh_bus.wire.WireClient`: :meth:`BusClient.request`
appends the PUB to the connection's write buffer (one socket write per loop
iteration) and replies arrive as plain calls from ``data_received``, so a
datagram handler (which cannot await) sends a request without any task.
Timeouts are checked by :meth:`BusClient.expire`, called from the edge's one
timer tick: every request has the same timeout, so the pending dict
(insertion-ordered) is also ordered by deadline and expiry pops from its front.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from enum import Enum

from sipmesh_bus.wire import NO_RESPONDERS, PayloadTooLargeError, WireClient, WireClosedError

__all__ = ["BusClient", "BusFailure", "ReplyCallback"]

log = logging.getLogger(__name__)


class BusFailure(Enum):
    """Why a request got no reply."""

    #: Not connected to NATS when the request was made (or the connection dropped).
    UNAVAILABLE = "unavailable"
    #: NATS said nobody subscribes to the subject (a 503 status message).
    NO_RESPONDERS = "no_responders"
    #: No reply within the timeout.
    TIMEOUT = "timeout"


ReplyCallback = Callable[[bytes | BusFailure], None]
"""Called exactly once with the reply payload, or with why there is none."""


class BusClient:
    """Pipelined NATS requests with one reply subscription.

    Args:
        wire: the service's hot-path connection (it reconnects by itself).
        timeout: seconds a request may wait for its reply.
        clock: the monotonic clock used for deadlines (``loop.time``).
    """

    def __init__(self, wire: WireClient, *, timeout: float, clock: Callable[[], float]) -> None:
        self._wire = wire
        self._publish = wire.publish
        self._timeout = timeout
        self._clock = clock
        self._prefix = b"_INBOX." + secrets.token_hex(11).encode() + b"."
        self._skip = len(self._prefix)
        self._next = 0
        self._pending: dict[bytes, tuple[float, ReplyCallback]] = {}
        self._sid: int | None = None

    @property
    def connected(self) -> bool:
        """True while the NATS connection is up."""
        return self._wire.connected

    @property
    def pending(self) -> int:
        """How many requests wait for a reply."""
        return len(self._pending)

    async def start(self) -> None:
        """Subscribe to the reply inbox (and wait until the server has it)."""
        self._sid = self._wire.subscribe(self._prefix.decode() + "*", self._on_reply)
        self._wire.add_listener(self._on_connection)
        with contextlib.suppress(WireClosedError, TimeoutError):
            await self._wire.flush()  # reconnecting: the SUB goes out with CONNECT

    async def close(self) -> None:
        """Fail what is pending with UNAVAILABLE, unsubscribe."""
        self._wire.remove_listener(self._on_connection)
        self._fail_all(BusFailure.UNAVAILABLE)
        if self._sid is not None:
            self._wire.unsubscribe(self._sid)
            self._sid = None

    def request(self, subject: str, payload: bytes, callback: ReplyCallback) -> bool:
        """Send a request; ``callback`` gets the reply or the failure later.

        Returns:
            False (and ``callback`` is never called) when NATS is disconnected
            or the payload is over the server's limit: the caller answers at
            once instead of waiting for a timeout.
        """
        self._next = serial = self._next + 1
        token = b"%x" % serial
        try:
            if not self._publish(subject, payload, self._prefix + token):
                return False
        except PayloadTooLargeError as exc:
            log.warning("edge: request to %s not sent: %s", subject, exc)
            return False
        self._pending[token] = (self._clock() + self._timeout, callback)
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        """Send a message that expects no reply. False when disconnected."""
        try:
            return self._wire.publish(subject, payload)
        except PayloadTooLargeError as exc:
            log.warning("edge: message to %s not sent: %s", subject, exc)
            return False

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

    def _on_reply(self, subject: bytes, _reply: bytes, payload: bytes, status: int | None) -> None:
        entry = self._pending.pop(subject[self._skip :], None)
        if entry is None:
            return  # late: the caller already answered 503
        # _call inlined: this runs for every reply.
        try:
            if status is None or payload or status != NO_RESPONDERS:
                entry[1](payload)
            else:
                entry[1](BusFailure.NO_RESPONDERS)
        except Exception:
            log.exception("edge: reply callback failed")

    def _on_connection(self, up: bool) -> None:
        # The inbox subscription belonged to the lost connection: no reply to
        # what is pending will come, so the edge answers now, not at the timeout.
        if not up:
            self._fail_all(BusFailure.UNAVAILABLE)

    def _fail_all(self, why: BusFailure) -> None:
        pending, self._pending = self._pending, {}
        for _, callback in pending.values():
            _call(callback, why)


def _call(callback: ReplyCallback, value: bytes | BusFailure) -> None:
    try:
        callback(value)
    except Exception:
        # The callback is the edge's own code; a bug in it must not stop the
        # reply subscription or the timer tick.
        log.exception("edge: reply callback failed")
