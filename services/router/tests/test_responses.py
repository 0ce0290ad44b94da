"""Responses through the router (responses.py): hidden Vias, all_responses, Timer C, setup."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sipmesh_bus.schema import Envelope, Forward, SendResponse
from sipmesh_router import core
from sipmesh_router.config import Policy
from sipmesh_router.context import decode_context, encode_context
from sipmesh_router.model import Decision, Inputs
from sipmesh_router.responses import edge_made
from sipmesh_router.routes import EMPTY_VIEW, Hop, Peer, RoutingView
from sipmsg import Request, Response, make_response, parse
from sipmsg.digest import NonceManager

NOW = 1_700_000_000.0
SECRET = b"0123456789abcdef0123456789abcdef"
POLICY = Policy(domains=frozenset({"example.com"}), secret=SECRET, auth=False)
PBX = Hop(host="10.0.0.50", port=5080, uri="sip:2001@10.0.0.50:5080", dispatcher_set="pbx")
PBX2 = Hop(host="10.0.0.51", port=5080, uri="sip:2001@10.0.0.51:5080", dispatcher_set="pbx")
CALLER_VIAS = [
    b"SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKcaller1;rport",
    b"SIP/2.0/UDP 10.7.7.7:5060;branch=z9hG4bKupstream",
]


def inputs(routing: RoutingView = EMPTY_VIEW, locations: Any = None) -> Inputs:
    return Inputs(
        routing=routing,
        policy=POLICY,
        nonces=NonceManager(secret=SECRET, ttl=300.0),
        now=NOW,
        entropy=b"e" * 12,
        locations=locations or {},
    )


def run(env: Envelope, inp: Inputs) -> Decision:
    return core.decide(env, parse(env.data), inp)


def forwarded(decision: Decision) -> tuple[Forward, Request]:
    assert isinstance(decision.reply, Forward), decision
    req = parse(decision.reply.data)
    assert isinstance(req, Request)
    return decision.reply, req


def upstream(decision: Decision) -> Response:
    assert isinstance(decision.reply, SendResponse), decision
    resp = parse(decision.reply.data)
    assert isinstance(resp, Response)
    return resp


def _routing(kit: Any, *, hide: bool, legs: int = 1, method_set: str = "2001") -> Any:
    return kit.FakeRouting(
        peers={"198.51.100.7": Peer(name="pbx", hide_topology=hide)},
        selectors={method_set: "pbx"},
        sets={"pbx": [PBX, PBX2][:legs]},
    )


def _invite(kit: Any, method: str = "INVITE") -> Request:
    req: Request = kit.request(
        method,
        ruri="sip:2001@example.com",
        extra=[("Via", CALLER_VIAS[1].decode())],
    )
    return req


def _call(kit: Any, *, hide: bool, legs: int = 1) -> tuple[Forward, Request, Inputs]:
    inp = inputs(_routing(kit, hide=hide, legs=legs))
    fwd, sent = forwarded(run(kit.envelope(_invite(kit)), inp))
    return fwd, sent, inp


def _at(env: Envelope, when: float) -> Envelope:
    return msgspec.structs.replace(env, received_at=when)


def _edge_408(sent: Request, branch: bytes = b"z9hG4bKsmedge.0") -> Response:
    """The 408 the edge makes up when a branch's Timer C fires (make_response of the branch)."""
    old = sent.via[0].branch
    assert old is not None
    branch_req = parse(bytes(sent).replace(b"branch=" + old, b"branch=" + branch, 1))
    assert isinstance(branch_req, Request)
    return make_response(branch_req, 408)


# -- topology hiding: Vias ------------------------------------------------------------------------


def test_hidden_call_sends_only_our_via_and_asks_for_every_response(kit: Any) -> None:
    fwd, sent, _ = _call(kit, hide=True)
    assert len(sent.headers.get_all(b"via")) == 1
    assert sent.via[0].branch is not None
    assert sent.via[0].branch.startswith(b"z9hG4bKsm")
    assert b"10.1.1.1" not in bytes(sent)
    assert b"10.7.7.7" not in bytes(sent)
    assert fwd.all_responses is True
    ctx = decode_context(fwd.context or b"")
    assert [v.encode() for v in ctx.hidden_vias] == CALLER_VIAS


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        pytest.param(180, "ringing", id="180"),
        pytest.param(200, "answered", id="200"),
        pytest.param(486, "failed", id="486"),
    ],
)
def test_hidden_call_responses_go_upstream_with_the_callers_vias(
    kit: Any, status: int, kind: str
) -> None:
    fwd, sent, inp = _call(kit, hide=True)
    resp = kit.response(sent, status, extra=[("Contact", "<sip:pbx@10.0.0.50:5080>")])
    assert len(resp.headers.get_all(b"via")) == 1  # what the PBX sends back: our Via alone
    decision = run(kit.envelope(resp, source=("10.0.0.50", 5080), context=fwd.context), inp)
    up = upstream(decision)
    assert up.status == status
    assert up.headers.get_all(b"via") == CALLER_VIAS
    assert [e.kind for e in decision.events] == [kind]
    if status < 300:
        assert b"10.0.0.50" not in bytes(up.contact[0])  # type: ignore[index]


def test_hidden_call_fails_over_still_hidden_and_asking(kit: Any) -> None:
    fwd, sent, inp = _call(kit, hide=True, legs=2)
    busy = kit.response(sent, 503)
    again = run(kit.envelope(busy, context=fwd.context), inp)
    fwd2, sent2 = forwarded(again)
    assert fwd2.all_responses is True
    assert len(sent2.headers.get_all(b"via")) == 1
    assert sent2.via[0].branch != sent.via[0].branch
    ok = run(kit.envelope(kit.response(sent2, 200), context=fwd2.context), inp)
    assert upstream(ok).headers.get_all(b"via") == CALLER_VIAS


def test_hidden_dialog_hides_vias_of_in_dialog_requests(kit: Any) -> None:
    fwd, sent, inp = _call(kit, hide=True)
    ok = upstream(run(kit.envelope(kit.response(sent, 200), context=fwd.context), inp))
    route = ok.headers.get_all(b"record-route")[0].decode()
    reinvite = kit.request("INVITE", from_tag="ftag", to_tag="ttag", extra=[("Route", route)])
    fwd2, out = forwarded(run(kit.envelope(reinvite), inp))
    assert len(out.headers.get_all(b"via")) == 1
    assert fwd2.all_responses is True
    ringing = run(kit.envelope(kit.response(out, 180), context=fwd2.context), inp)
    assert upstream(ringing).headers.get_all(b"via") == [CALLER_VIAS[0]]
    assert ringing.events == ()  # a re-INVITE does not ring again
    ack = kit.request("ACK", from_tag="ftag", to_tag="ttag", extra=[("Route", route)])
    _, ack_out = forwarded(run(kit.envelope(ack), inp))
    assert len(ack_out.headers.get_all(b"via")) == 1


# -- all_responses and ringing ---------------------------------------------------------------------


def _rang(env: Envelope, when: float | None) -> Envelope:
    return msgspec.structs.replace(env, ringing_at=when)


def test_initial_invite_leaves_plain_provisionals_to_the_edge(kit: Any) -> None:
    # The 180 costs no round trip: the edge relays it and reports the ringing
    # time with the final (Envelope.ringing_at).
    fwd, sent, inp = _call(kit, hide=False)
    assert fwd.all_responses is False
    assert sent.headers.get_all(b"via")[1:] == CALLER_VIAS
    # A 180 the edge still asks about (an older edge) rings as before.
    decision = run(kit.envelope(kit.response(sent, 180), context=fwd.context), inp)
    assert [e.kind for e in decision.events] == ["ringing"]
    assert upstream(decision).headers.get_all(b"via") == CALLER_VIAS


@pytest.mark.parametrize("status", [200, 486, 487])
def test_final_with_ringing_at_carries_the_edges_ringing_time(kit: Any, status: int) -> None:
    # One event, not a ringing event and then the final's: the ring time
    # travels on answered/failed (CallEvent.ringing_at), one JetStream write less.
    fwd, sent, inp = _call(kit, hide=False)
    ringing_180 = run(kit.envelope(kit.response(sent, 180), context=fwd.context), inp)
    env = _rang(kit.envelope(kit.response(sent, status), context=fwd.context), NOW - 3.5)
    decision = run(env, inp)
    end = "answered" if status == 200 else "failed"
    assert [e.kind for e in decision.events] == [end]
    final = decision.events[0]
    assert final.ringing_at == NOW - 3.5
    assert final.at == NOW
    # The same call and leg a 180 asked about reports.
    assert (final.caller, final.callee, final.destination) == (
        ringing_180.events[0].caller,
        ringing_180.events[0].callee,
        ringing_180.events[0].destination,
    )
    assert ringing_180.events[0].ringing_at is None
    assert upstream(decision).status == status


def test_final_without_ringing_at_does_not_ring(kit: Any) -> None:
    fwd, sent, inp = _call(kit, hide=False)
    decision = run(kit.envelope(kit.response(sent, 200), context=fwd.context), inp)
    assert [e.kind for e in decision.events] == ["answered"]
    assert decision.events[0].ringing_at is None


def test_hidden_call_rang_on_its_180_not_again_on_the_final(kit: Any) -> None:
    fwd, sent, inp = _call(kit, hide=True)
    assert fwd.all_responses is True  # every provisional reaches the router
    ringing = run(kit.envelope(kit.response(sent, 180), context=fwd.context), inp)
    assert [e.kind for e in ringing.events] == ["ringing"]
    ok = run(_rang(kit.envelope(kit.response(sent, 200), context=fwd.context), NOW), inp)
    assert [e.kind for e in ok.events] == ["answered"]
    assert ok.events[0].ringing_at is None


def test_re_invite_final_does_not_ring(kit: Any) -> None:
    fwd, sent, inp = _call(kit, hide=False)
    ok = upstream(run(kit.envelope(kit.response(sent, 200), context=fwd.context), inp))
    route = ok.headers.get_all(b"record-route")[0].decode()
    reinvite = kit.request("INVITE", from_tag="ftag", to_tag="ttag", extra=[("Route", route)])
    fwd2, out = forwarded(run(kit.envelope(reinvite), inp))
    assert fwd2.all_responses is False
    again = run(_rang(kit.envelope(kit.response(out, 200), context=fwd2.context), NOW), inp)
    assert "ringing" not in [e.kind for e in again.events]
    assert all(e.ringing_at is None for e in again.events)


def test_failover_after_ringing_reports_the_first_attempts_ringing(kit: Any) -> None:
    fwd, sent, inp = _call(kit, hide=False, legs=2)
    env = _rang(kit.envelope(kit.response(sent, 503), context=fwd.context), NOW - 2)
    decision = run(env, inp)
    assert decision.outcome == "failover_503"
    assert [e.kind for e in decision.events] == ["ringing", "attempt"]
    assert decision.events[0].destination == f"{PBX.host}:{PBX.port}"
    assert decision.events[0].event_id.endswith(".ringing.0")
    assert decision.events[0].at == NOW - 2
    assert decision.events[1].ringing_at is None  # the next leg has not rung


def test_failover_without_ringing_reports_the_attempt_only(kit: Any) -> None:
    fwd, sent, inp = _call(kit, hide=False, legs=2)
    decision = run(kit.envelope(kit.response(sent, 503), context=fwd.context), inp)
    assert decision.outcome == "failover_503"
    assert [e.kind for e in decision.events] == ["attempt"]


@pytest.mark.parametrize("method", ["OPTIONS", "MESSAGE"])
def test_other_initial_requests_leave_provisionals_to_the_edge(kit: Any, method: str) -> None:
    inp = inputs(_routing(kit, hide=False))
    fwd, _ = forwarded(run(kit.envelope(_invite(kit, method)), inp))
    assert fwd.all_responses is False


def test_in_dialog_requests_without_hiding_leave_provisionals_to_the_edge(kit: Any) -> None:
    fwd, sent, inp = _call(kit, hide=False)
    ok = upstream(run(kit.envelope(kit.response(sent, 200), context=fwd.context), inp))
    route = ok.headers.get_all(b"record-route")[0].decode()
    bye = kit.request("BYE", from_tag="ftag", to_tag="ttag", extra=[("Route", route)])
    fwd2, out = forwarded(run(kit.envelope(bye), inp))
    assert fwd2.all_responses is False
    assert out.headers.get_all(b"via")[1:] == [CALLER_VIAS[0]]


# -- Timer C, failover, setup time ----------------------------------------------------------------


def test_edge_made_tells_the_edges_408_from_a_uas(kit: Any) -> None:
    _, sent, _ = _call(kit, hide=False)
    assert edge_made(_edge_408(sent))
    assert not edge_made(kit.response(sent, 408))
    assert not edge_made(make_response(sent, 408, to_tag=b"uas-picked"))


@pytest.mark.parametrize(
    ("made_by_edge", "side"),
    [pytest.param(True, "system", id="timer-c"), pytest.param(False, None, id="uas-408")],
)
def test_timer_c_408_is_a_system_no_answer(kit: Any, made_by_edge: bool, side: str | None) -> None:
    fwd, sent, inp = _call(kit, hide=False)
    resp = _edge_408(sent) if made_by_edge else kit.response(sent, 408)
    decision = run(kit.envelope(resp, context=fwd.context), inp)
    assert upstream(decision).status == 408
    [failed] = decision.events
    assert (failed.kind, failed.status_code, failed.hangup_side) == ("failed", 408, side)


def test_cancelled_invite_487_was_ended_by_the_caller(kit: Any) -> None:
    fwd, sent, inp = _call(kit, hide=False)
    decision = run(kit.envelope(kit.response(sent, 487), context=fwd.context), inp)
    [failed] = decision.events
    assert (failed.kind, failed.status_code, failed.hangup_side) == ("failed", 487, "caller")


@pytest.mark.parametrize("status", [408, 500])
def test_edge_made_finals_fail_over(kit: Any, status: int) -> None:
    # Timer C's 408 and a transport error's 503 (a 500 once the edge picked it
    # as its fork's best response, §16.7 step 6) both try the next leg.
    fwd, sent, inp = _call(kit, hide=False, legs=2)
    resp = _edge_408(sent) if status == 408 else kit.response(sent, 500)
    decision = run(kit.envelope(resp, context=fwd.context), inp)
    fwd2, _ = forwarded(decision)
    assert decision.outcome == f"failover_{status}"
    assert fwd2.targets[0].host == "10.0.0.51"
    assert fwd2.all_responses is False
    assert [e.kind for e in decision.events] == ["attempt"]


def test_setup_time_is_invite_to_2xx_by_the_edges_clock(kit: Any) -> None:
    inp = inputs(_routing(kit, hide=False, legs=2))
    fwd, sent = forwarded(run(_at(kit.envelope(_invite(kit)), NOW - 4.0), inp))
    failover = run(_at(kit.envelope(kit.response(sent, 503), context=fwd.context), NOW - 1), inp)
    fwd2, sent2 = forwarded(failover)
    assert failover.setup_seconds is None
    ok = _at(kit.envelope(kit.response(sent2, 200), context=fwd2.context), NOW + 2.5)
    decision = run(ok, inp)
    assert decision.setup_seconds == pytest.approx(6.5)
    ringing = run(_at(kit.envelope(kit.response(sent2, 180), context=fwd2.context), NOW), inp)
    assert ringing.setup_seconds is None


def test_setup_time_unknown_without_the_invites_receive_time(kit: Any) -> None:
    fwd, sent, inp = _call(kit, hide=False)
    ctx = decode_context(fwd.context or b"")
    old = encode_context(msgspec.structs.replace(ctx, received_at=0.0))
    decision = run(kit.envelope(kit.response(sent, 200), context=old), inp)
    assert decision.setup_seconds is None
    assert [e.kind for e in decision.events] == ["answered"]
