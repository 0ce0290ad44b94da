"""Requests over one inbox subscription, for :meth:`sipmesh_bus.wire.WireClient.request`.

The request/reply pattern nats-py's ``nc.request()`` implements with a future,
a timer and a wait per call costs here one dict entry: ONE subscription on
``<inbox>.*`` (the server learns it from the same write as the first request,
and processes a connection's frames in order), each request published with
``reply=<inbox>.<token>``, replies matched by token. Deadlines are swept by a
single loop timer, armed only while requests are pending, for the earliest
deadline known when it was armed (an earlier one re-arms it); each sweep
fails what is due with :attr:`RequestFailure.TIMEOUT` and re-arms for the
rest. Most requests share one timeout, so the timer fires about once per
timeout however many requests pass.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from sipmesh_bus._wireproto import Reply, RequestFailure

__all__ = ["Inbox", "ReplyCallback"]

log = logging.getLogger("sipmesh_bus.wire")

ReplyCallback = Callable[["Reply | RequestFailure"], None]
"""Called exactly once with the :class:`Reply` (its status may say 503: no
responders) or with why there is none."""


class Inbox:
    """The pending requests of one client and their reply subject prefix."""

    __slots__ = ("_armed", "_loop", "_next", "_pending", "_timer", "prefix")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: ``_INBOX.<random>.``; the subscription is on this plus ``*``.
        self.prefix = b"_INBOX." + secrets.token_hex(11).encode() + b"."
        self._next = 0
        self._pending: dict[bytes, tuple[float, ReplyCallback]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed = 0.0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, callback: ReplyCallback, timeout: float) -> bytes:
        """Register a request; returns its reply subject."""
        self._next += 1
        token = b"%x" % self._next
        deadline = self._loop.time() + timeout
        self._pending[token] = (deadline, callback)
        if self._timer is None or deadline < self._armed:
            self._arm(deadline)
        return self.prefix + token

    def forget(self, reply: bytes) -> None:
        """Drop a request registered by :meth:`add` that could not be sent."""
        self._pending.pop(reply[len(self.prefix) :], None)

    def on_reply(self, subject: bytes, payload: bytes, headers: bytes) -> None:
        """A message on the inbox: call back its request (if still pending)."""
        entry = self._pending.pop(subject[len(self.prefix) :], None)
        if entry is not None:  # else late: the request timed out already
            _call(entry[1], Reply(payload, headers))

    def fail_all(self, why: RequestFailure) -> None:
        """Call back every pending request with ``why`` (the connection is gone)."""
        pending, self._pending = self._pending, {}
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, callback in pending.values():
            _call(callback, why)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = when
        self._timer = self._loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = self._loop.time()
        due = [token for token, (deadline, _) in self._pending.items() if deadline <= now]
        for token in due:
            entry = self._pending.pop(token, None)
            if entry is not None:
                _call(entry[1], RequestFailure.TIMEOUT)
        if self._pending and self._timer is None:
            self._arm(min(deadline for deadline, _ in self._pending.values()))


def _call(callback: ReplyCallback, value: Reply | RequestFailure) -> None:
    try:
        callback(value)
    except Exception:
        # The caller's code: a bug in it must not stop the reply subscription.
        log.exception("nats wire: reply callback failed")
