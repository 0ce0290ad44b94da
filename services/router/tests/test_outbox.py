"""The Outbox: pipelined publishes, acks by sequence, retries, per-key order, drain."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors

from sipmesh_bus.wire import HeaderBlock, PayloadTooLargeError
from sipmesh_router.outbox import AckMessage, Outbox, Write

OK = b'{"stream":"CALLS","seq":1}'


@dataclass
class Ack:
    subject: str
    data: bytes


@dataclass
class Sent:
    subject: str
    payload: bytes
    reply: str
    headers: dict[str, str] | bytes | None


class FakeClient:
    """Records publishes; the test answers them with :meth:`ack`."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.subscribed: list[str] = []
        self.cb: Callable[[AckMessage], Awaitable[None]] | None = None
        self.refuse = 0
        #: Publishes to fail with a NATS error before accepting again.

    def new_inbox(self) -> str:
        return "_INBOX.t"

    async def subscribe(
        self,
        subject: str,
        queue: str = "",
        cb: Callable[[AckMessage], Awaitable[None]] | None = None,
    ) -> object:
        await asyncio.sleep(0)  # a real subscribe suspends: another submit may come in
        self.subscribed.append(subject)
        self.cb = cb
        return object()

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        if self.refuse:
            self.refuse -= 1
            raise nats.errors.OutboundBufferLimitError
        self.sent.append(Sent(subject, payload, reply, headers))

    async def ack(self, sent: Sent, data: bytes = OK) -> None:
        assert self.cb is not None
        await self.cb(Ack(sent.reply, data))


class Log:
    def __init__(self) -> None:
        self.done: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def ok(self, name: str) -> Callable[[], None]:
        return lambda: self.done.append(name)

    def bad(self, name: str) -> Callable[[BaseException], None]:
        return lambda exc: self.failed.append((name, type(exc).__name__))


async def submit(box: Outbox, log: Log, key: str, name: str) -> None:
    await box.submit(
        key,
        f"subj.{name}",
        name.encode(),
        headers={"Nats-Msg-Id": name},
        on_done=log.ok(name),
        on_failure=log.bad(name),
    )


async def test_submit_publishes_at_once_and_the_ack_completes_it() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client)
    await submit(box, log, "k", "w")
    assert client.subscribed == ["_INBOX.t.*"]
    assert [(s.subject, s.payload, s.reply, s.headers) for s in client.sent] == [
        ("subj.w", b"w", "_INBOX.t.1", {"Nats-Msg-Id": "w"})
    ]
    assert len(box) == 1
    assert log.done == []
    await client.ack(client.sent[0])
    assert log.done == ["w"]
    assert len(box) == 0
    await box.flush()


async def test_writes_of_other_keys_are_pipelined() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client)
    for name in ("a", "b", "c"):
        await submit(box, log, name, name)
    assert [s.reply for s in client.sent] == ["_INBOX.t.1", "_INBOX.t.2", "_INBOX.t.3"]
    for sent in reversed(client.sent):
        await client.ack(sent)
    assert log.done == ["c", "b", "a"]


async def test_a_write_waits_for_the_ack_of_the_previous_write_of_its_key() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client)
    await submit(box, log, "k", "first")
    await submit(box, log, "k", "second")
    await submit(box, log, "other", "third")
    assert [s.subject for s in client.sent] == ["subj.first", "subj.third"]
    assert len(box) == 3
    await client.ack(client.sent[0])
    await eventually(lambda: len(client.sent) == 3)
    assert [s.subject for s in client.sent] == ["subj.first", "subj.third", "subj.second"]
    await client.ack(client.sent[2])
    await client.ack(client.sent[1])
    assert log.done == ["first", "second", "third"]
    assert len(box) == 0


async def test_an_error_ack_is_retried_after_the_backoff_then_reported() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client, backoff=(0.0, 0.0))
    await submit(box, log, "k", "w")
    await submit(box, log, "k", "next")
    for attempt in range(1, 4):
        await eventually(lambda: len(client.sent) == attempt)  # noqa: B023
        await client.ack(client.sent[-1], b'{"error":{"code":503,"description":"x"}}')
    assert log.failed == [("w", "WriteFailedError")]
    assert box.retries == 2
    # The key's next write goes once the first gave up.
    await eventually(lambda: client.sent[-1].subject == "subj.next")
    await client.ack(client.sent[-1])
    assert log.done == ["next"]
    assert len(box) == 0


async def test_no_responders_is_a_failure() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client, backoff=())
    await submit(box, log, "k", "w")
    await client.ack(client.sent[0], b"")
    assert log.failed == [("w", "WriteFailedError")]


async def test_a_write_without_an_ack_times_out_and_goes_again_and_a_late_ack_is_ignored() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client, ack_timeout=0.02, backoff=(0.0,))
    await submit(box, log, "k", "w")
    await eventually(lambda: len(client.sent) == 2)
    assert client.sent[1].reply != client.sent[0].reply
    await client.ack(client.sent[0])  # the first attempt's ack, too late
    assert log.done == []
    await client.ack(client.sent[1])
    assert log.done == ["w"]
    assert box.retries == 1
    await box.flush()


async def test_a_refused_publish_is_retried() -> None:
    client, log = FakeClient(), Log()
    client.refuse = 1
    box = Outbox(client, backoff=(0.0,))
    await submit(box, log, "k", "w")
    assert client.sent == []
    await eventually(lambda: len(client.sent) == 1)
    await client.ack(client.sent[0])
    assert log.done == ["w"]
    assert box.retries == 1


async def test_submit_waits_for_room_when_full() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client, max_pending=2)
    await submit(box, log, "a", "a")
    await submit(box, log, "b", "b")
    third = asyncio.create_task(submit(box, log, "c", "c"))
    await asyncio.sleep(0.01)
    assert not third.done()
    assert len(client.sent) == 2
    await client.ack(client.sent[0])
    await asyncio.wait_for(third, 1.0)
    assert client.sent[-1].subject == "subj.c"


async def test_drain_waits_then_gives_up_on_what_is_left() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client)
    await submit(box, log, "a", "acked")
    await submit(box, log, "b", "lost")
    await submit(box, log, "b", "queued")

    async def ack_first() -> None:
        await asyncio.sleep(0.01)
        await client.ack(client.sent[0])

    acker = asyncio.create_task(ack_first())
    assert await box.drain(0.1) == 2
    await acker
    assert log.done == ["acked"]
    assert sorted(log.failed) == [("lost", "TimeoutError"), ("queued", "TimeoutError")]
    assert len(box) == 0


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_lingering_writes_leave_together_after_the_linger() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client, linger=0.02)
    await submit(box, log, "a", "a")
    await submit(box, log, "b", "b")
    await submit(box, log, "a", "a2")
    assert client.sent == []
    assert len(box) == 3
    await eventually(lambda: len(client.sent) == 2)
    assert [s.subject for s in client.sent] == ["subj.a", "subj.b"]
    await client.ack(client.sent[0])  # a2 waited for a's ack, then lingers too
    assert len(client.sent) == 2
    await eventually(lambda: len(client.sent) == 3)
    assert client.sent[2].subject == "subj.a2"
    for sent in client.sent[1:]:
        await client.ack(sent)
    await box.flush()
    assert log.done == ["a", "b", "a2"]


async def test_drain_gives_up_on_a_lingering_batch_it_cannot_wait_for() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client, linger=10.0)
    await submit(box, log, "a", "a")
    assert await box.drain(0.01) == 1
    assert log.failed == [("a", "TimeoutError")]
    await asyncio.sleep(0)
    assert client.sent == []


class FakeWire:
    """Publishes and subscribes synchronously, as ``sipmesh_bus.wire.WireClient`` does."""

    def __init__(self) -> None:
        self.subs: list[tuple[str, Callable[[bytes, bytes, bytes, int | None], None]]] = []
        self.log: list[str] = []
        #: "SUB <subject>" and "PUB <subject>" in the order they were queued.
        self.sent: list[Sent] = []
        self.down = 0
        #: Publishes to refuse (reconnecting: returns False) before taking them again.
        self.too_large = False

    def subscribe(
        self,
        subject: str,
        callback: Callable[[bytes, bytes, bytes, int | None], None],
        queue: str | None = None,
    ) -> int:
        self.subs.append((subject, callback))
        self.log.append(f"SUB {subject}")
        return len(self.subs)

    def publish(
        self,
        subject: str | bytes,
        payload: bytes,
        reply: str | bytes | None = None,
        *,
        headers: HeaderBlock | None = None,
    ) -> bool:
        assert isinstance(subject, str)
        assert isinstance(reply, str)
        if self.too_large:
            raise PayloadTooLargeError("too large")
        if self.down:
            self.down -= 1
            return False
        self.log.append(f"PUB {subject}")
        block = headers if headers is None or isinstance(headers, bytes) else dict(headers)
        self.sent.append(Sent(subject, payload, reply, block))
        return True

    def ack(self, sent: Sent, data: bytes = OK, status: int | None = None) -> None:
        [(_, callback)] = self.subs
        callback(sent.reply.encode(), b"", data, status)


async def test_wire_publishes_and_takes_the_acks_without_nats_py() -> None:
    client, wire, log = FakeClient(), FakeWire(), Log()
    box = Outbox(client, wire=wire)
    await submit(box, log, "k", "ok")
    await submit(box, log, "j", "gone")
    assert client.subscribed == []
    assert client.sent == []
    # The SUB goes first on the same connection: the server has it before any ack.
    assert wire.log == ["SUB _INBOX.t.*", "PUB subj.ok", "PUB subj.gone"]
    assert [(s.reply, s.headers) for s in wire.sent] == [
        ("_INBOX.t.1", {"Nats-Msg-Id": "ok"}),
        ("_INBOX.t.2", {"Nats-Msg-Id": "gone"}),
    ]
    wire.ack(wire.sent[0])
    wire.ack(wire.sent[1], b"", 503)  # no responders
    assert log.done == ["ok"]
    assert len(box) == 1  # "gone" waits for its retry
    await box.drain(0.0)
    assert log.failed == [("gone", "TimeoutError")]


async def test_wire_sends_the_next_write_of_a_key_inside_the_ack() -> None:
    client, wire, log = FakeClient(), FakeWire(), Log()
    box = Outbox(client, wire=wire)
    await submit(box, log, "k", "first")
    await submit(box, log, "k", "second")
    assert [s.subject for s in wire.sent] == ["subj.first"]
    wire.ack(wire.sent[0])
    assert [s.subject for s in wire.sent] == ["subj.first", "subj.second"]  # no task, no wait
    wire.ack(wire.sent[1])
    assert log.done == ["first", "second"]
    assert len(box) == 0


async def test_wire_lingering_writes_are_queued_together() -> None:
    client, wire, log = FakeClient(), FakeWire(), Log()
    box = Outbox(client, wire=wire, linger=0.02)
    await submit(box, log, "a", "a")
    await submit(box, log, "b", "b")
    assert wire.sent == []
    await eventually(lambda: len(wire.sent) == 2)
    for sent in wire.sent:
        wire.ack(sent)
    await box.flush()
    assert log.done == ["a", "b"]


async def test_wire_down_write_goes_again_once_its_ack_is_overdue() -> None:
    client, wire, log = FakeClient(), FakeWire(), Log()
    wire.down = 1
    box = Outbox(client, wire=wire, ack_timeout=0.02, backoff=(0.0,))
    await submit(box, log, "k", "w")
    assert wire.sent == []
    await eventually(lambda: len(wire.sent) == 1)
    wire.ack(wire.sent[0])
    assert log.done == ["w"]
    assert box.retries == 1


async def test_wire_refusing_a_payload_is_a_failed_attempt() -> None:
    client, wire, log = FakeClient(), FakeWire(), Log()
    wire.too_large = True
    box = Outbox(client, wire=wire, backoff=(0.0,))
    await submit(box, log, "k", "w")
    await eventually(lambda: bool(log.failed))
    assert log.failed == [("w", "PayloadTooLargeError")]
    assert box.retries == 1
    assert len(box) == 0


async def test_concurrent_first_submits_subscribe_once() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client)
    await asyncio.gather(submit(box, log, "a", "a"), submit(box, log, "b", "b"))
    assert client.subscribed == ["_INBOX.t.*"]
    assert [s.reply for s in client.sent] == ["_INBOX.t.1", "_INBOX.t.2"]


BLOCK = b"NATS/1.0\r\nKV-Operation: DEL\r\nNats-TTL: 60\r\n\r\n"


async def test_wire_gets_a_ready_header_block_as_it_is() -> None:
    client, wire, log = FakeClient(), FakeWire(), Log()
    box = Outbox(client, wire=wire)
    await box.submit("k", "s", b"", headers=BLOCK, on_done=log.ok("w"), on_failure=log.bad("w"))
    assert [(s.subject, s.headers) for s in wire.sent] == [("s", BLOCK)]
    wire.ack(wire.sent[0])
    assert log.done == ["w"]


async def test_nats_py_gets_a_ready_header_block_as_a_dict() -> None:
    client, log = FakeClient(), Log()
    box = Outbox(client)
    await box.submit("k", "s", b"", headers=BLOCK, on_done=log.ok("w"), on_failure=log.bad("w"))
    assert [s.headers for s in client.sent] == [{"KV-Operation": "DEL", "Nats-TTL": "60"}]
    await client.ack(client.sent[0])
    assert log.done == ["w"]


def write_of(log: Log, key: str, name: str) -> Write:
    return Write(key, f"subj.{name}", name.encode(), None, log.ok(name), log.bad(name))


async def test_offer_queues_without_a_coroutine_on_the_wire() -> None:
    client, wire, log = FakeClient(), FakeWire(), Log()
    box = Outbox(client, wire=wire)
    assert not box.offer(write_of(log, "k", "early"))  # no ack subscription yet
    await box.start()
    assert box.offer(write_of(log, "k", "first"))
    assert box.offer(write_of(log, "k", "second"))  # behind the first, as with submit
    assert [s.subject for s in wire.sent] == ["subj.first"]
    wire.ack(wire.sent[0])
    wire.ack(wire.sent[1])
    assert log.done == ["first", "second"]
    assert len(box) == 0


async def test_offer_refuses_what_put_would_wait_for() -> None:
    client, wire, log = FakeClient(), FakeWire(), Log()
    box = Outbox(client, wire=wire, max_pending=1)
    await box.start()
    assert box.offer(write_of(log, "a", "a"))
    assert not box.offer(write_of(log, "b", "full"))
    waiting = asyncio.create_task(box.put(write_of(log, "b", "b")))
    await asyncio.sleep(0)
    wire.ack(wire.sent[0])
    # Room again, but the waiting put goes first: an offer now would overtake it.
    assert not box.offer(write_of(log, "b", "c"))
    await waiting
    assert [s.subject for s in wire.sent] == ["subj.a", "subj.b"]
    nats_py = Outbox(client)  # no wire, no linger: publishing awaits nats-py
    await nats_py.start()
    assert not nats_py.offer(write_of(log, "k", "x"))
