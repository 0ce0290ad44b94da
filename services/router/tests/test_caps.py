"""Concurrent-call caps: the core's decision from counts, and the counts from KV dialogs."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from sipmesh_bus.calllimits import CallLimits
from sipmesh_bus.schema import Forward, SendResponse
from sipmesh_router import core
from sipmesh_router.active import ActiveCalls
from sipmesh_router.config import Policy, RouterSettings, make_policy
from sipmesh_router.context import DialogRecord, decode_context, encode_dialog
from sipmesh_router.metrics import RouterMetrics
from sipmesh_router.model import Decision, Inputs
from sipmesh_router.routes import Hop, Peer
from sipmsg import Response, parse
from sipmsg.digest import NonceManager

NOW = 1_700_000_000.0
SECRET = b"0123456789abcdef0123456789abcdef"
GW1 = Hop(host="198.18.0.10", port=5060, carrier="cheap", gateway="gw1")
GW2 = Hop(host="198.18.0.20", port=5060, carrier="dear", gateway="gw2")
PEER_HOST = "198.51.100.7"


def policy(**limits: Any) -> Policy:
    return Policy(
        domains=frozenset({"example.com"}),
        secret=SECRET,
        auth=False,
        call_limits=CallLimits(**limits),
        retry_after=7,
    )


def decide(
    kit: Any,
    *,
    limits: dict[str, Any],
    users: dict[str, int] | None = None,
    trunks: dict[str, int] | None = None,
    from_peer: bool = False,
    ruri: str = "sip:bob@example.com",
    method: str = "INVITE",
) -> Decision:
    """``alice@example.com`` (or the peer ``pbx``) calls ``ruri`` with these counts."""
    routing = kit.FakeRouting(
        peers={PEER_HOST: Peer(name="pbx")} if from_peer else {},
        lcr={"4930123": [GW1, GW2]},
    )
    from_ = "sip:carol@other.net" if from_peer else "sip:alice@example.com"
    req = kit.request(method, ruri, from_=from_)
    inp = Inputs(
        routing=routing,
        policy=policy(**limits),
        nonces=NonceManager(secret=SECRET, ttl=300.0),
        now=NOW,
        entropy=b"e" * 12,
        locations=kit.bindings("bob", kit.binding()),
        user_calls=users or {},
        trunk_calls=trunks or {},
    )
    return core.decide(kit.envelope(req), req, inp)


def answer(decision: Decision) -> Response:
    assert isinstance(decision.reply, SendResponse), decision
    resp = parse(decision.reply.data)
    assert isinstance(resp, Response)
    return resp


ALICE = "alice@example.com"
NUMBER = "sip:4930123@example.com"


@pytest.mark.parametrize(
    ("kw", "outcome"),
    [
        pytest.param({"limits": {"per_user": 2}, "users": {ALICE: 1}}, "forward", id="user-under"),
        pytest.param(
            {"limits": {"per_user": 2}, "users": {ALICE: 2}}, "call_limit_user", id="user-at-cap"
        ),
        pytest.param(
            {"limits": {"per_user": 2}, "users": {"bob@example.com": 9}},
            "forward",
            id="other-user-full",
        ),
        pytest.param(
            {"limits": {"per_user": 2, "users": {ALICE: 5}}, "users": {ALICE: 4}},
            "forward",
            id="user-override-raises",
        ),
        pytest.param(
            {"limits": {"users": {ALICE: 1}}, "users": {ALICE: 1}},
            "call_limit_user",
            id="user-override-alone",
        ),
        pytest.param({"limits": {}, "users": {ALICE: 1000}}, "forward", id="no-cap"),
        pytest.param(
            {"limits": {"per_user": 1}, "users": {ALICE: 1}, "method": "MESSAGE"},
            "forward",
            id="only-invites-capped",
        ),
        pytest.param(
            {"limits": {"per_trunk": 3}, "trunks": {"pbx": 2}, "from_peer": True, "ruri": NUMBER},
            "forward",
            id="peer-under",
        ),
        pytest.param(
            {"limits": {"per_trunk": 3}, "trunks": {"pbx": 3}, "from_peer": True, "ruri": NUMBER},
            "call_limit_trunk",
            id="peer-at-cap",
        ),
        pytest.param(
            {
                "limits": {"per_trunk": 3, "trunks": {"pbx": 10}},
                "trunks": {"pbx": 3},
                "from_peer": True,
                "ruri": NUMBER,
            },
            "forward",
            id="peer-override",
        ),
        pytest.param(
            {"limits": {"per_trunk": 1}, "trunks": {"gw1": 1, "gw2": 1}, "ruri": NUMBER},
            "call_limit_trunk",
            id="every-gateway-full",
        ),
        pytest.param(
            {"limits": {"trunks": {"gw1": 2}}, "trunks": {"gw1": 1, "gw2": 50}, "ruri": NUMBER},
            "forward",
            id="gateway-override-under",
        ),
    ],
)
def test_caps_decide(kit: Any, kw: dict[str, Any], outcome: str) -> None:
    assert decide(kit, **kw).outcome == outcome


def test_caps_user_at_cap_is_403_call_limit_reached(kit: Any) -> None:
    resp = answer(decide(kit, limits={"per_user": 2}, users={ALICE: 2}))
    assert (resp.status, resp.reason) == (403, b"Call Limit Reached")
    assert resp.headers.get(b"retry-after") is None


def test_caps_trunk_at_cap_is_503_with_retry_after(kit: Any) -> None:
    decision = decide(kit, limits={"per_trunk": 1}, trunks={"pbx": 1}, from_peer=True, ruri=NUMBER)
    resp = answer(decision)
    assert (resp.status, resp.reason) == (503, b"Call Limit Reached")
    assert resp.headers.get(b"retry-after") == b"7"


def test_caps_full_gateway_is_skipped(kit: Any) -> None:
    decision = decide(kit, limits={"per_trunk": 2}, trunks={"gw1": 2, "gw2": 1}, ruri=NUMBER)
    assert isinstance(decision.reply, Forward)
    assert [(t.host, t.port) for t in decision.reply.targets] == [("198.18.0.20", 5060)]
    assert decision.reply.context is not None
    ctx = decode_context(decision.reply.context)
    assert ctx.remaining == []  # gw1 is not a failover target either


def test_caps_context_carries_user_and_peer_for_the_dialog_record(kit: Any) -> None:
    user_call = decide(kit, limits={})
    peer_call = decide(kit, limits={}, from_peer=True, ruri=NUMBER)
    for decision, user, peer in ((user_call, ALICE, None), (peer_call, None, "pbx")):
        assert isinstance(decision.reply, Forward)
        assert decision.reply.context is not None
        ctx = decode_context(decision.reply.context)
        assert (ctx.user, ctx.peer) == (user, peer)


def test_caps_settings_reach_the_policy() -> None:
    limits = CallLimits(per_user=4, per_trunk=30, users={ALICE: 1}, trunks={"gw1": 60})
    settings = RouterSettings(call_limits=limits, retry_after=9)
    made = make_policy(settings, SECRET)
    assert (made.call_limits, made.retry_after) == (limits, 9)


def test_caps_metric_counts_rejections_by_kind(kit: Any) -> None:
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    name = "sipmesh_router_call_limit_rejections_total"
    assert registry.get_sample_value(name, {"kind": "trunk"}) == 0.0
    decision = decide(kit, limits={"per_user": 1}, users={ALICE: 1})
    metrics.decided(decision, method=b"INVITE", seconds=0.001)
    metrics.decided(decide(kit, limits={}), method=b"INVITE", seconds=0.001)
    assert registry.get_sample_value(name, {"kind": "user"}) == 1.0
    assert registry.get_sample_value(name, {"kind": "trunk"}) == 0.0


# -- counts from KV dialogs ----------------------------------------------------------

BASE = DialogRecord(
    call_id="c",
    caller_tag="a",
    callee_tag="b",
    caller=ALICE,
    callee="sip:4930123@example.com",
    source="198.51.100.7:5060",
    destination="198.18.0.10:5060",
    answered_at=100.0,
)


def rec(**kw: Any) -> bytes:
    return encode_dialog(msgspec.structs.replace(BASE, **kw))


def test_active_calls_count_users_and_trunks() -> None:
    calls = ActiveCalls()
    assert calls.apply("d1", rec(user=ALICE, gateway="gw1"))
    assert calls.apply("d2", rec(user=ALICE))
    assert calls.apply("d3", rec(peer="pbx", gateway="gw1"))
    assert calls.apply("d4", rec(peer="gw1", gateway="gw1"))  # one call counts once per name
    assert dict(calls.users) == {ALICE: 2}
    assert dict(calls.trunks) == {"gw1": 3, "pbx": 1}
    assert calls.apply("d1", None)
    assert calls.apply("d3", b"")
    assert dict(calls.users) == {ALICE: 1}
    assert dict(calls.trunks) == {"gw1": 1}


def test_active_calls_prune_releases_users_and_trunks() -> None:
    calls = ActiveCalls()
    calls.apply("old", rec(user=ALICE, peer="pbx", answered_at=10.0))
    calls.apply("new", rec(user=ALICE, answered_at=500.0))
    assert calls.prune(older_than=100.0) == 1
    assert (dict(calls.users), dict(calls.trunks)) == ({ALICE: 1}, {})


def test_dialog_record_without_the_new_fields_still_decodes() -> None:
    calls = ActiveCalls()
    assert calls.apply("d1", encode_dialog(BASE))
    assert (dict(calls.users), dict(calls.trunks), len(calls)) == ({}, {}, 1)
