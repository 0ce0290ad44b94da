"""``router.dialogs``: when answered calls get a KV ``dialogs`` record (real nats-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import nats.js.errors
import pytest
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from services.router.tests.app_helpers import eventually, fresh
from sipmesh_bus import kv, records, routing
from sipmesh_bus.calllimits import CallLimits
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.records import BindingSet, aor_key
from sipmesh_bus.schema import Forward, SendResponse
from sipmesh_bus.wire import WireClient
from sipmesh_router.app import Router
from sipmesh_router.config import DialogsMode, RouterConfig, RouterSettings
from sipmesh_router.events import dialog_key
from sipmsg import Request, Response, parse

pytestmark = pytest.mark.integration

SECRET = b"shared-secret-of-every-replica!!"
registries: dict[int, CollectorRegistry] = {}
#: id(router) -> its metrics registry.


def dialog_writes(router: Router, op: str) -> float | None:
    """``sipmesh_router_dialog_writes_total`` of ``op`` acked."""
    return registries[id(router)].get_sample_value(
        "sipmesh_router_dialog_writes_total", {"op": op, "outcome": "ok"}
    )


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of this module's own: its routing bucket holds only what these tests put."""
    server = NatsServer(store_dir=tmp_path_factory.mktemp("dialogs-nats"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def frozen(kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kit's clock: its bindings are live then."""
    monkeypatch.setattr("time.time", lambda: kit.NOW)


@pytest.fixture
async def start(js: JetStreamContext, nats_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Start routers (on a wire connection, as in production) with given settings."""
    started: list[tuple[Router, WireClient]] = []
    registries.clear()

    async def run(dialogs: DialogsMode, limits: CallLimits | None = None) -> Router:
        settings = RouterSettings(
            domain="example.com", probe=False, dialogs=dialogs, call_limits=limits or CallLimits()
        )
        config = RouterConfig(nats=NatsConfig(url=nats_url), router=settings)
        wire = WireClient(config.nats, name="router-dialogs-test")
        await wire.connect()
        registry = CollectorRegistry()
        r = Router(config, js, secret=SECRET, registry=registry, wire=wire)
        registries[id(r)] = registry
        await r.start()
        await r.wait_loaded(5.0)
        started.append((r, wire))
        return r

    yield run
    for r, wire in started:
        await r.close()
        await wire.close()


async def stored(js: JetStreamContext, call_id: str) -> bytes | None:
    """The dialog record of ``call_id`` in KV (None: none, or deleted)."""
    bucket = await js.key_value(kv.BUCKET_DIALOGS)
    try:
        entry = await bucket.get(dialog_key(call_id))
    except nats.js.errors.KeyNotFoundError:
        return None
    return entry.value or None


async def answer(router: Router, js: JetStreamContext, kit: Any) -> tuple[str, Response]:
    """An answered call to a registered phone: its Call-ID and the 2xx as sent upstream."""
    callee = fresh("dora")
    bucket = await js.key_value(kv.BUCKET_LOCATION)
    value = BindingSet(aor=f"sip:{callee}@example.com", bindings=[kit.binding()])
    await bucket.put(aor_key(callee, "example.com"), records.encode_record(value))
    call_id = fresh("dlg") + "@host"
    fwd = await router.handle(
        kit.envelope(kit.request(ruri=f"sip:{callee}@example.com", call_id=call_id))
    )
    assert isinstance(fwd, Forward), fwd
    sent = parse(fwd.data)
    assert isinstance(sent, Request)
    ok = kit.response(sent, 200)
    up = await router.handle(kit.envelope(ok, source=("203.0.113.9", 40000), context=fwd.context))
    assert isinstance(up, SendResponse)
    resp = parse(up.data)
    assert isinstance(resp, Response)
    return call_id, resp


async def hang_up(router: Router, kit: Any, call_id: str, answer: Response) -> None:
    routes = [("Route", r.decode()) for r in answer.headers.get_all(b"record-route")]
    bye = kit.request(
        "BYE", ruri="sip:dora@203.0.113.77", to_tag="ttag", call_id=call_id, extra=routes
    )
    assert isinstance(await router.handle(kit.envelope(bye)), Forward)
    await router.flush()


async def least_calls_set(js: JetStreamContext) -> str:
    pool = routing.DispatcherSet(
        id=fresh("pool"),
        algorithm="least_calls",
        destinations=[routing.Destination(uri="sip:10.0.9.1:5060", host="10.0.9.1", probe=False)],
    )
    bucket = await js.key_value(kv.BUCKET_ROUTING)
    await bucket.put(routing.set_key(pool.id), routing.encode_record(pool))
    return pool.id


async def test_auto_without_counting_writes_no_dialog_record(
    start: Callable[..., Any], js: JetStreamContext, kit: Any
) -> None:
    router = await start("auto")
    call_id, resp = await answer(router, js, kit)
    await router.flush()
    assert await stored(js, call_id) is None
    await hang_up(router, kit, call_id, resp)
    assert (dialog_writes(router, "put"), dialog_writes(router, "delete")) == (0, 0)


@pytest.mark.parametrize(
    "limits",
    [CallLimits(per_user=3), CallLimits(per_trunk=9), CallLimits(trunks={"gw": 2})],
    ids=["per_user", "per_trunk", "trunk_override"],
)
async def test_auto_with_call_caps_writes_the_record(
    start: Callable[..., Any], js: JetStreamContext, kit: Any, limits: CallLimits
) -> None:
    router = await start("auto", limits)
    call_id, resp = await answer(router, js, kit)
    await router.flush()
    assert await stored(js, call_id) is not None
    await hang_up(router, kit, call_id, resp)
    assert await stored(js, call_id) is None


async def test_always_writes_the_record(
    start: Callable[..., Any], js: JetStreamContext, kit: Any
) -> None:
    router = await start("always")
    call_id, resp = await answer(router, js, kit)
    await router.flush()
    assert await stored(js, call_id) is not None
    await hang_up(router, kit, call_id, resp)
    assert await stored(js, call_id) is None
    assert (dialog_writes(router, "put"), dialog_writes(router, "delete")) == (1, 1)


async def test_auto_follows_least_calls_sets_and_deletes_what_it_wrote(
    start: Callable[..., Any], js: JetStreamContext, kit: Any
) -> None:
    router = await start("auto")
    set_id = await least_calls_set(js)
    await eventually(lambda: set_id in router.snapshot.sets, "least_calls set seen")
    call_id, resp = await answer(router, js, kit)
    await router.flush()
    assert await stored(js, call_id) is not None
    key = dialog_key(call_id)
    await eventually(lambda: key in router.active, "dialog put watched")
    # The set goes: no more counting, but the call answered meanwhile keeps
    # no record past its BYE.
    bucket = await js.key_value(kv.BUCKET_ROUTING)
    await bucket.delete(routing.set_key(set_id))
    await eventually(lambda: set_id not in router.snapshot.sets, "set gone")
    later_id, later = await answer(router, js, kit)
    await router.flush()
    assert await stored(js, later_id) is None
    await hang_up(router, kit, call_id, resp)
    assert await stored(js, call_id) is None
    await eventually(lambda: key not in router.active, "dialog delete watched")
    await hang_up(router, kit, later_id, later)
