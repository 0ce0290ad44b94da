"""The router's NATS shell against a real nats-server with JetStream."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from services.router.tests.app_helpers import eventually, fresh
from sipmesh_bus import kv, records, routing
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.records import BindingSet, aor_key
from sipmesh_bus.runtime import Service
from sipmesh_bus.schema import (
    Forward,
    SendResponse,
    decode_call_event,
    decode_envelope,
    decode_reply,
    encode,
)
from sipmesh_bus.subjects import QUEUE_ROUTER, SIP_ROUTE
from sipmesh_bus.wire import WireClient
from sipmesh_router.app import Router
from sipmesh_router.config import RouterConfig, RouterSettings
from sipmesh_router.context import DialogRecord, decode_dialog, encode_dialog
from sipmesh_router.events import dialog_key
from sipmsg import Request, Response, make_response, parse

pytestmark = pytest.mark.integration

SECRET = b"shared-secret-of-every-replica!!"
_ids = itertools.count()


@pytest.fixture(params=["nats-py", "wire"])
async def router(
    js: JetStreamContext, nats_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Router]:
    """A started router: watches and writes on nats-py, or on a wire connection."""
    config = RouterConfig(
        nats=NatsConfig(url=nats_url), router=RouterSettings(domain="example.com", probe=False)
    )
    wire = None
    if request.param == "wire":
        wire = WireClient(config.nats, name="router-test")
        await wire.connect()
    r = Router(config, js, secret=SECRET, registry=CollectorRegistry(), wire=wire)
    await r.start()
    await r.wait_loaded(5.0)
    yield r
    await r.close()
    if wire is not None:
        await wire.close()


async def register(js: JetStreamContext, kit: Any, user: str, **kw: Any) -> None:
    bucket = await js.key_value(kv.BUCKET_LOCATION)
    b = kit.binding(**kw)
    value = BindingSet(aor=f"sip:{user}@example.com", bindings=[b])
    await bucket.put(aor_key(user, "example.com"), records.encode_record(value))


async def test_app_invite_to_registered_user_forwards_to_binding(
    router: Router, js: JetStreamContext, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: kit.NOW)
    user = fresh("bob")
    await register(js, kit, user, host="203.0.113.77", port=41000)
    reply = await router.handle(kit.envelope(kit.request(ruri=f"sip:{user}@example.com")))
    assert isinstance(reply, Forward)
    assert [(t.host, t.port, t.edge_id) for t in reply.targets] == [
        ("203.0.113.77", 41000, "edge-2")
    ]


async def test_app_unknown_user_404(router: Router, kit: Any) -> None:
    reply = await router.handle(
        kit.envelope(kit.request(ruri=f"sip:{fresh('nobody')}@example.com"))
    )
    assert isinstance(reply, SendResponse)
    resp = parse(reply.data)
    assert isinstance(resp, Response)
    assert resp.status == 404


async def test_app_challenge_then_success_over_nats(
    router: Router, js: JetStreamContext, kit: Any, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: kit.NOW)
    caller, callee = fresh("alice"), fresh("bob")
    subs = await js.key_value(kv.BUCKET_SUBSCRIBERS)
    await subs.put(
        aor_key(caller, "example.com"), records.encode_record(kit.subscriber(caller, "pw"))
    )
    await register(js, kit, callee)
    await eventually(
        lambda: aor_key(caller, "example.com") in router._subscribers, "subscriber cached"
    )
    config = RouterConfig(nats=NatsConfig(url=nats_url))
    async with Service(
        "router-test", config, registry=CollectorRegistry(), install_signal_handlers=False
    ) as svc:
        await svc.serve(SIP_ROUTE, router.handle, queue=QUEUE_ROUTER, decode=decode_envelope)
        ruri = f"sip:{callee}@example.com"
        call_id = fresh("call") + "@host"
        first = await _ask(
            svc,
            kit.envelope(
                kit.request(ruri=ruri, from_=f"sip:{caller}@example.com", call_id=call_id)
            ),
        )
        assert isinstance(first, SendResponse)
        challenge = parse(first.data)
        assert isinstance(challenge, Response)
        assert challenge.status == 407
        creds = kit.proxy_authorization(challenge, caller, "pw", ruri)
        invite = kit.request(
            ruri=ruri,
            from_=f"sip:{caller}@example.com",
            call_id=call_id,
            extra=[("Proxy-Authorization", creds)],
        )
        second = await _ask(svc, kit.envelope(invite))
        assert isinstance(second, Forward)
        assert second.targets[0].host == "203.0.113.9"


async def test_app_replayed_nonce_count_is_challenged_on_any_replica(
    router: Router, js: JetStreamContext, kit: Any, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: kit.NOW)
    config = RouterConfig(
        nats=NatsConfig(url=nats_url), router=RouterSettings(domain="example.com", probe=False)
    )
    registry = CollectorRegistry()
    other = Router(config, js, secret=SECRET, registry=registry)
    await other.start()
    try:
        caller, callee = fresh("alice"), fresh("bob")
        subs = await js.key_value(kv.BUCKET_SUBSCRIBERS)
        key = aor_key(caller, "example.com")
        await subs.put(key, records.encode_record(kit.subscriber(caller, "pw")))
        await register(js, kit, callee)
        await other.wait_loaded(5.0)
        await eventually(
            lambda: key in router._subscribers and key in other._subscribers, "subscriber cached"
        )
        ruri = f"sip:{callee}@example.com"
        from_ = f"sip:{caller}@example.com"
        first = await router.handle(kit.envelope(kit.request(ruri=ruri, from_=from_)))
        assert isinstance(first, SendResponse)
        challenge = parse(first.data)
        assert isinstance(challenge, Response)
        creds = kit.proxy_authorization(challenge, caller, "pw", ruri)
        invite = kit.envelope(
            kit.request(ruri=ruri, from_=from_, extra=[("Proxy-Authorization", creds)])
        )
        assert isinstance(await router.handle(invite), Forward)
        # The same credentials again (nc=1 once more), at another replica: a replay.
        replay = await other.handle(invite)
        assert isinstance(replay, SendResponse)
        resp = parse(replay.data)
        assert isinstance(resp, Response)
        assert resp.status == 407
        sample = registry.get_sample_value("sipmesh_router_decisions_total", {"outcome": "replay"})
        assert sample == 1.0
    finally:
        await other.close()


async def _ask(svc: Service, env: Any) -> Any:
    msg = await svc.nc.request(SIP_ROUTE, encode(env), timeout=5.0)
    return decode_reply(msg.data)


async def test_app_call_events_land_in_calls_stream(
    router: Router, js: JetStreamContext, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: kit.NOW)
    callee = fresh("bob")
    await register(js, kit, callee)
    call_id = fresh("events") + "@host"
    invite = kit.request(ruri=f"sip:{callee}@example.com", call_id=call_id)
    fwd = await router.handle(kit.envelope(invite))
    assert isinstance(fwd, Forward)
    sent = parse(fwd.data)
    assert isinstance(sent, Request)
    ok = kit.response(sent, 200)
    up = await router.handle(kit.envelope(ok, source=("203.0.113.9", 40000), context=fwd.context))
    assert isinstance(up, SendResponse)
    # A retried publish of the same step is stored once (Nats-Msg-Id).
    await router.handle(kit.envelope(ok, source=("203.0.113.9", 40000), context=fwd.context))
    await router.flush()  # published after the reply
    sub = await js.subscribe("call.events.>", ordered_consumer=True)
    kinds = []
    try:
        while True:
            msg = await sub.next_msg(timeout=1.0)
            event = decode_call_event(msg.data)
            if event.call_id == call_id:
                kinds.append(event.kind)
    except TimeoutError:
        pass
    finally:
        await sub.unsubscribe()
    assert kinds == ["attempt", "answered"]
    dialogs = await js.key_value(kv.BUCKET_DIALOGS)
    entry = await dialogs.get(dialog_key(call_id))
    assert entry.value is not None
    assert decode_dialog(entry.value).callee_tag == "ttag"


async def test_app_dialog_put_and_delete_come_back_through_the_watch(
    router: Router, js: JetStreamContext, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: kit.NOW)
    callee = fresh("dora")
    await register(js, kit, callee)
    call_id = fresh("dlg") + "@host"
    fwd = await router.handle(
        kit.envelope(kit.request(ruri=f"sip:{callee}@example.com", call_id=call_id))
    )
    assert isinstance(fwd, Forward)
    sent = parse(fwd.data)
    assert isinstance(sent, Request)
    ok = kit.response(sent, 200)
    up = await router.handle(kit.envelope(ok, source=("203.0.113.9", 40000), context=fwd.context))
    assert isinstance(up, SendResponse)
    answer = parse(up.data)
    assert isinstance(answer, Response)
    key = dialog_key(call_id)
    await eventually(lambda: key in router.active._calls, "dialog put watched")
    subject = f"$KV.{kv.BUCKET_DIALOGS}.{key}"
    put = await js.get_last_msg(f"KV_{kv.BUCKET_DIALOGS}", subject)
    assert put.headers == {"Nats-TTL": str(int(router._settings.dialog_ttl))}
    routes = [("Route", r.decode()) for r in answer.headers.get_all(b"record-route")]
    bye = kit.request(
        "BYE", ruri=f"sip:{callee}@203.0.113.77", to_tag="ttag", call_id=call_id, extra=routes
    )
    assert isinstance(await router.handle(kit.envelope(bye)), Forward)
    # The delete marker (KV-Operation: DEL) comes back as a deletion.
    await eventually(lambda: key not in router.active._calls, "dialog delete watched")
    marker = await js.get_last_msg(f"KV_{kv.BUCKET_DIALOGS}", subject)
    assert marker.headers == {"KV-Operation": "DEL", "Nats-TTL": "60"}
    assert marker.data in (b"", None)


async def test_app_routing_snapshot_follows_kv(
    router: Router, js: JetStreamContext, kit: Any
) -> None:
    bucket = await js.key_value(kv.BUCKET_ROUTING)
    set_id = fresh("pool")
    number = "7" + str(next(_ids)).zfill(5)
    peer = routing.Peer(name=set_id, cidrs=["198.51.100.7/32"])
    pool = routing.DispatcherSet(
        id=set_id,
        algorithm="priority",
        destinations=[routing.Destination(uri="sip:10.0.0.60:5080", host="10.0.0.60", port=5080)],
    )
    selector = routing.SetSelector(kind="prefix", match=number, set_id=set_id)
    await bucket.put(routing.peer_key(set_id), routing.encode_record(peer))
    await bucket.put(routing.set_key(set_id), routing.encode_record(pool))
    await bucket.put(routing.selector_key("prefix", number), routing.encode_record(selector))
    await eventually(
        lambda: (
            set_id in router.snapshot.sets and router.snapshot.set_for(number, None) is not None
        ),
        "set seen",
    )
    reply = await router.handle(kit.envelope(kit.request(ruri=f"sip:{number}@example.com")))
    assert isinstance(reply, Forward)
    assert reply.targets[0].host == "10.0.0.60"
    await bucket.delete(routing.selector_key("prefix", number))
    await eventually(lambda: router.snapshot.set_for(number, None) is None, "selector gone")
    reply = await router.handle(kit.envelope(kit.request(ruri=f"sip:{number}@example.com")))
    assert isinstance(reply, SendResponse)
    assert parse(reply.data).status == 404  # type: ignore[union-attr]
    await bucket.delete(routing.peer_key(set_id))


async def _pool(
    js: JetStreamContext, dests: list[routing.Destination], algorithm: routing.Algorithm
) -> tuple[str, str]:
    """A dispatcher set trusted from 198.51.100.7 and a number routed to it."""
    bucket = await js.key_value(kv.BUCKET_ROUTING)
    set_id = fresh("pool")
    number = "6" + str(next(_ids)).zfill(6)
    peer = routing.Peer(name=set_id, cidrs=["198.51.100.7/32"])
    pool = routing.DispatcherSet(id=set_id, algorithm=algorithm, destinations=dests)
    selector = routing.SetSelector(kind="prefix", match=number, set_id=set_id)
    await bucket.put(routing.peer_key(set_id), routing.encode_record(peer))
    await bucket.put(routing.set_key(set_id), routing.encode_record(pool))
    await bucket.put(routing.selector_key("prefix", number), routing.encode_record(selector))
    return set_id, number


async def test_app_least_calls_counts_dialogs_of_every_replica(
    router: Router, js: JetStreamContext, kit: Any
) -> None:
    a = routing.Destination(uri="sip:10.0.1.1:5060", host="10.0.1.1", probe=False)
    b = routing.Destination(uri="sip:10.0.1.2:5060", host="10.0.1.2", probe=False)
    _, number = await _pool(js, [a, b], "least_calls")
    await eventually(lambda: router.snapshot.set_for(number, None) is not None, "set seen")
    invite = kit.envelope(kit.request(ruri=f"sip:{number}@example.com"))
    reply = await router.handle(invite)
    assert isinstance(reply, Forward)
    assert reply.targets[0].host == "10.0.1.1"
    # A call to a answered by some replica: its dialog record names a.
    dialogs = await js.key_value(kv.BUCKET_DIALOGS)
    record = DialogRecord(
        call_id="x",
        caller_tag="a",
        callee_tag="b",
        caller="",
        callee="",
        source="",
        destination="10.0.1.1:5060",
        answered_at=time.time(),
        destination_key=a.key,
    )
    key = dialog_key(fresh("call"))
    await dialogs.put(key, encode_dialog(record))
    await eventually(lambda: router.active.counts.get(a.key) == 1, "call counted")
    reply = await router.handle(invite)
    assert isinstance(reply, Forward)
    assert reply.targets[0].host == "10.0.1.2"
    await dialogs.delete(key)
    await eventually(lambda: a.key not in router.active.counts, "call ended")
    reply = await router.handle(invite)
    assert isinstance(reply, Forward)
    assert reply.targets[0].host == "10.0.1.1"


class _OptionsResponder(asyncio.DatagramProtocol):
    """A PBX that answers OPTIONS with 200 while ``alive``."""

    def __init__(self) -> None:
        self.alive = False
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        req = parse(data)
        if self.alive and isinstance(req, Request) and self.transport is not None:
            self.transport.sendto(bytes(make_response(req, 200)), addr)


async def test_app_prober_takes_a_silent_destination_out_and_back(
    js: JetStreamContext, kit: Any, nats_url: str
) -> None:
    loop = asyncio.get_running_loop()
    sock, pbx = await loop.create_datagram_endpoint(_OptionsResponder, local_addr=("127.0.0.1", 0))
    port = sock.get_extra_info("sockname")[1]
    settings = RouterSettings(
        domain="example.com",
        probe_bind="127.0.0.1",
        probe_interval=0.1,
        probe_timeout=0.3,
        probe_down_after=1,
        probe_up_after=1,
        probe_lease_ttl=0.5,
    )
    prober = Router(
        RouterConfig(nats=NatsConfig(url=nats_url), router=settings),
        js,
        secret=SECRET,
        registry=CollectorRegistry(),
    )
    await prober.start()
    try:
        await prober.wait_loaded(5.0)
        dest = routing.Destination(uri=f"sip:127.0.0.1:{port}", host="127.0.0.1", port=port)
        _, number = await _pool(js, [dest], "priority")
        invite = kit.envelope(kit.request(ruri=f"sip:{number}@example.com"))

        async def status() -> int | None:
            reply = await prober.handle(invite)
            if isinstance(reply, Forward):
                return None
            assert isinstance(reply, SendResponse)
            return parse(reply.data).status  # type: ignore[union-attr]

        # Silent: the lease holder's probe fails, the health record says down.
        await eventually_async(status, 503, "destination down")
        health = prober.health.records[dest.key]
        assert not health.up
        assert health.prober == prober.replica_id
        pbx.alive = True
        await eventually_async(status, None, "destination back up")
        assert prober.health.records[dest.key].status == 200
    finally:
        await prober.close()
        sock.close()


async def eventually_async(probe: Callable[[], Awaitable[object]], want: object, what: str) -> None:
    got: object = "never ran"
    for _ in range(200):
        got = await probe()
        if got == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: last {got!r}")


async def test_app_metrics_of_a_call_and_of_the_watched_data(
    js: JetStreamContext, kit: Any, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: kit.NOW)  # the bindings' clock
    config = RouterConfig(
        nats=NatsConfig(url=nats_url), router=RouterSettings(domain="example.com", probe=False)
    )
    registry = CollectorRegistry()
    r = Router(config, js, secret=SECRET, registry=registry)
    await r.start()
    try:
        await r.wait_loaded(5.0)

        def value(name: str, **labels: str) -> float | None:
            return registry.get_sample_value(name, labels)

        callee = fresh("carol")
        await register(js, kit, callee)
        invite = kit.request(ruri=f"sip:{callee}@example.com", call_id=fresh("m") + "@h")
        fwd = await r.handle(kit.envelope(invite))
        assert isinstance(fwd, Forward)
        sent = parse(fwd.data)
        assert isinstance(sent, Request)
        ok = msgspec.structs.replace(
            kit.envelope(kit.response(sent, 200), context=fwd.context),
            received_at=kit.NOW + 3.0,
        )
        assert isinstance(await r.handle(ok), SendResponse)
        assert value("sipmesh_router_call_attempts_total", route="user") == 1
        assert value("sipmesh_router_call_answers_total", route="user") == 1
        assert value("sipmesh_router_call_setup_seconds_sum", route="user") == 3.0
        assert value("sipmesh_router_handling_seconds_count", method="INVITE") == 1
        await r.flush()  # events and dialog writes are published after the reply
        assert value("sipmesh_router_call_events_total", kind="answered", outcome="ok") == 1
        assert value("sipmesh_router_dialog_writes_total", op="put", outcome="ok") == 1
        # The dialog record comes back through the watch: one more active call.
        key = dialog_key(invite.call_id.decode())
        await eventually(lambda: key in r.active._calls, "dialog watched")
        assert value("sipmesh_router_calls_active") == len(r.active)
        set_id, _ = await _pool(
            js, [routing.Destination(uri="sip:10.0.2.1", host="10.0.2.1")], "priority"
        )
        labels = {"set": set_id, "destination": "10.0.2.1:5060", "transport": "udp"}
        await eventually(
            lambda: value("sipmesh_router_dispatcher_destination_up", **labels) == 1, "dest up"
        )
    finally:
        await r.close()


async def test_app_location_lookups_come_from_the_watched_copy(
    router: Router, js: JetStreamContext, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: kit.NOW)
    bucket = await js.key_value(kv.BUCKET_LOCATION)
    assert router._location is not None
    reads: list[str] = []
    real_get = router._location.get

    async def counted_get(key: str) -> Any:
        reads.append(key)
        return await real_get(key)

    monkeypatch.setattr(router._location, "get", counted_get)
    # Just registered, maybe not watched yet: a miss is read from KV.
    callee = fresh("dave")
    key = aor_key(callee, "example.com")
    await register(js, kit, callee)
    first = await router.handle(kit.envelope(kit.request(ruri=f"sip:{callee}@example.com")))
    assert isinstance(first, Forward)
    await eventually(lambda: key in router._locations, "location watched")
    reads.clear()
    second = await router.handle(
        kit.envelope(kit.request(ruri=f"sip:{callee}@example.com", call_id=fresh("c")))
    )
    assert isinstance(second, Forward)
    assert reads == []
    # Unregistered: the watch drops the binding; the lookup misses and reads KV.
    await bucket.delete(key)
    await eventually(lambda: router._locations[key][0] is None, "delete watched")
    gone = await router.handle(
        kit.envelope(kit.request(ruri=f"sip:{callee}@example.com", call_id=fresh("c")))
    )
    assert isinstance(gone, SendResponse)
    assert reads == [key]
    # Every cached binding expired: read KV (the registrar may have refreshed it).
    await register(js, kit, callee)
    await eventually(lambda: router._locations[key][0] is not None, "re-register watched")
    reads.clear()
    monkeypatch.setattr("time.time", lambda: kit.NOW + 3600)
    late = await router.handle(
        kit.envelope(kit.request(ruri=f"sip:{callee}@example.com", call_id=fresh("c")))
    )
    assert isinstance(late, SendResponse)
    assert reads == [key]


async def test_app_close_publishes_queued_events(
    js: JetStreamContext, nats_url: str, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: kit.NOW)
    config = RouterConfig(
        nats=NatsConfig(url=nats_url), router=RouterSettings(domain="example.com", probe=False)
    )
    registry = CollectorRegistry()
    r = Router(config, js, secret=SECRET, registry=registry)
    await r.start()
    await r.wait_loaded(5.0)
    callee = fresh("erin")
    await register(js, kit, callee)
    invite = kit.request(ruri=f"sip:{callee}@example.com", call_id=fresh("close") + "@h")
    assert isinstance(await r.handle(kit.envelope(invite)), Forward)
    await r.close()  # no flush: close drains the queue
    assert len(r.outbox) == 0
    assert (
        registry.get_sample_value(
            "sipmesh_router_call_events_total", {"kind": "attempt", "outcome": "ok"}
        )
        == 1
    )


async def test_app_writes_and_acks_on_the_wire_connection(
    js: JetStreamContext, nats_url: str, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: kit.NOW)
    config = RouterConfig(
        nats=NatsConfig(url=nats_url), router=RouterSettings(domain="example.com", probe=False)
    )
    wire = WireClient(config.nats, name="router-test")
    await wire.connect()
    registry = CollectorRegistry()
    r = Router(config, js, secret=SECRET, registry=registry, wire=wire)
    try:
        await r.start()
        await r.wait_loaded(5.0)
        callee = fresh("wanda")
        await register(js, kit, callee)
        invite = kit.request(ruri=f"sip:{callee}@example.com", call_id=fresh("wire") + "@h")
        assert isinstance(await r.handle(kit.envelope(invite)), Forward)
        await asyncio.wait_for(r.flush(), 2.0)  # acked well before the 5 s retry
        assert r.outbox.retries == 0
        assert (
            registry.get_sample_value(
                "sipmesh_router_call_events_total", {"kind": "attempt", "outcome": "ok"}
            )
            == 1
        )
    finally:
        await r.close()
        await wire.close()
