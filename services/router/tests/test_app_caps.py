"""Call caps in the router shell against a real nats-server: counts from KV ``dialogs``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from services.router.tests.app_helpers import eventually, fresh
from sipmesh_bus import kv, records
from sipmesh_bus.calllimits import CallLimits
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.records import BindingSet, aor_key
from sipmesh_bus.schema import Forward, SendResponse
from sipmesh_router.app import Router
from sipmesh_router.config import RouterConfig, RouterSettings
from sipmesh_router.context import DialogRecord, encode_dialog
from sipmesh_router.events import dialog_key
from sipmsg import Response, parse

pytestmark = pytest.mark.integration

SECRET = b"shared-secret-of-every-replica!!"
PHONE = ("203.0.113.251", 5060)
#: The caller's address: no trusted peer of the shared routing bucket (other tests add some).


@pytest.fixture
async def router(js: JetStreamContext, nats_url: str) -> AsyncIterator[Router]:
    settings = RouterSettings(domain="example.com", probe=False, call_limits=CallLimits(per_user=2))
    r = Router(
        RouterConfig(nats=NatsConfig(url=nats_url), router=settings),
        js,
        secret=SECRET,
        registry=CollectorRegistry(),
    )
    await r.start()
    await r.wait_loaded(5.0)
    yield r
    await r.close()


def dialog(call_id: str, user: str) -> bytes:
    return encode_dialog(
        DialogRecord(
            call_id=call_id,
            caller_tag="a",
            callee_tag="b",
            caller=user,
            callee="sip:bob@example.com",
            source="198.51.100.7:5060",
            destination="203.0.113.9:40000",
            answered_at=1.0e12,  # never pruned during the test
            user=user,
        )
    )


async def test_app_third_call_of_a_user_capped_at_two_is_refused(
    router: Router, js: JetStreamContext, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: kit.NOW)
    caller, callee = fresh("alice"), fresh("bob")
    aor = f"{caller}@example.com"
    subs = await js.key_value(kv.BUCKET_SUBSCRIBERS)
    await subs.put(
        aor_key(caller, "example.com"), records.encode_record(kit.subscriber(caller, "pw"))
    )
    location = await js.key_value(kv.BUCKET_LOCATION)
    await location.put(
        aor_key(callee, "example.com"),
        records.encode_record(
            BindingSet(aor=f"sip:{callee}@example.com", bindings=[kit.binding()])
        ),
    )
    await eventually(lambda: aor_key(caller, "example.com") in router._subscribers, "subscriber")
    dialogs = await js.key_value(kv.BUCKET_DIALOGS)
    keys = [dialog_key(fresh("call")) for _ in range(2)]
    for key in keys:
        await dialogs.put(key, dialog(key, aor))
    await eventually(lambda: router.active.users.get(aor) == 2, "two calls of the caller counted")

    ruri = f"sip:{callee}@example.com"

    async def invite() -> object:
        call_id = fresh("call") + "@host"
        first = await router.handle(
            kit.envelope(kit.request(ruri=ruri, from_=f"sip:{aor}", call_id=call_id), source=PHONE)
        )
        assert isinstance(first, SendResponse)
        challenge = parse(first.data)
        assert isinstance(challenge, Response)
        assert challenge.status == 407
        creds = kit.proxy_authorization(challenge, caller, "pw", ruri)
        req = kit.request(
            ruri=ruri,
            from_=f"sip:{aor}",
            call_id=call_id,
            extra=[("Proxy-Authorization", creds)],
        )
        return await router.handle(kit.envelope(req, source=PHONE))

    refused = await invite()
    assert isinstance(refused, SendResponse)
    resp = parse(refused.data)
    assert isinstance(resp, Response)
    assert (resp.status, resp.reason) == (403, b"Call Limit Reached")
    (family,) = router.metrics.call_limit_rejections.collect()
    totals = {s.labels["kind"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert totals == {"user": 1.0, "trunk": 0.0}

    # One call hangs up (its record deleted): the next INVITE goes through.
    await dialogs.delete(keys[0])
    await eventually(lambda: router.active.users.get(aor) == 1, "ended call released")
    assert isinstance(await invite(), Forward)
