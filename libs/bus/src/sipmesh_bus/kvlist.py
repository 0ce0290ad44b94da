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
  listing at once, without a fetch;
- then batches are fetched until a message's ack metadata says nothing is
  left (``num_pending`` 0); a fetch that gets nothing asks the consumer's
  info again, since messages removed since (a TTL, a purge) are never
  delivered;
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
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final, TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KeyValue

__all__ = ["ListTimeoutError", "LiveEntry", "live_entries"]

_T = TypeVar("_T")

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds a whole listing may take."""

_BATCH: Final = 1000
#: Messages per fetch request.
_INACTIVE: Final = 30.0
#: Seconds after which the server drops a consumer left behind.
_OPERATION: Final = "KV-Operation"
_MARKER_REASON: Final = "Nats-Marker-Reason"
_TTL: Final = "Nats-TTL"
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
            sub = await js.pull_subscribe_bind(consumer=consumer, stream=stream)
            try:
                await listing.drain(sub, info.num_pending)
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await js._jsm.delete_consumer(stream, consumer)
    return listing.found


class _Listing:
    """One listing's state: what was found, by when it must be done."""

    def __init__(self, *, prefix: str, now: float | None, timeout: float) -> None:
        self.found: dict[str, LiveEntry] = {}
        self._prefix = prefix
        self._now = now
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + timeout

    async def bounded(self, awaitable: Awaitable[_T]) -> _T:
        """``awaitable``, or ListTimeoutError once the deadline is past."""
        left = self._deadline - self._loop.time()
        try:
            return await asyncio.wait_for(awaitable, max(left, 0.001))
        except TimeoutError:
            raise ListTimeoutError from None

    async def drain(self, sub: JetStreamContext.PullSubscription, pending: int) -> None:
        """Fetch until the consumer has nothing left (``pending`` left at first)."""
        while True:
            left = self._deadline - self._loop.time()
            if left <= 0:
                raise ListTimeoutError
            try:
                # No more than is pending: a fetch waits until its batch is
                # full or its timeout. At most 1 s: a fetch that finds nothing
                # (the messages were removed meanwhile) lingers its whole
                # timeout, and then the consumer's info decides.
                msgs = await sub.fetch(min(pending, _BATCH), timeout=min(left, 1.0))
            except TimeoutError:  # nats.errors.TimeoutError is one
                info = await self.bounded(sub.consumer_info())
                if not info.num_pending:
                    return
                pending = info.num_pending
                continue
            now = time.time() if self._now is None else self._now
            for msg in msgs:
                _apply(self.found, msg, self._prefix, now)
            pending = msgs[-1].metadata.num_pending
            if pending == 0:
                return


def _apply(found: dict[str, LiveEntry], msg: Msg, prefix: str, now: float) -> None:
    key = msg.subject[len(prefix) :]
    headers = msg.headers
    meta = msg.metadata
    if headers and _removed(headers, meta.timestamp.timestamp(), now):
        found.pop(key, None)  # a key can come twice only if it changed meanwhile
        return
    found[key] = LiveEntry(key=key, value=msg.data, revision=meta.sequence.stream)


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
