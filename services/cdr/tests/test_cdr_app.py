"""The CDR consumer against a real JetStream and a real SQLite file (in process)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from sipmesh_bus import kv, schema, subjects
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.schema import CallEvent
from sipmesh_cdr.api import CdrApi
from sipmesh_cdr.app import REASON_HEADER, CdrConsumer
from sipmesh_cdr.config import CdrSettings
from sipmesh_cdr.core import Cdr
from sipmesh_cdr.store import CdrQuery, CdrStore, SqliteStore
from sipmesh_cdr.synthetic import publish_subject, synthetic_call

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc: NatsClient = await nats.connect(nats_server.url)
    try:
        jsc = nc.jetstream()
        await kv.ensure_jetstream(jsc)
        yield jsc
    finally:
        await nc.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CdrStore]:
    s = SqliteStore(tmp_path / "cdr.sqlite3")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


class Running:
    def __init__(self, consumer: CdrConsumer, registry: CollectorRegistry) -> None:
        self.consumer = consumer
        self.registry = registry

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


Starter = Callable[..., Awaitable[Running]]


@pytest.fixture
async def running(js: JetStreamContext, store: CdrStore) -> AsyncIterator[Starter]:
    tasks: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**settings: object) -> Running:
        registry = CollectorRegistry()
        cfg = msgspec.structs.replace(CdrSettings(batch=50), **settings)
        consumer = CdrConsumer(js, store, cfg, registry=registry, clock=lambda: T0 + 10_000)
        await consumer.start()
        stop = asyncio.Event()
        tasks.append((stop, asyncio.create_task(consumer.run(stop))))
        return Running(consumer, registry)

    yield start
    for stop, task in tasks:
        stop.set()
        await asyncio.wait_for(task, 5)


async def publish(js: JetStreamContext, event: CallEvent, *, msg_id: str | None = None) -> None:
    await js.publish(
        publish_subject(event),
        schema.encode(event),
        headers={"Nats-Msg-Id": msg_id or event.event_id},
    )


async def wait_for(check: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


async def all_rows(store: CdrStore) -> list[Cdr]:
    return await store.query(CdrQuery(limit=1000))


async def test_cdr_app_n_calls_give_n_correct_rows(
    js: JetStreamContext, store: CdrStore, running: Starter
) -> None:
    run = await running()
    calls = [synthetic_call(n, T0, prefix=uuid.uuid4().hex[:6]) for n in range(60)]
    for call in calls:
        for event in call.events:
            await publish(js, event)

    async def done() -> bool:
        return await store.count(complete=True) == len(calls)

    await wait_for(done)
    rows = {r.call_id: r for r in await all_rows(store)}
    assert len(rows) == len(calls)
    for call in calls:
        cdr = rows[call.call_id]
        assert (cdr.disposition, cdr.status_code) == (call.disposition, call.status_code)
        assert cdr.billable == call.billable
        assert cdr.cost == pytest.approx(call.cost)
        assert cdr.carrier == "acme"
        assert set(cdr.event_ids) == {e.event_id for e in call.events}
    events = sum(len(c.events) for c in calls)
    assert run.metric("sipmesh_cdr_events_total", outcome="applied") == events


async def test_cdr_app_redelivered_events_change_nothing(
    js: JetStreamContext, store: CdrStore, running: Starter
) -> None:
    run = await running()
    call = synthetic_call(0, T0, prefix=uuid.uuid4().hex[:6])
    for event in call.events:
        await publish(js, event)

    async def complete() -> bool:
        return await store.count(complete=True) == 1

    await wait_for(complete)
    before = await all_rows(store)
    for event in call.events:  # a second publisher with other msg ids: stored twice
        await publish(js, event, msg_id=f"again-{event.event_id}")

    async def seen_all() -> bool:
        return run.metric("sipmesh_cdr_events_total", outcome="duplicate") == len(call.events)

    await wait_for(seen_all)
    assert await all_rows(store) == before  # not even the version moved


async def test_cdr_app_failed_ack_does_not_stop_the_consumer(
    js: JetStreamContext, store: CdrStore, running: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ack that fails (the connection went) leaves the loop running: the events
    come back after ack_wait and later calls are still recorded."""
    real_ack = Msg.ack
    failures: list[str] = []

    async def flaky_ack(self: Msg) -> None:
        if not failures:
            failures.append(self.subject)
            raise nats.errors.ConnectionClosedError
        await real_ack(self)

    monkeypatch.setattr(Msg, "ack", flaky_ack)
    await running(ack_wait=1.0)
    prefix = uuid.uuid4().hex[:6]
    first, second = (synthetic_call(n, T0, prefix=prefix) for n in range(2))
    for event in first.events:
        await publish(js, event)

    async def complete(n: int) -> bool:
        return await store.count(complete=True) == n

    await wait_for(lambda: complete(1))
    for event in second.events:
        await publish(js, event)
    await wait_for(lambda: complete(2))
    assert len(failures) == 1
    assert {r.call_id for r in await all_rows(store)} == {first.call_id, second.call_id}


@pytest.mark.parametrize(
    "error",
    [TimeoutError(), nats.errors.TimeoutError(), RuntimeError("boom")],
    ids=["asyncio-timeout", "nats-timeout", "other"],
)
async def test_cdr_app_fetch_errors_do_not_stop_the_consumer(
    js: JetStreamContext,
    store: CdrStore,
    running: Starter,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    """nats-py's fetch raises a bare asyncio.TimeoutError when the server's 408
    comes at the deadline; that, like any fetch error, must not end the loop."""
    real_fetch = JetStreamContext.PullSubscription.fetch
    raised: list[Exception] = []

    async def flaky_fetch(self: JetStreamContext.PullSubscription, *a: Any, **kw: Any) -> Any:
        if not raised:
            raised.append(error)
            raise error
        return await real_fetch(self, *a, **kw)

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", flaky_fetch)
    await running()
    call = synthetic_call(0, T0, prefix=uuid.uuid4().hex[:6])
    for event in call.events:
        await publish(js, event)

    async def complete() -> bool:
        return await store.count(complete=True) == 1

    await wait_for(complete)
    assert raised == [error]


async def test_cdr_app_poison_goes_to_dead_letters_and_the_stream_moves_on(
    js: JetStreamContext, store: CdrStore, running: Starter
) -> None:
    run = await running()
    dead = await js.subscribe(subjects.CDR_DEAD_LETTER, stream=kv.STREAM_CDR_DEAD)
    call = synthetic_call(0, T0, prefix=uuid.uuid4().hex[:6])
    await js.publish(subjects.call_event("attempt"), b"\xc1 not msgpack")
    for event in call.events:
        await publish(js, event)
    # A second answer of a call that was answered once already.
    answered = next(e for e in call.events if e.kind == "answered")
    twice = msgspec.structs.replace(answered, event_id=call.call_id + ".answered.again")
    await publish(js, twice)
    after = synthetic_call(1, T0, prefix=uuid.uuid4().hex[:6])
    for event in after.events:
        await publish(js, event)

    first = await dead.next_msg(timeout=10)
    second = await dead.next_msg(timeout=10)
    assert first.subject == subjects.cdr_dead_letter("attempt")
    assert first.headers is not None
    assert first.headers[REASON_HEADER].startswith("undecodable")
    assert first.data == b"\xc1 not msgpack"
    assert second.subject == subjects.cdr_dead_letter("answered")
    assert second.headers is not None
    assert "answered twice" in second.headers[REASON_HEADER]

    async def both() -> bool:
        return await store.count(complete=True) == 2

    await wait_for(both)
    assert run.metric("sipmesh_cdr_dead_letters_total") == 2
    info = await js.consumer_info(kv.STREAM_CALLS, subjects.QUEUE_CDR)
    await wait_for(lambda: True)
    assert info.num_pending == 0


async def test_cdr_app_sweep_closes_calls_without_an_end(
    js: JetStreamContext, store: CdrStore, running: Starter
) -> None:
    run = await running(max_call_duration=3600.0, sweep_interval=0.2)
    call = synthetic_call(0, T0, prefix=uuid.uuid4().hex[:6])
    *answered, bye = call.events
    assert bye.kind == "ended"
    for event in answered:  # answered, no BYE
        await publish(js, event)

    async def closed() -> bool:
        rows = await all_rows(store)
        return bool(rows) and (rows[0].disposition, rows[0].duration) == ("timeout", 3600.0)

    await wait_for(closed)
    (cdr,) = await all_rows(store)
    assert (cdr.disposition, cdr.hangup_side, cdr.duration) == ("timeout", "system", 3600.0)
    assert run.metric("sipmesh_cdr_timeouts_total") == 1
    await publish(js, bye)  # the BYE shows up after all: the real end wins

    async def corrected() -> bool:
        return (await all_rows(store))[0].disposition == "answered"

    await wait_for(corrected)


async def http_get(port: int, target: str) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_cdr_api_filters_and_pages(store: CdrStore) -> None:
    rows = [
        Cdr(
            call_id=f"c{i:02d}",
            caller=f"u{i % 3}@example.com",
            caller_user=f"u{i % 3}",
            callee=f"sip:+4930{i:04d}@example.com",
            callee_user=f"+4930{i:04d}",
            callee_number=f"+4930{i:04d}",
            start_at=T0 + i,
            complete=True,
            disposition="answered",
        )
        for i in range(30)
    ]
    await store.commit(rows)
    api = CdrApi(store, host="127.0.0.1", port=0)
    await api.start()
    try:
        status, page = await http_get(api.port, "/cdrs?limit=10&offset=10")
        assert status == 200
        assert [c["call_id"] for c in page["cdrs"]] == [f"c{i:02d}" for i in range(10, 20)]
        assert page["next_offset"] == 20
        _, last = await http_get(api.port, "/cdrs?limit=10&offset=25")
        assert (len(last["cdrs"]), last["next_offset"]) == (5, None)
        _, by_caller = await http_get(api.port, "/cdrs?caller=u1&limit=100")
        assert {c["caller"] for c in by_caller["cdrs"]} == {"u1@example.com"}
        assert len(by_caller["cdrs"]) == 10
        _, by_callee = await http_get(api.port, "/cdrs?callee=%2B49300007")
        assert [c["call_id"] for c in by_callee["cdrs"]] == ["c07"]
        since = "2023-11-14T22:13:25Z"  # T0 + 5
        _, window = await http_get(api.port, f"/cdrs?since={since}&until={T0 + 8}")
        assert [c["call_id"] for c in window["cdrs"]] == ["c05", "c06", "c07"]
        assert "event_ids" not in window["cdrs"][0]
        for bad in ("/cdrs?limit=0", "/cdrs?limit=x", "/cdrs?since=yesterday", "/cdrs?offset=-1"):
            status, body = await http_get(api.port, bad)
            assert status == 400, bad
            assert body["error"]
        status, _ = await http_get(api.port, "/other")
        assert status == 404
    finally:
        await api.close()


class FakeMsg:
    """What process() uses of a JetStream message."""

    def __init__(self, event: CallEvent) -> None:
        self.data = schema.encode(event)
        self.subject = publish_subject(event)
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


class FakeSub:
    def __init__(self) -> None:
        self.pending = 0

    async def consumer_info(self) -> Any:
        return SimpleNamespace(num_pending=self.pending, num_ack_pending=0)


async def test_cdr_app_lag_seconds_is_age_of_newest_acked_event_while_a_backlog_waits(
    store: CdrStore,
) -> None:
    registry, now = CollectorRegistry(), [T0 + 100.0]
    consumer = CdrConsumer(
        cast(JetStreamContext, None),
        store,
        CdrSettings(sweep_interval=3600.0),
        registry=registry,
        clock=lambda: now[0],
    )
    sub = FakeSub()
    consumer._sub = cast(JetStreamContext.PullSubscription, sub)

    async def lag(pending: int) -> float | None:
        sub.pending = pending
        consumer._last_lag = -1e9  # look now, not after _LAG_EVERY
        await consumer._housekeeping()
        return registry.get_sample_value("sipmesh_cdr_consumer_lag_seconds")

    assert registry.get_sample_value("sipmesh_cdr_consumer_lag_seconds") == 0.0
    assert await lag(5) == 0.0  # nothing processed yet: no base to measure from
    call = synthetic_call(0, T0, prefix=uuid.uuid4().hex[:6])
    msgs = [FakeMsg(e) for e in call.events[:2]]
    await consumer.process(cast(list[Msg], msgs))
    assert all(m.acked for m in msgs)
    newest = max(e.at for e in call.events[:2])
    assert await lag(3) == pytest.approx(T0 + 100.0 - newest)
    now[0] += 7.0
    assert await lag(3) == pytest.approx(T0 + 107.0 - newest)
    assert await lag(0) == 0.0  # caught up: no lag however old the last event is
