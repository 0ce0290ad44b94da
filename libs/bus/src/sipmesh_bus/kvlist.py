"""List the live entries of a KV bucket: a pull consumer read to its end.

nats-py's ``KeyValue.watch(keys, ignore_deletes=True)`` read until it yields
``None`` is not a listing. It creates its push consumer, then asks for the
consumer's info, and yields ``None`` at once when the server reports nothing
pending and the subscription has received nothing yet. But ``num_pending``
counts what the server has not *sent*: when it has already pushed every
entry and they are still on their way (or in the socket buffer), the watch
ends before its first entry and the listing comes out empty or short. That
race lost entries in CI (test_cli_users, test_cli_routing).

:func:`live_entries` uses a pull consumer instead, so nothing is sent before
it is asked for:

- an ephemeral consumer on the bucket's stream, ``deliver_policy``
  ``last_per_subject`` (the latest revision of each key), ``ack_policy``
  none, in memory, one replica, deleted when done (and by the server after
  ``inactive_threshold`` should the delete be lost);
- its create reply's ``num_pending`` is what there is to read: 0 ends the
  listing at once, without a pull;
- then pull requests (``CONSUMER.MSG.NEXT``, ``no_wait``, a batch of no
  more than is pending, one at a time) until a message's ack metadata says
  nothing is left (``num_pending`` 0). A request cut short by a status (the
  404 of ``no_wait``: messages removed since by a TTL or a purge are never
  delivered) asks the consumer's info what is left; the status comes after
  the request's messages, so none is still on its way then;
- the messages go to a plain callback subscription, not nats-py's
  ``fetch``, which awaits each message with a timer of its own (three times
  the CPU on 100,000 keys);
- every step shares one deadline: past it :class:`ListTimeoutError`.

A message is a live entry unless it is a removal: a ``KV-Operation`` header
of ``DEL`` or ``PURGE`` (what ``KeyValue.delete`` and ``purge`` write), or a
``Nats-Marker-Reason`` header (the marker nats-server 2.11+ may leave where a
per-key TTL or a limit removed a key). A message whose ``Nats-TTL`` is over
(its stored time plus the TTL, against the local clock) is skipped too: the
server removes expired messages on a timer, so one may still be stored a
little after its TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.kv import KeyValue

__all__ = ["ListTimeoutError", "LiveEntry", "live_entries"]

_T = TypeVar("_T")

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds a whole listing may take."""

_BATCH: Final = 1000
#: Messages per pull request.
_INACTIVE: Final = 30.0
#: Seconds after which the server drops a consumer left behind.
_OPERATION: Final = "KV-Operation"
_MARKER_REASON: Final = "Nats-Marker-Reason"
_TTL: Final = "Nats-TTL"
_STATUS: Final = "Status"
_REMOVALS: Final = frozenset(("DEL", "PURGE"))
# Nats-TTL is whole seconds ("30") or a Go duration ("1h30m", "500ms"), or "never".
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS: Final = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}


class ListTimeoutError(nats.errors.TimeoutError):
    """The listing did not finish before its deadline."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveEntry:
    """The latest value of one live key."""

    key: str
    value: bytes
    revision: int
    #: The stream sequence of this value (the KV revision).


async def live_entries(
    bucket: KeyValue,
    keys: str = ">",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    now: float | None = None,
) -> dict[str, LiveEntry]:
    """The live keys of ``bucket`` matching ``keys``, with their latest values.

    Args:
        bucket: a bound nats-py bucket.
        keys: a key or a filter with NATS wildcards (``*`` one token, ``>`` the rest).
        timeout: seconds the whole listing may take.
        now: wall-clock seconds to judge per-key TTLs by (default: ``time.time()``).

    Returns:
        Key to entry, in revision order. Deleted, purged and expired keys are absent.

    Raises:
        ListTimeoutError: the listing did not finish in ``timeout`` seconds.
        nats.js.errors.NotFoundError: no such bucket.
        nats.errors.Error: NATS failed.
    """
    listing = _Listing(prefix=bucket._pre, now=now, timeout=timeout)
    # nats-py keeps a bucket's context, stream and subject prefix private; the
    # prefix is not always "$KV.<bucket>." (a JetStream domain, a mirror).
    js, stream = bucket._js, bucket._stream
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        ack_policy=AckPolicy.NONE,
        filter_subject=f"{bucket._pre}{keys}",
        mem_storage=True,
        num_replicas=1,
        inactive_threshold=_INACTIVE,
    )
    info = await listing.bounded(js._jsm.add_consumer(stream, config=config))
    consumer = info.name
    assert consumer is not None  # the server names the consumers it makes
    try:
        if info.num_pending:
            nc = js._nc
            inbox = nc.new_inbox()
            sub = await nc.subscribe(f"{inbox}.*", cb=listing.take)
            try:
                await listing.drain(
                    nc=nc,
                    subject=f"{js._prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                    inbox=inbox,
                    info=lambda: js._jsm.consumer_info(stream, consumer),
                    pending=info.num_pending,
                )
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await js._jsm.delete_consumer(stream, consumer)
    return listing.found


class _Listing:
    """One listing's state: what was found, what is left, by when it must end.

    The messages come to :meth:`take`, the subscription's callback, one
    after the other: no task and no timer per message, as ``fetch`` has.
    """

    def __init__(self, *, prefix: str, now: float | None, timeout: float) -> None:
        self.found: dict[str, LiveEntry] = {}
        self._prefix = prefix
        self._now = now
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + timeout
        self._pending = 0
        #: What the consumer had left after the last message taken.
        self._asked = 0
        #: Messages the current pull request may still bring.
        self._batch_over = asyncio.Event()
        self._reply = ""
        #: The current request's reply subject: a status sent to another is stale.

    async def bounded(self, awaitable: Awaitable[_T]) -> _T:
        """``awaitable``, or ListTimeoutError once the deadline is past."""
        left = self._deadline - self._loop.time()
        try:
            return await asyncio.wait_for(awaitable, max(left, 0.001))
        except TimeoutError:
            raise ListTimeoutError from None

    async def drain(
        self,
        *,
        nc: Client,
        subject: str,
        inbox: str,
        info: Callable[[], Awaitable[ConsumerInfo]],
        pending: int,
    ) -> None:
        """Pull until the consumer has nothing left.

        Args:
            nc: the connection.
            subject: the consumer's ``CONSUMER.MSG.NEXT`` subject.
            inbox: where :meth:`take` gets the messages (``<inbox>.<request>``).
            info: asks for the consumer's info.
            pending: what the consumer has at first.
        """
        self._pending = pending
        requests = 0
        while self._pending:
            # No more than is pending, and no_wait: the server sends what it
            # has, then a 404 status if that was less than asked (messages
            # removed meanwhile: a TTL, a purge). One request at a time: once
            # it is over, nothing of it is still on its way.
            requests += 1
            self._reply = f"{inbox}.{requests}"
            self._asked = min(self._pending, _BATCH)
            self._batch_over.clear()
            body = b'{"batch":%d,"no_wait":true}' % self._asked
            await nc.publish(subject, body, reply=self._reply)
            await self.bounded(self._batch_over.wait())
            if self._asked:  # cut short by a status: the consumer says what is left
                self._pending = (await self.bounded(info())).num_pending or 0

    async def take(self, msg: Msg) -> None:
        """The subscription's callback: one message of a pull, or its closing status."""
        headers = msg.headers
        if headers and _STATUS in headers:  # 404 no messages, 408, 409 ...
            if msg.subject == self._reply:
                self._batch_over.set()
            return
        meta = msg.metadata
        now = time.time() if self._now is None else self._now
        key = msg.subject[len(self._prefix) :]
        if headers and _removed(headers, meta.timestamp.timestamp(), now):
            self.found.pop(key, None)  # a key comes twice only if it changed meanwhile
        else:
            self.found[key] = LiveEntry(key=key, value=msg.data, revision=meta.sequence.stream)
        self._pending = meta.num_pending
        self._asked -= 1
        if not self._asked or not self._pending:
            self._asked = 0
            self._batch_over.set()


def _removed(headers: dict[str, str], stored: float, now: float) -> bool:
    if headers.get(_OPERATION) in _REMOVALS or _MARKER_REASON in headers:
        return True
    ttl = _ttl_seconds(headers.get(_TTL))
    return ttl is not None and stored + ttl <= now


def _ttl_seconds(value: str | None) -> float | None:
    """A ``Nats-TTL`` header in seconds; None for none, ``never`` or a form not known.

    An unknown form keeps the key: better listed than lost.
    """
    if not value or value == "never":
        return None
    if value.isdigit():
        return float(value)
    total, end = 0.0, 0
    for match in _DURATION.finditer(value):
        if match.start() != end:
            return None
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        end = match.end()
    return total if end == len(value) and end else None
