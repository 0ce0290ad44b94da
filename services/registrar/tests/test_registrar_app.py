"""The registrar's NATS shell against a real nats-server with JetStream."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import pytest
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from sipmesh_bus import kv, records
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.records import aor_key
from sipmesh_bus.runtime import Service
from sipmesh_bus.schema import Drop, SendResponse, decode_reply, encode
from sipmesh_bus.subjects import QUEUE_REGISTRAR, SIP_REGISTER
from sipmesh_bus.wire import Reply, RequestFailure, WireClient
from sipmesh_registrar.app import Registrar
from sipmesh_registrar.config import RegistrarConfig, RegistrarSettings
from sipmesh_registrar.model import KEY_TTL_MARGIN
from sipmsg import Response, parse

pytestmark = pytest.mark.integration

SECRET = b"shared-secret-of-every-replica!!"
PASSWORD = "pa55word"
_users = itertools.count()


def config(url: str, **settings: Any) -> RegistrarConfig:
    base: dict[str, Any] = {"domain": "example.com", "min_expires": 1}
    base.update(settings)
    return RegistrarConfig(nats=NatsConfig(url=url), registrar=RegistrarSettings(**base))


@pytest.fixture
def user(kit: Any) -> str:
    """A fresh user name per test, so tests sharing the server do not collide."""
    return f"user{next(_users)}"


async def add_subscriber(js: JetStreamContext, kit: Any, user: str) -> None:
    bucket = await js.key_value(kv.BUCKET_SUBSCRIBERS)
    sub = kit.subscriber(user, PASSWORD)
    await bucket.put(aor_key(user, "example.com"), records.encode_record(sub))


@pytest.fixture
async def wire(nats_url: str) -> AsyncIterator[WireClient]:
    """The hot-path connection the registrar's writes and direct reads go on."""
    client = WireClient(NatsConfig(url=nats_url), name="registrar-test")
    await client.connect()
    yield client
    await client.close()


async def replica(
    js: JetStreamContext, wire: WireClient | None, url: str, **settings: Any
) -> Registrar:
    registrar = Registrar(
        config(url, **settings), js, secret=SECRET, registry=CollectorRegistry(), wire=wire
    )
    await registrar.start()
    await registrar.wait_loaded(5.0)
    return registrar


async def knows(registrar: Registrar, user: str) -> None:
    key = aor_key(user, "example.com")
    for _ in range(200):
        if key in registrar._subscribers:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{user} never reached the subscriber cache")


async def send(registrar: Registrar, kit: Any, req: Any, **kw: Any) -> Response:
    reply = await registrar.handle(kit.envelope(req, **kw))
    assert isinstance(reply, SendResponse), reply
    response = parse(reply.data)
    assert isinstance(response, Response)
    return response


async def stored_contacts(js: JetStreamContext, user: str) -> set[str]:
    bucket = await js.key_value(kv.BUCKET_LOCATION)
    entry = await bucket.get(aor_key(user, "example.com"))
    assert entry.value is not None
    return {b.contact for b in records.decode_binding_set(entry.value).bindings}


async def test_app_challenge_then_register_stores_binding(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    await add_subscriber(js, kit, user)
    registrar = await replica(js, wire, nats_url)
    try:
        await knows(registrar, user)
        ua = kit.UA(user=user)
        first = await send(registrar, kit, ua.register())
        assert first.status == 401
        ok = await send(registrar, kit, ua.register(authorization=ua.answer(first, PASSWORD)))
        assert ok.status == 200
        assert ok.headers.get_all("contact") == [
            f"<sip:{user}@192.0.2.7:5060>;expires=3600".encode()
        ]
        assert await stored_contacts(js, user) == {f"sip:{user}@192.0.2.7:5060"}
        metric = registrar.metrics.registrations.labels("ok").value
        assert metric == 1
    finally:
        await registrar.close()


async def test_app_over_nats_request_reply(
    js: JetStreamContext, nats_url: str, kit: Any, user: str
) -> None:
    cfg = config(nats_url, auth=False)
    svc = Service("registrar", cfg, registry=CollectorRegistry(), install_signal_handlers=False)
    await svc.start()
    registrar = Registrar(cfg, svc.js, secret=SECRET, registry=svc.registry, wire=svc.wire)
    await registrar.start()
    try:
        await svc.serve(
            SIP_REGISTER,
            registrar.handle,
            queue=QUEUE_REGISTRAR,
            decode=lambda b: msgspec.msgpack.decode(b, type=type(kit.envelope(b""))),
            on_error=registrar.on_error,
        )
        ua = kit.UA(user=user)
        msg = await svc.nc.request(SIP_REGISTER, encode(kit.envelope(ua.register())), timeout=5)
        reply = decode_reply(msg.data)
        assert isinstance(reply, SendResponse)
        response = parse(reply.data)
        assert isinstance(response, Response)
        assert response.status == 200
        garbage = await svc.nc.request(
            SIP_REGISTER, encode(kit.envelope(b"not sip at all\r\n\r\n")), timeout=5
        )
        assert isinstance(decode_reply(garbage.data), Drop)
    finally:
        await registrar.close()
        await svc.close()


async def test_app_concurrent_replicas_lose_no_binding(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    one = await replica(js, wire, nats_url, auth=False, max_contacts=100)
    # One on the wire, one on nats-py's connection (the fallback without a wire).
    two = await replica(js, None, nats_url, auth=False, max_contacts=100)
    try:
        phones = [
            kit.UA(user=user, call_id=f"call-{i}", contact_host=f"192.0.2.{i + 1}:5060")
            for i in range(24)
        ]
        responses = await asyncio.gather(
            *(
                send((one, two)[i % 2], kit, phone.register(), source_port=6000 + i)
                for i, phone in enumerate(phones)
            )
        )
        assert {r.status for r in responses} == {200}
        assert await stored_contacts(js, user) == {
            f"sip:{user}@192.0.2.{i + 1}:5060" for i in range(24)
        }
        conflicts = one.metrics.kv_conflicts._value.get() + two.metrics.kv_conflicts._value.get()
        assert conflicts > 0  # the race did happen, and was resolved
    finally:
        await one.close()
        await two.close()


async def test_app_nonce_count_replay_refused_across_replicas(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    await add_subscriber(js, kit, user)
    one = await replica(js, wire, nats_url)
    two = await replica(js, wire, nats_url)
    try:
        await knows(one, user)
        await knows(two, user)
        ua = kit.UA(user=user)
        challenge = await send(one, kit, ua.register())
        auth = ua.answer(challenge, PASSWORD)
        # The same request, captured and sent again to the other replica.
        req = ua.register(authorization=auth)
        assert (await send(two, kit, req)).status == 200
        replay = await send(one, kit, req)
        assert replay.status == 401
        assert not replay.www_authenticate[0].stale
        assert one.metrics.auth_failures.labels("replay")._value.get() == 1
        # The next nonce-count of the same nonce is fine, on either replica.
        fresh = ua.register(authorization=ua.answer(challenge, PASSWORD, nc=2))
        assert (await send(one, kit, fresh)).status == 200
    finally:
        await one.close()
        await two.close()


async def test_app_expired_bindings_not_returned(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    registrar = await replica(js, wire, nats_url, auth=False)
    try:
        ua = kit.UA(user=user)
        short = ua.register([f"<sip:{user}@192.0.2.1>;expires=1", f"<sip:{user}@192.0.2.2>"])
        assert (await send(registrar, kit, short)).status == 200
        await asyncio.sleep(1.2)
        query = await send(registrar, kit, ua.register([]))
        assert query.status == 200
        assert [c.split(b";")[0] for c in query.headers.get_all("contact")] == [
            f"<sip:{user}@192.0.2.2>".encode()
        ]
    finally:
        await registrar.close()


async def test_app_unknown_user_and_wrong_password_answer_alike(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    await add_subscriber(js, kit, user)
    registrar = await replica(js, wire, nats_url)
    try:
        await knows(registrar, user)
        answers = []
        for name, password in ((user, "wrong"), (f"{user}-ghost", PASSWORD)):
            ua = kit.UA(user=name)
            challenge = await send(registrar, kit, ua.register())
            answers.append(
                await send(
                    registrar, kit, ua.register(authorization=ua.answer(challenge, password))
                )
            )
        wrong, unknown = answers
        assert wrong.status == unknown.status == 401
        assert [n for n, _, _ in wrong.headers] == [n for n, _, _ in unknown.headers]
        failures = registrar.metrics.auth_failures
        assert failures.labels("wrong_password")._value.get() == 1
        assert failures.labels("unknown_user")._value.get() == 1
    finally:
        await registrar.close()


async def test_app_unregister_deletes_key(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    registrar = await replica(js, wire, nats_url, auth=False)
    try:
        ua = kit.UA(user=user)
        assert (await send(registrar, kit, ua.register())).status == 200
        gone = await send(registrar, kit, ua.register(["*"], expires=0))
        assert (gone.status, gone.headers.get_all("contact")) == (200, [])
        again = await send(registrar, kit, ua.register())
        assert again.status == 200  # a deleted key is created again
        assert await stored_contacts(js, user) == {f"sip:{user}@192.0.2.7:5060"}
    finally:
        await registrar.close()


# --- the location cache and replay detection in the CAS write ----------------------------


async def cached_revision(registrar: Registrar, key: str, at_least: int) -> None:
    for _ in range(200):
        if registrar._locations.get(key, (None, 0))[1] >= at_least:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} never reached revision {at_least} in the cache")


async def stored_revision(js: JetStreamContext, user: str) -> int:
    bucket = await js.key_value(kv.BUCKET_LOCATION)
    entry = await bucket.get(aor_key(user, "example.com"))
    return entry.revision or 0


async def test_app_location_cache_sees_another_replicas_write(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    one = await replica(js, wire, nats_url, auth=False)
    two = await replica(js, wire, nats_url, auth=False)
    try:
        assert await two.ready()
        first = kit.UA(user=user, call_id="c1", contact_host="192.0.2.1:5060")
        assert (await send(one, kit, first.register())).status == 200
        key = aor_key(user, "example.com")
        await cached_revision(two, key, await stored_revision(js, user))
        value, _ = two._cached(key)
        assert value is not None
        assert [b.contact for b in value.bindings] == [f"sip:{user}@192.0.2.1:5060"]
        # Two writes against its cache, with no conflict: it was up to date.
        second = kit.UA(user=user, call_id="c2", contact_host="192.0.2.2:5060")
        assert (await send(two, kit, second.register())).status == 200
        assert two.metrics.kv_conflicts._value.get() == 0
        assert await stored_contacts(js, user) == {
            f"sip:{user}@192.0.2.1:5060",
            f"sip:{user}@192.0.2.2:5060",
        }
        # A delete reaches the other cache too.
        assert (await send(one, kit, first.register(["*"], expires=0))).status == 200
        assert (await send(one, kit, second.register(["*"], expires=0))).status == 200
        for _ in range(200):
            if two._cached(key)[0] is None:
                break
            await asyncio.sleep(0.01)
        assert two._cached(key)[0] is None
    finally:
        await one.close()
        await two.close()


async def test_app_stale_cache_conflict_rereads_and_keeps_both(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    registrar = await replica(js, wire, nats_url, auth=False)
    try:
        key = aor_key(user, "example.com")
        first = kit.UA(user=user, call_id="c1", contact_host="192.0.2.1:5060")
        assert (await send(registrar, kit, first.register())).status == 200
        stale = registrar._locations[key]
        second = kit.UA(user=user, call_id="c2", contact_host="192.0.2.2:5060")
        assert (await send(registrar, kit, second.register())).status == 200
        # The cache goes back to the first write (a watch far behind).
        registrar._locations[key] = stale
        third = kit.UA(user=user, call_id="c3", contact_host="192.0.2.3:5060")
        assert (await send(registrar, kit, third.register())).status == 200
        assert registrar.metrics.kv_conflicts._value.get() == 1
        assert await stored_contacts(js, user) == {
            f"sip:{user}@192.0.2.{i}:5060" for i in (1, 2, 3)
        }
        assert registrar._locations[key][1] == await stored_revision(js, user)
    finally:
        await registrar.close()


async def test_app_replay_refused_on_the_same_replica(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    await add_subscriber(js, kit, user)
    registrar = await replica(js, wire, nats_url)
    try:
        await knows(registrar, user)
        ua = kit.UA(user=user)
        challenge = await send(registrar, kit, ua.register())
        req = ua.register(authorization=ua.answer(challenge, PASSWORD, nc=2))
        assert (await send(registrar, kit, req)).status == 200
        assert (await send(registrar, kit, req)).status == 401
        # A lower nonce-count than one accepted is a replay too (RFC 7616 §3.4).
        lower = ua.register(authorization=ua.answer(challenge, PASSWORD, nc=1))
        assert (await send(registrar, kit, lower)).status == 401
        assert registrar.metrics.auth_failures.labels("replay")._value.get() == 2
        higher = ua.register(authorization=ua.answer(challenge, PASSWORD, nc=3))
        assert (await send(registrar, kit, higher)).status == 200
    finally:
        await registrar.close()


async def test_app_replay_racing_on_two_replicas_wins_once(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    await add_subscriber(js, kit, user)
    one = await replica(js, wire, nats_url)
    two = await replica(js, wire, nats_url)
    try:
        await knows(one, user)
        await knows(two, user)
        ua = kit.UA(user=user)
        for nc in range(1, 9):
            challenge = await send(one, kit, ua.register())
            req = ua.register(authorization=ua.answer(challenge, PASSWORD, nc=nc))
            # Both caches are up to date, so both accept at first: the CAS decides.
            await cached_revision(two, aor_key(user, "example.com"), await one_rev(one, user))
            answers = await asyncio.gather(send(one, kit, req), send(two, kit, req))
            assert sorted(r.status for r in answers) == [200, 401], nc
        replays = sum(r.metrics.auth_failures.labels("replay")._value.get() for r in (one, two))
        assert replays == 8
        conflicts = sum(r.metrics.kv_conflicts._value.get() for r in (one, two))
        assert conflicts >= 8  # each loser lost the write, re-read, and refused
    finally:
        await one.close()
        await two.close()


async def one_rev(registrar: Registrar, user: str) -> int:
    return registrar._locations.get(aor_key(user, "example.com"), (None, 0))[1]


async def test_app_replay_after_unregister_refused(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    await add_subscriber(js, kit, user)
    registrar = await replica(js, wire, nats_url)
    try:
        await knows(registrar, user)
        ua = kit.UA(user=user)
        challenge = await send(registrar, kit, ua.register())
        req = ua.register(authorization=ua.answer(challenge, PASSWORD, nc=1))
        assert (await send(registrar, kit, req)).status == 200
        bye = ua.register(["*"], expires=0, authorization=ua.answer(challenge, PASSWORD, nc=2))
        assert (await send(registrar, kit, bye)).status == 200
        assert await stored_contacts(js, user) == set()  # kept, with no binding
        assert (await send(registrar, kit, req)).status == 401
    finally:
        await registrar.close()


async def test_app_bindings_gauge_counts_live_contacts_not_aors(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    registrar = await replica(js, wire, nats_url, auth=False)
    try:
        # The series exists from the start (a panel shows a number, not "no data");
        # its value is whatever the first sample found in the shared bucket.
        (family,) = registrar.metrics.bindings.collect()
        assert [s.name for s in family.samples] == ["sipmesh_registrar_bindings"]
        now = time.time()
        before = await registrar.count_bindings(now)
        ua = kit.UA(user=user)
        two = ua.register([f"<sip:{user}@192.0.2.1>;expires=30", f"<sip:{user}@192.0.2.2>"])
        assert (await send(registrar, kit, two)).status == 200
        # One AoR, two bindings: the gauge counts Contacts, not keys.
        assert await registrar.count_bindings(now) == before + 2
        # 31 s on, the 30 s binding is dead though the record still lists it.
        key = aor_key(user, "example.com")
        saved = registrar._locations.pop(key)
        others = await registrar.count_bindings(now + 31)
        registrar._locations[key] = saved
        assert await registrar.count_bindings(now + 31) == others + 1
    finally:
        await registrar.close()


# --- the compare-and-set write, by hand on the connection ------------------------------


async def test_app_write_carries_the_key_ttl(
    js: JetStreamContext, wire: WireClient, nats_url: str, kit: Any, user: str
) -> None:
    registrar = await replica(js, wire, nats_url, auth=False)
    try:
        ua = kit.UA(user=user)
        assert (await send(registrar, kit, ua.register())).status == 200
        key = aor_key(user, "example.com")
        msg = await js.get_msg(
            f"KV_{kv.BUCKET_LOCATION}", subject=f"$KV.{kv.BUCKET_LOCATION}.{key}"
        )
        # The binding's 3600 s plus the margin: the key outlives its last binding.
        assert msg.headers is not None
        assert msg.headers["Nats-TTL"] == str(3600 + KEY_TTL_MARGIN)
        # A refresh finds the record just written, decoded once.
        record, revision = registrar._cached(key)
        assert registrar._cached(key)[0] is record
        assert revision == msg.seq
    finally:
        await registrar.close()


class _Reply:
    def __init__(self, data: bytes) -> None:
        self.data = data


class _Connection:
    """Answers every request with one canned JetStream ack."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    async def request(
        self, subject: str, payload: bytes, *, timeout: float, headers: dict[str, str]
    ) -> _Reply:
        self.sent.append((subject, payload, headers))
        return _Reply(self.data)


def _offline(ack: bytes) -> tuple[Registrar, _Connection]:
    nc = _Connection(ack)
    js = type("JS", (), {"_nc": nc, "_timeout": 1.0})()
    registrar = Registrar(
        config("nats://127.0.0.1:1"), js, secret=SECRET, registry=CollectorRegistry()
    )
    return registrar, nc


async def test_write_publishes_against_the_expected_revision() -> None:
    registrar, nc = _offline(b'{"stream":"KV_location","seq":8}')
    record = records.BindingSet(aor="sip:a@example.com")
    assert await registrar._write("example=2Ecom.a", record, 90, 7)
    [(subject, payload, headers)] = nc.sent
    assert subject == "$KV.location.example=2Ecom.a"
    assert records.decode_binding_set(payload) == record
    assert headers == {"Nats-Expected-Last-Subject-Sequence": "7", "Nats-TTL": "90"}
    assert registrar._cached("example=2Ecom.a") == (record, 8)


async def test_write_of_nothing_is_a_delete_marker() -> None:
    registrar, nc = _offline(b'{"stream":"KV_location","seq":3}')
    assert await registrar._write("example=2Ecom.a", None, 90, 2)
    [(_, payload, headers)] = nc.sent
    assert payload == b""
    assert headers["KV-Operation"] == "DEL"
    assert headers["Nats-TTL"] == "60"
    assert registrar._cached("example=2Ecom.a") == (None, 3)


async def test_write_conflict_is_false_and_other_errors_raise() -> None:
    conflict = b'{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}'
    registrar, _ = _offline(conflict)
    assert not await registrar._write("example=2Ecom.a", None, 90, 2)
    assert registrar._cached("example=2Ecom.a") == (None, 0)
    down = b'{"error":{"code":503,"err_code":10039,"description":"jetstream not enabled"}}'
    registrar, _ = _offline(down)
    with pytest.raises(nats.js.errors.ServiceUnavailableError):
        await registrar._write("example=2Ecom.a", None, 90, 2)


async def test_app_fast_path_gives_up_after_kv_retries_with_500(kit: Any) -> None:
    conflict = b'{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 9"}}'
    nc = _Connection(conflict)
    js = type("JS", (), {"_nc": nc, "_timeout": 1.0})()
    cfg = config("nats://127.0.0.1:1", auth=False, kv_retries=2)
    registrar = Registrar(cfg, js, secret=SECRET, registry=CollectorRegistry())

    async def read(key: str) -> tuple[None, int]:
        return None, 9

    registrar._read = read  # type: ignore[method-assign]
    response = await send(registrar, kit, kit.UA(user="alice").register())
    assert response.status == 500
    assert len(nc.sent) == 2  # the fast path's attempts, not the typed path's again
    assert registrar.metrics.kv_conflicts._value.get() == 2


class _Wire:
    """A connected wire that answers every request with one canned outcome, soon."""

    connected = True

    def __init__(self, outcome: Reply | RequestFailure | None) -> None:
        self.outcome = outcome
        self.sent: list[tuple[str, bytes, bytes | None, float]] = []

    async def ask(
        self,
        subject: str,
        payload: bytes,
        *,
        timeout: float,
        headers: bytes | None = None,
    ) -> Reply | RequestFailure | None:
        if self.outcome is None:
            return None  # down: nothing sent
        self.sent.append((subject, payload, headers, timeout))
        await asyncio.sleep(0)
        return self.outcome


def _on_wire(
    outcome: Reply | RequestFailure | None, ack: bytes = b"", **settings: Any
) -> tuple[Registrar, _Wire]:
    nc = _Connection(ack)
    js = type("JS", (), {"_nc": nc, "_timeout": 1.5})()
    wire = _Wire(outcome)
    registrar = Registrar(
        config("nats://127.0.0.1:1", **settings),
        js,
        secret=SECRET,
        registry=CollectorRegistry(),
        wire=wire,  # type: ignore[arg-type]
    )
    return registrar, wire


async def test_write_on_the_wire_sends_the_headers_and_reads_the_ack() -> None:
    registrar, wire = _on_wire(Reply(b'{"stream":"KV_location","seq":8}'))
    record = records.BindingSet(aor="sip:a@example.com")
    assert await registrar._write("example=2Ecom.a", record, 90, 7)
    [(subject, payload, headers, timeout)] = wire.sent
    assert subject == "$KV.location.example=2Ecom.a"
    assert records.decode_binding_set(payload) == record
    # A ready header block (the wire checks only its ends).
    assert headers == b"NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: 7\r\nNats-TTL: 90\r\n\r\n"
    assert timeout == 1.5
    assert registrar._cached("example=2Ecom.a") == (record, 8)


async def test_delete_on_the_wire_is_a_delete_marker() -> None:
    registrar, wire = _on_wire(Reply(b'{"stream":"KV_location","seq":9}'))
    assert await registrar._write("example=2Ecom.a", None, 90, 8)
    [(_, payload, headers, _)] = wire.sent
    assert payload == b""
    assert headers == (
        b"NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: 8\r\nNats-TTL: 60\r\n"
        b"KV-Operation: DEL\r\n\r\n"
    )
    assert registrar._cached("example=2Ecom.a") == (None, 9)


async def test_write_on_the_wire_conflict_is_false() -> None:
    conflict = b'{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}'
    registrar, _ = _on_wire(Reply(conflict))
    assert not await registrar._write("example=2Ecom.a", None, 90, 2)


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        (RequestFailure.TIMEOUT, nats.errors.TimeoutError),
        (RequestFailure.UNAVAILABLE, nats.errors.ConnectionClosedError),
        (Reply(b"", b"NATS/1.0 503\r\n\r\n"), nats.js.errors.NoStreamResponseError),
    ],
    ids=["timeout", "connection-lost", "no-stream"],
)
async def test_write_on_the_wire_failures_raise_nats_errors(
    outcome: Reply | RequestFailure, error: type[Exception]
) -> None:
    registrar, _ = _on_wire(outcome)
    with pytest.raises(error):
        await registrar._write("example=2Ecom.a", None, 90, 2)


async def test_register_answers_503_when_the_wire_write_times_out(kit: Any) -> None:
    registrar, wire = _on_wire(RequestFailure.TIMEOUT, auth=False)
    response = await send(registrar, kit, kit.UA(user="alice").register())
    assert response.status == 503
    assert len(wire.sent) == 1


async def test_write_falls_back_to_nats_py_while_the_wire_is_down() -> None:
    registrar, wire = _on_wire(None, b'{"stream":"KV_location","seq":4}')
    assert await registrar._write("example=2Ecom.a", None, 90, 3)
    assert wire.sent == []
    assert registrar._js._nc.sent[0][2]["KV-Operation"] == "DEL"  # type: ignore[attr-defined]


async def test_direct_read_on_the_wire_reads_status_and_headers() -> None:
    registrar, _ = _on_wire(Reply(b"", b"NATS/1.0 404 Message Not Found\r\n\r\n"))
    registrar._direct_get = "$JS.API.DIRECT.GET.KV_location.$KV.location."
    assert await registrar._read_direct("k") == (None, 0)
    found = b"NATS/1.0\r\nNats-Stream: KV_location\r\nNats-Sequence: 12\r\n\r\n"
    registrar, wire = _on_wire(Reply(b"value", found))
    registrar._direct_get = "$JS.API.DIRECT.GET.KV_location.$KV.location."
    assert await registrar._read_direct("k") == (b"value", 12)
    assert wire.sent[0][0] == "$JS.API.DIRECT.GET.KV_location.$KV.location.k"
    deleted = b"NATS/1.0\r\nNats-Sequence: 13\r\nKV-Operation: DEL\r\n\r\n"
    registrar, _ = _on_wire(Reply(b"", deleted))
    registrar._direct_get = "$JS.API.DIRECT.GET.KV_location.$KV.location."
    assert await registrar._read_direct("k") == (None, 13)
    registrar, _ = _on_wire(Reply(b"", b"NATS/1.0 408 Request Timeout\r\n\r\n"))
    registrar._direct_get = "$JS.API.DIRECT.GET.KV_location.$KV.location."
    with pytest.raises(nats.js.errors.APIError, match="Request Timeout"):
        await registrar._read_direct("k")
