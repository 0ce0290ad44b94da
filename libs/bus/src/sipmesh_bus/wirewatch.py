"""Watch a KV bucket on the wire connection: an ordered push consumer, no task per entry.

nats-py's ``KeyValue.watch`` hands each entry through its read loop, the
subscription's queue task, an ``Entry`` with parsed metadata and the
watcher's queue: a service watching a bucket it writes to (the registrar
and ``location``) pays that for each of its own writes coming back.
:class:`KvWatch` reads the same entries inside the
:class:`~sipmesh_bus.wire.WireClient`'s ``data_received`` and calls a plain
callback with ``(key, value, revision)``, ``value`` None for a deleted key.

The JetStream side is what nats-py's ordered consumer does (docs.nats.io,
"JetStream Consumers", ordered consumers): an ephemeral push consumer on the
bucket's stream, ``ack_policy`` none, in memory, one replica, its
``deliver_subject`` a fresh subject this connection subscribes to first;
``deliver_policy`` ``last_per_subject`` for the first load, then
``by_start_sequence`` from the last revision seen + 1 whenever it must be
made again:

- a consumer sequence that skips one (the server dropped a message to a slow
  consumer), or a ``409`` status (the consumer is gone);
- a reconnect of the wire connection (it re-subscribes by itself; the
  consumer may not have survived);
- no message nor idle heartbeat for ``3 * idle_heartbeat`` seconds;
- an idle heartbeat while the server's consumer has delivered more than we
  got (asked by ``CONSUMER.INFO``, only then: a message lost at the tail
  is otherwise never noticed).

Each delivered message's reply subject is the ack subject
``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>``
(or the form with ``<domain>.<account hash>`` after ``ACK`` and a token at
the end): the stream sequence is the KV revision, ``pending`` what is left
of the first load. Flow control is off, so there are no flow-control
requests to answer nor stalls to notice.

The subscription takes the raw header blocks
(:meth:`~sipmesh_bus.wire.WireClient.subscribe_raw`): a message whose
``KV-Operation`` header is ``DEL`` or ``PURGE`` (what ``KeyValue.delete`` and
``purge`` write), or that carries ``Nats-Marker-Reason`` (the marker
nats-server 2.11 leaves where a message's TTL or a limit removed it), is a
deleted key and comes as ``value=None``; any other message is a put, even
an empty one. A plain put without headers reads no header at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any, Final

import msgspec

from sipmesh_bus._wireproto import status_of
from sipmesh_bus.wire import Reply, RequestFailure, WireClient

__all__ = ["EntryCallback", "KvWatch", "WatchError"]

log = logging.getLogger(__name__)

EntryCallback = Callable[[str, bytes | None, int], None]
"""Called with (key, value, revision) for each entry; value None for a deleted key."""

_HEARTBEAT_STATUS: Final = 100
_OPERATION: Final = b"kv-operation"
_MARKER_REASON: Final = b"nats-marker-reason"
_REMOVALS: Final = frozenset((b"DEL", b"PURGE"))
_CRLF: Final = b"\r\n"
_GONE_STATUS: Final = 409
_NS: Final = 1_000_000_000


class WatchError(Exception):
    """JetStream refused to create the consumer (no such bucket ...)."""


class _Delivered(msgspec.Struct):
    consumer_seq: int = 0


class _ConsumerReply(msgspec.Struct):
    """``CONSUMER.CREATE`` and ``CONSUMER.INFO`` replies: the fields used."""

    name: str = ""
    num_pending: int = 0
    delivered: _Delivered = msgspec.field(default_factory=_Delivered)
    error: dict[str, Any] | None = None


_CONSUMER_REPLY: Final = msgspec.json.Decoder(_ConsumerReply)
_ENCODE: Final = msgspec.json.Encoder()


class KvWatch:
    """Every key of one KV bucket, then each change, on a wire connection.

    Args:
        wire: the connected wire client (it keeps its subscriptions across reconnects).
        bucket: the KV bucket's name.
        on_entry: called for each entry, inside ``data_received``: keep it short.
        on_loaded: called once, when the bucket's entries at start have all come.
        api_prefix: the JetStream API prefix (``$JS.API``, or a domain's).
        idle_heartbeat: seconds between the server's heartbeats while idle.
        timeout: seconds to wait for a JetStream API reply.
    """

    def __init__(
        self,
        wire: WireClient,
        bucket: str,
        on_entry: EntryCallback,
        *,
        on_loaded: Callable[[], None] | None = None,
        api_prefix: str = "$JS.API",
        idle_heartbeat: float = 5.0,
        timeout: float = 2.0,
    ) -> None:
        self._wire = wire
        self._stream = f"KV_{bucket}"
        self._prefix = f"$KV.{bucket}."
        self._prefix_len = len(self._prefix)
        self._on_entry = on_entry
        self._on_loaded = on_loaded
        self._api = api_prefix
        self._heartbeat = idle_heartbeat
        self._timeout = timeout
        self._sid: int | None = None
        self._consumer = ""
        self._dseq = 0
        #: The last revision (stream sequence) delivered.
        self.revision = 0
        self._loaded = False
        self._seen = 0.0
        self._restart: asyncio.Task[None] | None = None
        self._checking = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Consumers created (the first one and every recreation).
        self.consumers_created = 0

    async def start(self) -> None:
        """Create the consumer; entries start coming (the load is not awaited).

        Raises:
            WatchError: JetStream refused the consumer.
            TimeoutError, ConnectionError: no reply from JetStream.
        """
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._wire.add_listener(self._on_connection)
        await self._create()
        self._arm()

    async def close(self) -> None:
        """Stop: unsubscribe and delete the consumer (best effort)."""
        self._closed = True
        self._wire.remove_listener(self._on_connection)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._restart is not None:
            self._restart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart
        self._drop_consumer()

    @property
    def loaded(self) -> bool:
        """True once the entries present at start have all been delivered."""
        return self._loaded

    # -- the consumer ------------------------------------------------------------

    async def _create(self) -> None:
        """A new consumer on a new deliver subject, from the last revision seen + 1."""
        self._drop_consumer()
        deliver = "_WATCH." + secrets.token_hex(10)
        self._sid = self._wire.subscribe_raw(deliver, self._on_msg)
        self._dseq = 0
        config: dict[str, Any] = {
            "deliver_subject": deliver,
            "ack_policy": "none",
            "max_deliver": 1,
            "filter_subject": self._prefix + ">",
            "flow_control": False,
            "idle_heartbeat": int(self._heartbeat * _NS),
            "mem_storage": True,
            "num_replicas": 1,
            "replay_policy": "instant",
        }
        if self.revision:
            config["deliver_policy"] = "by_start_sequence"
            config["opt_start_seq"] = self.revision + 1
        else:
            config["deliver_policy"] = "last_per_subject"
        body = _ENCODE.encode({"stream_name": self._stream, "config": config})
        reply = await self._api_request(f"{self._api}.CONSUMER.CREATE.{self._stream}", body)
        if reply.error is not None:
            self._drop_consumer()
            raise WatchError(str(reply.error.get("description", reply.error)))
        self._consumer = reply.name
        self.consumers_created += 1
        self._seen_now()
        if reply.num_pending == 0:
            self._set_loaded()

    def _drop_consumer(self) -> None:
        if self._sid is not None:
            self._wire.unsubscribe(self._sid)
            self._sid = None
        if self._consumer:
            # Ephemeral: the server removes it anyway once it has no interest.
            subject = f"{self._api}.CONSUMER.DELETE.{self._stream}.{self._consumer}"
            self._wire.publish(subject, b"")
            self._consumer = ""

    async def _api_request(self, subject: str, body: bytes) -> _ConsumerReply:
        done: asyncio.Future[Reply | RequestFailure] = asyncio.get_running_loop().create_future()

        def settle(value: Reply | RequestFailure) -> None:
            if not done.done():
                done.set_result(value)

        if not self._wire.request(subject, body, settle, timeout=self._timeout):
            raise ConnectionError("the wire connection is down")
        reply = await done
        if reply is RequestFailure.TIMEOUT:
            raise TimeoutError(subject)
        if not isinstance(reply, Reply):
            raise ConnectionError("the wire connection dropped")
        if not reply.payload:
            raise WatchError(f"JetStream status {reply.status} on {subject}")
        return _CONSUMER_REPLY.decode(reply.payload)

    def _recreate(self, why: str) -> None:
        """Make the consumer again (in a task, retried until it works or a close)."""
        if self._closed or self._restart is not None:
            return
        log.info("kv watch %s: recreating the consumer (%s)", self._stream, why)
        self._drop_consumer()
        self._restart = asyncio.ensure_future(self._recreate_until_done())

    async def _recreate_until_done(self) -> None:
        delay = 0.05
        try:
            while not self._closed:
                try:
                    await self._create()
                    return
                except (WatchError, TimeoutError, ConnectionError, msgspec.DecodeError) as exc:
                    log.warning("kv watch %s: cannot recreate: %r", self._stream, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._heartbeat)
        finally:
            self._restart = None

    def _set_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            if self._on_loaded is not None:
                self._on_loaded()

    # -- messages ---------------------------------------------------------------

    def _on_msg(self, subject: bytes, reply: bytes, payload: bytes, headers: bytes) -> None:
        if headers:
            status = status_of(headers)
            if status is not None:
                self._on_status(reply, status)
                return
        parts = reply.split(b".")
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>, or
        # with <domain>.<account hash> after ACK (and a token at the end).
        at = 5 if len(parts) == 9 else 7
        try:
            sseq, dseq, pending = int(parts[at]), int(parts[at + 1]), int(parts[at + 3])
        except (IndexError, ValueError):
            log.warning("kv watch %s: unreadable ack subject %r", self._stream, reply)
            return
        if dseq != self._dseq + 1:
            if dseq <= self._dseq:
                return  # a duplicate
            self._recreate(f"consumer sequence {dseq} after {self._dseq}")
            return
        self._dseq = dseq
        self.revision = sseq
        self._seen_now()
        value = None if headers and _removed(headers) else payload
        self._on_entry(subject[self._prefix_len :].decode(), value, sseq)
        if not pending and not self._loaded:
            self._set_loaded()

    def _on_status(self, reply: bytes, status: int) -> None:
        if status == _HEARTBEAT_STATUS:
            self._seen_now()
            if reply:  # a flow-control request (not asked for): answer it anyway
                self._wire.publish(reply, b"")
            elif not self._checking and self._restart is None:
                # Idle: a message lost at the tail would never show as a gap.
                self._checking = True
                task = asyncio.ensure_future(self._check_delivered())
                task.add_done_callback(_retrieve)
        elif status == _GONE_STATUS:
            self._recreate(f"status {status}")

    async def _check_delivered(self) -> None:
        try:
            consumer = self._consumer
            if not consumer:
                return
            info = await self._api_request(
                f"{self._api}.CONSUMER.INFO.{self._stream}.{consumer}", b""
            )
            if consumer != self._consumer:
                return  # recreated meanwhile
            if info.error is not None:
                self._recreate(f"consumer info: {info.error.get('description')}")
            elif info.delivered.consumer_seq > self._dseq:
                self._recreate(f"delivered {info.delivered.consumer_seq}, got {self._dseq}")
        except (WatchError, TimeoutError, ConnectionError, msgspec.DecodeError):
            pass  # the stall timer is the fallback
        finally:
            self._checking = False

    def _seen_now(self) -> None:
        self._seen = self._running_loop().time()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _arm(self) -> None:
        self._timer = self._running_loop().call_later(self._heartbeat, self._check_stall)

    def _check_stall(self) -> None:
        if self._closed:
            return
        self._arm()
        silent = self._running_loop().time() - self._seen
        if silent > 3 * self._heartbeat and self._wire.connected:
            self._recreate(f"nothing for {silent:.1f} s")

    def _on_connection(self, up: bool) -> None:
        if up:
            self._recreate("reconnected")


def _removed(headers: bytes) -> bool:
    """True for a delete or purge marker's header block (names matched in any case)."""
    lowered = headers.lower()
    if _OPERATION not in lowered and _MARKER_REASON not in lowered:
        return False  # a put's headers (Nats-TTL, Nats-Msg-Id ...): nothing to split
    for line in headers.split(_CRLF)[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name = name.strip().lower()
        if name == _OPERATION and value.strip().upper() in _REMOVALS:
            return True
        if name == _MARKER_REASON:
            return True
    return False


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
