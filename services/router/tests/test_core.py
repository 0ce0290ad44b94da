"""The router's pure core: every branch of decide(), table-driven."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from sipmesh_bus.schema import Drop, Envelope, Forward, SendResponse
from sipmesh_router import core
from sipmesh_router.config import Policy, RouterSettings, make_policy
from sipmesh_router.context import decode_context, open_token
from sipmesh_router.model import Decision, Inputs
from sipmesh_router.routes import EMPTY_VIEW, Hop, Peer, RoutingView
from sipmsg import Request, Response, SipUri, parse
from sipmsg.digest import NonceManager

NOW = 1_700_000_000.0
SECRET = b"0123456789abcdef0123456789abcdef"
POLICY = Policy(domains=frozenset({"example.com"}), secret=SECRET)
NONCES = NonceManager(secret=SECRET, ttl=300.0)
PBX = Hop(host="10.0.0.50", port=5080, uri="sip:2001@10.0.0.50:5080", dispatcher_set="pbx")
PBX2 = Hop(host="10.0.0.51", port=5080, uri="sip:2001@10.0.0.51:5080", dispatcher_set="pbx")
CARRIER = Hop(
    host="198.18.0.10",
    port=5060,
    uri="sip:4930123@198.18.0.10:5060",
    carrier="cheap",
    gateway="gw1",
    rate_prefix="4930",
    rate_per_minute=0.01,
    billing_first=60,
    billing_step=60,
)


def inputs(
    routing: RoutingView = EMPTY_VIEW,
    locations: Any = None,
    subscribers: Any = None,
    policy: Policy = POLICY,
) -> Inputs:
    return Inputs(
        routing=routing,
        policy=policy,
        nonces=NONCES,
        now=NOW,
        entropy=b"e" * 12,
        locations=locations or {},
        subscribers=subscribers or {},
    )


def run(env: Envelope, inp: Inputs) -> Decision:
    msg = parse(env.data)
    return core.decide(env, msg, inp)


def status_of(decision: Decision) -> int:
    assert isinstance(decision.reply, SendResponse)
    resp = parse(decision.reply.data)
    assert isinstance(resp, Response)
    return resp.status


def forwarded(decision: Decision) -> tuple[Forward, Request]:
    assert isinstance(decision.reply, Forward), decision
    req = parse(decision.reply.data)
    assert isinstance(req, Request)
    return decision.reply, req


# -- answers without forwarding ---------------------------------------------------

Case = Callable[[Any], tuple[Envelope, Inputs]]


def _unknown_local(kit: Any) -> tuple[Envelope, Inputs]:
    return kit.envelope(kit.request()), inputs()


def _no_binding(kit: Any) -> tuple[Envelope, Inputs]:
    subs = {"example=2Ecom.bob": kit.subscriber("bob")}
    return kit.envelope(kit.request()), inputs(subscribers=subs)


def _expired_binding(kit: Any) -> tuple[Envelope, Inputs]:
    b = msgspec.structs.replace(kit.binding(), expires_at=NOW - 1)
    subs = {"example=2Ecom.bob": kit.subscriber("bob")}
    return kit.envelope(kit.request()), inputs(locations=kit.bindings("bob", b), subscribers=subs)


def _stranger_to_number(kit: Any) -> tuple[Envelope, Inputs]:
    routing = kit.FakeRouting(lcr={"4930123": [CARRIER]})
    return kit.envelope(kit.request(ruri="sip:4930123@example.com")), inputs(routing)


def _stranger_to_foreign(kit: Any) -> tuple[Envelope, Inputs]:
    return kit.envelope(kit.request(ruri="sip:dave@elsewhere.org")), inputs()


def _local_caller_no_credentials(kit: Any) -> tuple[Envelope, Inputs]:
    req = kit.request(from_="sip:alice@example.com")
    return kit.envelope(req), inputs(subscribers={"example=2Ecom.alice": kit.subscriber("alice")})


def _max_forwards_zero(kit: Any) -> tuple[Envelope, Inputs]:
    return kit.envelope(kit.request(max_forwards=0)), inputs()


def _proxy_require(kit: Any) -> tuple[Envelope, Inputs]:
    return kit.envelope(kit.request(extra=[("Proxy-Require", "foo")])), inputs()


def _cancel_unmatched(kit: Any) -> tuple[Envelope, Inputs]:
    return kit.envelope(kit.request("CANCEL")), inputs()


def _peer_no_route(kit: Any) -> tuple[Envelope, Inputs]:
    routing = kit.FakeRouting(peers={"198.51.100.7": Peer(name="pbx")})
    return kit.envelope(kit.request(ruri="sip:4999@example.com")), inputs(routing)


def _set_all_down(kit: Any) -> tuple[Envelope, Inputs]:
    routing = kit.FakeRouting(
        peers={"198.51.100.7": Peer(name="carrier")}, selectors={"2001": "pbx"}, sets={"pbx": []}
    )
    return kit.envelope(kit.request(ruri="sip:2001@example.com")), inputs(routing)


def _in_dialog_forged(kit: Any) -> tuple[Envelope, Inputs]:
    req = kit.request(
        "BYE", to_tag="x", extra=[("Route", "<sip:192.0.2.1:5060;lr;sm=AAAAAAAAAAAAAAAAAAAA>")]
    )
    return kit.envelope(req), inputs()


def _in_dialog_no_route(kit: Any) -> tuple[Envelope, Inputs]:
    return kit.envelope(kit.request("BYE", to_tag="x")), inputs()


@pytest.mark.parametrize(
    ("case", "status", "outcome"),
    [
        pytest.param(_unknown_local, 404, "not_found", id="unknown-local-user-404"),
        pytest.param(_no_binding, 480, "unavailable", id="subscriber-without-binding-480"),
        pytest.param(_expired_binding, 480, "unavailable", id="expired-binding-480"),
        pytest.param(_stranger_to_number, 403, "forbidden", id="stranger-to-number-403"),
        pytest.param(_stranger_to_foreign, 403, "forbidden", id="no-open-relay-403"),
        pytest.param(_local_caller_no_credentials, 407, "challenge", id="local-caller-407"),
        pytest.param(_max_forwards_zero, 483, "too_many_hops", id="max-forwards-483"),
        pytest.param(_proxy_require, 420, "bad_extension", id="proxy-require-420"),
        pytest.param(_cancel_unmatched, 481, "cancel_unmatched", id="cancel-481"),
        pytest.param(_peer_no_route, 404, "no_route", id="peer-no-route-404"),
        pytest.param(_set_all_down, 503, "set_down", id="set-all-down-503"),
        pytest.param(_in_dialog_forged, 403, "no_dialog_route", id="forged-route-403"),
        pytest.param(_in_dialog_no_route, 403, "no_dialog_route", id="in-dialog-no-route-403"),
    ],
)
def test_decide_answers(kit: Any, case: Case, status: int, outcome: str) -> None:
    env, inp = case(kit)
    decision = run(env, inp)
    assert status_of(decision) == status
    assert decision.outcome == outcome
    assert decision.events == ()


def test_decide_challenge_offers_sha256_then_md5(kit: Any) -> None:
    env, inp = _local_caller_no_credentials(kit)
    decision = run(env, inp)
    assert isinstance(decision.reply, SendResponse)
    resp = parse(decision.reply.data)
    assert isinstance(resp, Response)
    assert [c.algorithm for c in resp.proxy_authenticate] == [b"SHA-256", b"MD5"]
    assert resp.header(b"www-authenticate") is None


def test_decide_proxy_require_lists_unsupported(kit: Any) -> None:
    env, inp = _proxy_require(kit)
    decision = run(env, inp)
    assert isinstance(decision.reply, SendResponse)
    resp = parse(decision.reply.data)
    assert resp.header(b"unsupported") == b"foo"


@pytest.mark.parametrize(
    "method", [pytest.param("ACK", id="stray-ack"), pytest.param("ACK-forged", id="forged-ack")]
)
def test_decide_ack_never_answered(kit: Any, method: str) -> None:
    extra = [("Route", "<sip:192.0.2.1;lr;sm=AAAA>")] if method == "ACK-forged" else []
    req = kit.request("ACK", to_tag="x" if extra else None, extra=extra)
    decision = run(kit.envelope(req), inputs())
    assert isinstance(decision.reply, Drop)


# -- authentication ----------------------------------------------------------------


def _authenticated_invite(kit: Any, user: str = "alice", ruri: str = "sip:bob@example.com") -> Any:
    subs = {
        "example=2Ecom.alice": kit.subscriber("alice", "pw"),
        "example=2Ecom.bob": kit.subscriber("bob"),
    }
    first = run(
        kit.envelope(kit.request(ruri=ruri, from_=f"sip:{user}@example.com")),
        inputs(subscribers=subs),
    )
    assert isinstance(first.reply, SendResponse)
    challenge = parse(first.reply.data)
    assert isinstance(challenge, Response)
    creds = kit.proxy_authorization(challenge, "alice", "pw", ruri)
    req = kit.request(
        ruri=ruri, from_=f"sip:{user}@example.com", extra=[("Proxy-Authorization", creds)]
    )
    return kit.envelope(req), subs


def test_decide_authenticated_caller_reaches_binding(kit: Any) -> None:
    env, subs = _authenticated_invite(kit)
    decision = run(env, inputs(subscribers=subs, locations=kit.bindings("bob", kit.binding())))
    fwd, req = forwarded(decision)
    assert [(t.host, t.port) for t in fwd.targets] == [("203.0.113.9", 40000)]
    # The caller is a registered phone: its flow is in the dialog token.
    token = _token_of(req)
    assert token.caller is not None
    assert (token.caller.host, token.caller.port) == ("198.51.100.7", 5060)


def test_decide_authenticated_request_claims_its_nonce_count(kit: Any) -> None:
    env, subs = _authenticated_invite(kit)
    decision = run(env, inputs(subscribers=subs, locations=kit.bindings("bob", kit.binding())))
    claim = decision.nonce_claim
    assert claim is not None
    assert claim.realm == "example.com"
    # The registrar's key space: nc.<hash of the nonce>.<nc as 8 hex digits>.
    prefix, digest, nc = claim.key.split(".")
    assert (prefix, len(digest), nc) == ("nc", 40, "00000001")
    assert 295.0 <= claim.ttl <= 306.0


def test_decide_unauthenticated_decisions_claim_nothing(kit: Any) -> None:
    decision = run(
        kit.envelope(kit.request()), inputs(locations=kit.bindings("bob", kit.binding()))
    )
    assert isinstance(decision.reply, Forward)
    assert decision.nonce_claim is None


def test_replayed_is_a_fresh_challenge_not_stale(kit: Any) -> None:
    env, subs = _authenticated_invite(kit)
    decision = run(env, inputs(subscribers=subs))
    assert decision.nonce_claim is not None
    req = parse(env.data)
    assert isinstance(req, Request)
    again = core.replayed(req, decision.nonce_claim, inputs(subscribers=subs))
    assert again.outcome == "replay"
    assert status_of(again) == 407
    resp = parse(again.reply.data)  # type: ignore[union-attr]
    assert isinstance(resp, Response)
    assert [c.realm for c in resp.proxy_authenticate] == [b"example.com", b"example.com"]
    assert all(not c.stale for c in resp.proxy_authenticate)


def test_decide_wrong_password_challenged_again(kit: Any) -> None:
    env, subs = _authenticated_invite(kit)
    subs["example=2Ecom.alice"] = kit.subscriber("alice", "other")
    decision = run(env, inputs(subscribers=subs))
    assert status_of(decision) == 407


def test_decide_from_must_match_credentials(kit: Any) -> None:
    env, subs = _authenticated_invite(kit, user="mallory")
    subs["example=2Ecom.mallory"] = kit.subscriber("mallory")
    decision = run(env, inputs(subscribers=subs))
    assert status_of(decision) == 403


def test_decide_auth_off_trusts_local_from(kit: Any) -> None:
    policy = Policy(domains=frozenset({"example.com"}), secret=SECRET, auth=False)
    routing = kit.FakeRouting(lcr={"4930123": [CARRIER]})
    req = kit.request(ruri="sip:4930123@example.com", from_="sip:alice@example.com")
    decision = run(kit.envelope(req), inputs(routing, policy=policy))
    fwd, _ = forwarded(decision)
    assert fwd.targets[0].host == "198.18.0.10"


# -- forwarding to bindings --------------------------------------------------------------


def _sm(uri: object) -> bytes:
    assert isinstance(uri, SipUri)
    value = dict(uri.params)[b"sm"]
    assert value is not None
    return value


def _token_of(req: Request) -> Any:
    rr = req.record_route[0].uri
    value = dict(rr.params)[b"sm"]  # type: ignore[union-attr]
    assert value is not None
    token = open_token(value, secret=SECRET, call_id=req.call_id)
    assert token is not None
    return token


def test_decide_invite_to_binding_rewrites_per_section_16_6(kit: Any) -> None:
    env = kit.envelope(kit.request())
    decision = run(env, inputs(locations=kit.bindings("bob", kit.binding())))
    fwd, req = forwarded(decision)
    target = fwd.targets[0]
    assert (target.uri, target.host, target.port, target.edge_id) == (
        "sip:bob@10.0.0.9:5060",
        "203.0.113.9",
        40000,
        "edge-2",
    )
    assert fwd.timer_c == 181.0
    assert req.max_forwards == 69
    top = req.via[0]
    assert (top.host, top.port, top.transport) == (b"192.0.2.1", 5060, b"UDP")
    assert top.branch is not None
    assert top.branch.startswith(b"z9hG4bKsm")
    assert req.via[1].branch == b"z9hG4bKcaller1"
    rr = req.record_route
    assert len(rr) == 1
    assert isinstance(rr[0].uri, SipUri)
    assert rr[0].uri.lr
    assert _token_of(req).caller is None  # a stranger, not a phone of ours
    assert [e.kind for e in decision.events] == ["attempt"]
    event = decision.events[0]
    assert (event.caller, event.callee, event.source, event.destination) == (
        "carol@other.net",
        "sip:bob@example.com",
        "198.51.100.7:5060",
        "203.0.113.9:40000",
    )
    ctx = decode_context(fwd.context or b"")
    assert ctx.callee_is_phone
    assert ctx.remaining == []
    assert ctx.request == b""


def test_decide_forks_equal_q_in_parallel_and_q_groups_serially(kit: Any) -> None:
    locations = kit.bindings(
        "bob",
        kit.binding("sip:bob@10.0.0.1", host="203.0.113.1", q=1.0),
        kit.binding("sip:bob@10.0.0.2", host="203.0.113.2", q=1.0),
        kit.binding("sip:bob@10.0.0.3", host="203.0.113.3", q=0.5),
    )
    fwd, _ = forwarded(run(kit.envelope(kit.request()), inputs(locations=locations)))
    assert sorted(t.host for t in fwd.targets) == ["203.0.113.1", "203.0.113.2"]
    ctx = decode_context(fwd.context or b"")
    assert [[t.host for t in leg.targets] for leg in ctx.remaining] == [["203.0.113.3"]]
    assert ctx.request  # kept for the failover to the q=0.5 group


def test_decide_double_record_route_when_transports_differ(kit: Any) -> None:
    b = kit.binding(transport="tcp", connection_id="c1")
    fwd, req = forwarded(run(kit.envelope(kit.request()), inputs(locations=kit.bindings("bob", b))))
    uris = [a.uri for a in req.record_route]
    assert [u.transport for u in uris] == [b"tcp", None]  # type: ignore[union-attr]
    assert req.via[0].transport == b"TCP"
    assert fwd.targets[0].connection_id == "c1"


def test_decide_double_record_route_names_each_sides_listener(kit: Any) -> None:
    # RFC 5658 §3.3: the URI facing the callee names the edge's TCP listener,
    # the one facing the caller the UDP socket the INVITE came in on.
    policy = Policy(
        domains=frozenset({"example.com"}),
        secret=SECRET,
        listeners=(("edge-1", "tcp", "192.0.2.1", 5070), ("edge-1", "tls", "192.0.2.1", 5071)),
    )
    b = kit.binding(transport="tcp", connection_id="c1")
    inp = inputs(locations=kit.bindings("bob", b), policy=policy)
    _, req = forwarded(run(kit.envelope(kit.request()), inp))
    uris = [a.uri for a in req.record_route]
    assert [(u.port, u.transport) for u in uris] == [(5070, b"tcp"), (5060, None)]  # type: ignore[union-attr]
    assert (req.via[0].transport, req.via[0].port) == (b"TCP", 5070)


def test_decide_single_record_route_keeps_the_inbound_socket(kit: Any) -> None:
    policy = Policy(
        domains=frozenset({"example.com"}),
        secret=SECRET,
        listeners=(("edge-1", "tcp", "192.0.2.1", 5070),),
    )
    inp = inputs(locations=kit.bindings("bob", kit.binding()), policy=policy)
    _, req = forwarded(run(kit.envelope(kit.request()), inp))
    assert [a.uri.port for a in req.record_route] == [5060]  # type: ignore[union-attr]
    assert req.via[0].port == 5060


def test_decide_envelope_listeners_win_over_settings(kit: Any) -> None:
    policy = Policy(
        domains=frozenset({"example.com"}),
        secret=SECRET,
        listeners=(("edge-1", "tcp", "192.0.2.1", 5070),),
    )
    base = kit.envelope(kit.request())
    env = msgspec.structs.replace(base, listeners={"tcp": "[2001:db8::1]:5080"})
    b = kit.binding(transport="tcp", connection_id="c1")
    _, req = forwarded(run(env, inputs(locations=kit.bindings("bob", b), policy=policy)))
    top = req.record_route[0].uri
    assert (top.host, top.port) == (b"[2001:db8::1]", 5080)  # type: ignore[union-attr]


def _path_binding(kit: Any, contact: str, path: list[str], **kw: Any) -> Any:
    return msgspec.structs.replace(kit.binding(contact, **kw), path=path)


def test_decide_binding_path_becomes_route_and_first_hop(kit: Any) -> None:
    path = ["<sip:outbound.example.net:5099;lr>", "<sip:p2.example.net;lr>"]
    b = _path_binding(kit, "sip:bob@10.0.0.9:5060", path)
    fwd, req = forwarded(run(kit.envelope(kit.request()), inputs(locations=kit.bindings("bob", b))))
    assert req.headers.get_all(b"route") == [p.encode() for p in path]
    assert [(t.host, t.port, t.uri) for t in fwd.targets] == [
        ("outbound.example.net", 5099, "sip:bob@10.0.0.9:5060")
    ]


def test_decide_path_from_the_register_source_keeps_its_connection(kit: Any) -> None:
    b = _path_binding(
        kit,
        "sip:bob@10.0.0.9:5060",
        ["<sip:203.0.113.9:40000;transport=tcp;lr>"],
        transport="tcp",
        connection_id="c7",
    )
    fwd, _ = forwarded(run(kit.envelope(kit.request()), inputs(locations=kit.bindings("bob", b))))
    assert [(t.host, t.connection_id, t.edge_id) for t in fwd.targets] == [
        ("203.0.113.9", "c7", "edge-2")
    ]


def test_decide_different_paths_fork_serially_each_with_its_route(kit: Any) -> None:
    one = _path_binding(kit, "sip:bob@10.0.0.1", ["<sip:p1.example.net;lr>"], host="203.0.113.1")
    two = _path_binding(kit, "sip:bob@10.0.0.2", ["<sip:p2.example.net;lr>"], host="203.0.113.2")
    locations = kit.bindings("bob", one, two)
    inp = inputs(locations=locations)
    fwd, req = forwarded(run(kit.envelope(kit.request()), inp))
    first_route = req.headers.get_all(b"route")
    ctx = decode_context(fwd.context or b"")
    assert len(ctx.remaining) == 1
    # The stored request has no leg's Route; the failover adds the next leg's.
    stored = parse(ctx.request)
    assert isinstance(stored, Request)
    assert stored.headers.get_all(b"route") == []
    failed = kit.response(fwd.data, 503)
    again = run(kit.envelope(failed, context=fwd.context), inp)
    fwd2, req2 = forwarded(again)
    routes = {first_route[0], req2.headers.get_all(b"route")[0]}
    assert routes == {b"<sip:p1.example.net;lr>", b"<sip:p2.example.net;lr>"}
    assert fwd2.targets[0].host in ("p1.example.net", "p2.example.net")


# -- outbound: dispatcher sets and LCR --------------------------------------------------


def test_decide_peer_to_dispatcher_set_fails_over_serially(kit: Any) -> None:
    routing = kit.FakeRouting(
        peers={"198.51.100.7": Peer(name="carrier")},
        selectors={"2001": "pbx"},
        sets={"pbx": [PBX, PBX2]},
    )
    decision = run(kit.envelope(kit.request(ruri="sip:2001@example.com")), inputs(routing))
    fwd, _ = forwarded(decision)
    assert [(t.uri, t.host) for t in fwd.targets] == [("sip:2001@10.0.0.50:5080", "10.0.0.50")]
    ctx = decode_context(fwd.context or b"")
    assert [leg.targets[0].host for leg in ctx.remaining] == ["10.0.0.51"]
    assert decision.events[0].dispatcher_set == "pbx"


def test_decide_dispatcher_dialog_record_names_destination_key(kit: Any) -> None:
    routing = kit.FakeRouting(
        peers={"198.51.100.7": Peer(name="carrier")}, selectors={"2001": "pbx"}, sets={"pbx": [PBX]}
    )
    inp = inputs(routing)
    fwd, sent = forwarded(run(kit.envelope(kit.request(ruri="sip:2001@example.com")), inp))
    ok = kit.response(sent, 200)
    answer = run(kit.envelope(ok, source=("10.0.0.50", 5080), context=fwd.context), inp)
    assert answer.dialog_put is not None
    _, record = answer.dialog_put
    # The key least_calls counts by: Destination.key of the set member.
    assert record.destination_key == "udp.10=2E0=2E0=2E50.5080"
    assert record.dispatcher_set == "pbx"


def test_decide_lcr_event_carries_carrier_and_rate(kit: Any) -> None:
    env, subs = _authenticated_invite(kit, ruri="sip:4930123@example.com")
    routing = kit.FakeRouting(lcr={"4930123": [CARRIER]})
    decision = run(env, inputs(routing, subscribers=subs))
    fwd, _ = forwarded(decision)
    assert fwd.targets[0].uri == "sip:4930123@198.18.0.10:5060"
    event = decision.events[0]
    assert (event.carrier, event.gateway, event.rate_per_minute, event.rate_prefix) == (
        "cheap",
        "gw1",
        0.01,
        "4930",
    )
    assert (event.billing_first, event.billing_step) == (60, 60)


# -- in-dialog requests --------------------------------------------------------------------


def _dialog(kit: Any, *, hide: bool = False) -> tuple[Request, Response]:
    """An INVITE from alice's phone to bob's, forwarded, and the 200 (OK) through us."""
    policy = Policy(domains=frozenset({"example.com"}), secret=SECRET, auth=False)
    routing = (
        kit.FakeRouting(peers={"198.51.100.7": Peer(name="pbx", hide_topology=True)})
        if hide
        else EMPTY_VIEW
    )
    invite = kit.request(from_="sip:alice@example.com", from_tag="atag")
    inp = inputs(routing, locations=kit.bindings("bob", kit.binding()), policy=policy)
    fwd, sent = forwarded(run(kit.envelope(invite), inp))
    ok = kit.response(sent, 200)
    answer = run(kit.envelope(ok, source=("203.0.113.9", 40000), context=fwd.context), inp)
    assert isinstance(answer.reply, SendResponse)
    ok_up = parse(answer.reply.data)
    assert isinstance(ok_up, Response)
    return sent, ok_up


def _in_dialog_request(
    kit: Any, method: str, route: bytes, *, from_tag: str, to_tag: str
) -> Request:
    req: Request = kit.request(
        method,
        ruri="sip:caller@10.1.1.1:5060" if from_tag == "ttag" else "sip:bob@10.0.0.9:5060",
        from_tag=from_tag,
        to_tag=to_tag,
        extra=[("Route", route.decode())],
    )
    return req


@pytest.mark.parametrize(
    ("method", "from_caller", "side"),
    [
        pytest.param("BYE", True, "caller", id="bye-from-caller"),
        pytest.param("BYE", False, "callee", id="bye-from-callee"),
        pytest.param("INVITE", True, None, id="re-invite"),
        pytest.param("UPDATE", False, None, id="update-from-callee"),
        pytest.param("ACK", True, None, id="ack-2xx"),
    ],
)
def test_decide_in_dialog_follows_the_recorded_flows(
    kit: Any, method: str, from_caller: bool, side: str | None
) -> None:
    _sent, ok = _dialog(kit)
    rr = ok.headers.get_all(b"record-route")[0]
    token = open_token(_sm(ok.record_route[0].uri), secret=SECRET, call_id=ok.call_id)
    assert token is not None
    assert token.callee is not None
    assert token.caller is not None
    tags = ("atag", "ttag") if from_caller else ("ttag", "atag")
    req = _in_dialog_request(kit, method, rr, from_tag=tags[0], to_tag=tags[1])
    source = ("198.51.100.7", 5060) if from_caller else ("203.0.113.9", 40000)
    decision = run(kit.envelope(req, source=source), inputs(policy=POLICY))
    fwd, out = forwarded(decision)
    expected = token.callee if from_caller else token.caller
    assert (fwd.targets[0].host, fwd.targets[0].port) == (expected.host, expected.port)
    assert out.header(b"route") is None  # our value popped (§16.4)
    assert out.via[0].branch is not None
    assert out.via[0].branch.startswith(b"z9hG4bKsm")
    if side is None:
        assert decision.events == ()
        assert decision.dialog_delete is None
    else:
        assert [(e.kind, e.hangup_side) for e in decision.events] == [("ended", side)]
        assert decision.dialog_delete is not None
    if method == "ACK":
        assert fwd.context is None


def test_decide_in_dialog_forwards_to_next_route(kit: Any) -> None:
    _, ok = _dialog(kit)
    ours = ok.headers.get_all(b"record-route")[0].decode()
    req = kit.request(
        "BYE", from_tag="atag", to_tag="ttag", extra=[("Route", f"{ours}, <sip:10.9.9.9:5070;lr>")]
    )
    fwd, out = forwarded(run(kit.envelope(req), inputs()))
    assert (fwd.targets[0].host, fwd.targets[0].port) == ("10.9.9.9", 5070)
    assert out.headers.get_all(b"route") == [b"<sip:10.9.9.9:5070;lr>"]


def test_decide_strict_router_request_uri_fixed(kit: Any) -> None:
    _, ok = _dialog(kit)
    ours = ok.record_route[0].uri
    req = kit.request(
        "BYE",
        ruri=bytes(ours).decode(),
        from_tag="ttag",
        to_tag="atag",
        extra=[("Route", "<sip:caller@10.1.1.1:5060>")],
    )
    fwd, out = forwarded(run(kit.envelope(req, source=("203.0.113.9", 40000)), inputs()))
    assert out.uri == b"sip:caller@10.1.1.1:5060"
    assert out.header(b"route") is None
    assert fwd.targets[0].host == "198.51.100.7"  # the caller phone's flow


# -- responses ----------------------------------------------------------------------------------


def _forward_invite(kit: Any, legs: int = 2) -> tuple[Forward, Request, Inputs]:
    routing = kit.FakeRouting(
        peers={"198.51.100.7": Peer(name="carrier")},
        selectors={"2001": "pbx"},
        sets={"pbx": [PBX, PBX2][:legs]},
    )
    inp = inputs(routing)
    fwd, sent = forwarded(run(kit.envelope(kit.request(ruri="sip:2001@example.com")), inp))
    return fwd, sent, inp


@pytest.mark.parametrize(
    ("status", "legs", "outcome", "kinds"),
    [
        pytest.param(503, 2, "failover_503", ["attempt"], id="503-fails-over"),
        pytest.param(408, 2, "failover_408", ["attempt"], id="408-fails-over"),
        pytest.param(500, 1, "failed", ["failed"], id="500-last-leg-fails"),
        pytest.param(486, 2, "failed", ["failed"], id="486-no-failover"),
        pytest.param(603, 2, "failed", ["failed"], id="603-no-failover"),
        pytest.param(200, 2, "answered", ["answered"], id="200-answered"),
    ],
)
def test_decide_final_responses(
    kit: Any, status: int, legs: int, outcome: str, kinds: list[str]
) -> None:
    fwd, sent, inp = _forward_invite(kit, legs)
    resp = kit.response(sent, status)
    decision = run(kit.envelope(resp, source=("10.0.0.50", 5080), context=fwd.context), inp)
    assert decision.outcome == outcome
    assert [e.kind for e in decision.events] == kinds
    if outcome.startswith("failover"):
        again, req = forwarded(decision)
        assert again.targets[0].host == "10.0.0.51"
        assert req.via[0].branch != sent.via[0].branch
        assert req.via[1:] == sent.via[1:]
        ctx = decode_context(again.context or b"")
        assert (ctx.attempt, ctx.remaining, ctx.request) == (1, [], b"")
        assert decision.events[0].destination == "10.0.0.51:5080"
    else:
        assert status_of(decision) == status
        assert isinstance(decision.reply, SendResponse)
        up = parse(decision.reply.data)
        assert [v.branch for v in up.via] == [b"z9hG4bKcaller1"]  # our Via removed (§16.7 step 3)
    if status == 200:
        assert decision.dialog_put is not None
        assert decision.dialog_put[1].callee_tag == "ttag"
    if kinds == ["failed"]:
        assert decision.events[0].status_code == status


def test_decide_provisional_with_sdp_is_ringing(kit: Any) -> None:
    fwd, sent, inp = _forward_invite(kit)
    resp = kit.response(sent, 183, body="v=0\r\n")
    decision = run(kit.envelope(resp, context=fwd.context), inp)
    assert [e.kind for e in decision.events] == ["ringing"]
    assert status_of(decision) == 183
    assert isinstance(decision.reply, SendResponse)
    assert parse(decision.reply.data).body == b"v=0\r\n"  # early media untouched


def test_decide_event_ids_are_deterministic(kit: Any) -> None:
    first = _forward_invite(kit)[0]
    second = _forward_invite(kit)[0]
    assert first.context == second.context


def test_decide_response_without_context_goes_upstream(kit: Any) -> None:
    _, sent, inp = _forward_invite(kit)
    decision = run(kit.envelope(kit.response(sent, 200)), inp)
    assert status_of(decision) == 200
    assert decision.events == ()


def test_decide_response_with_only_our_via_dropped(kit: Any) -> None:
    req = kit.request()
    decision = run(kit.envelope(kit.response(req, 200)), inputs())
    assert isinstance(decision.reply, Drop)


def test_decide_non_invite_final_has_no_events(kit: Any) -> None:
    _, ok = _dialog(kit)
    rr = ok.headers.get_all(b"record-route")[0]
    req = _in_dialog_request(kit, "BYE", rr, from_tag="atag", to_tag="ttag")
    fwd, sent = forwarded(run(kit.envelope(req), inputs()))
    decision = run(kit.envelope(kit.response(sent, 200), context=fwd.context), inputs())
    assert decision.events == ()
    assert decision.outcome == "final"


# -- topology hiding -----------------------------------------------------------------------------


def test_decide_topology_hiding_hides_contact_and_record_route(kit: Any) -> None:
    routing = kit.FakeRouting(
        peers={"198.51.100.7": Peer(name="pbx", hide_topology=True)},
        selectors={"2001": "pbx"},
        sets={"pbx": [PBX]},
    )
    req = kit.request(ruri="sip:2001@example.com", extra=[("Record-Route", "<sip:10.7.7.7;lr>")])
    inp = inputs(routing)
    fwd, sent = forwarded(run(kit.envelope(req), inp))
    assert b"10.1.1.1" not in bytes(sent.contact[0])  # type: ignore[index]
    assert [bytes(a.uri.host) for a in sent.record_route] == [b"192.0.2.1"]  # type: ignore[union-attr]
    ok = kit.response(sent, 200, extra=[("Contact", "<sip:pbx@10.0.0.50:5080>")])
    decision = run(kit.envelope(ok, context=fwd.context), inp)
    assert isinstance(decision.reply, SendResponse)
    up = parse(decision.reply.data)
    hosts = [a.uri.host for a in up.record_route]  # type: ignore[union-attr]
    assert hosts == [b"192.0.2.1", b"10.7.7.7"]  # restored for the caller's side
    assert b"10.0.0.50" not in bytes(up.contact[0])  # type: ignore[index]
    # An in-dialog request to the hidden Contact reaches the original one.
    hidden = up.contact[0].uri  # type: ignore[index]
    bye = kit.request(
        "BYE",
        ruri=bytes(hidden).decode(),
        from_tag="ftag",
        to_tag="ttag",
        extra=[("Route", up.headers.get_all(b"record-route")[0].decode())],
    )
    fwd2, out = forwarded(run(kit.envelope(bye), inp))
    assert out.uri == b"sip:pbx@10.0.0.50:5080"
    assert fwd2.targets[0].host == "10.0.0.50"


def test_location_keys(kit: Any) -> None:
    assert core.location_keys(kit.request(), POLICY) == ["example=2Ecom.bob"]
    assert core.location_keys(kit.request(ruri="sip:bob@other.org"), POLICY) == []
    assert core.location_keys(kit.request("BYE", to_tag="t"), POLICY) == []


def test_make_policy_reads_listeners_and_refuses_bad_ones() -> None:
    settings = RouterSettings(listeners={"e1": {"TCP": "[2001:db8::1]:5070", "tls": "h:5071"}})
    policy = make_policy(settings, SECRET)
    assert policy.listener("e1", "tcp") == ("2001:db8::1", 5070)
    assert policy.listener("e1", "tls") == ("h", 5071)
    assert policy.listener("e1", "ws") is None
    with pytest.raises(ValueError, match=r"router.listeners.e1.tcp: expected host:port"):
        make_policy(RouterSettings(listeners={"e1": {"tcp": "nohost"}}), SECRET)
