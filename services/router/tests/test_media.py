"""Media anchoring in the router: when decide() asks the media service, and apply_media()."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import nats.errors
import pytest

from sipmesh_bus.schema import (
    Forward,
    MediaAnswer,
    MediaDelete,
    MediaOffer,
    MediaReply,
    SendResponse,
    decode_media_offer,
    encode,
)
from sipmesh_router import core, media
from sipmesh_router.config import Policy, RouterSettings, make_policy
from sipmesh_router.context import decode_context, open_token
from sipmesh_router.mediabus import MediaBus
from sipmesh_router.model import Decision, Inputs
from sipmesh_router.routes import EMPTY_VIEW, Hop, Peer
from sipmsg import Request, Response, parse
from sipmsg.digest import NonceManager

NOW = 1_700_000_000.0
SECRET = b"0123456789abcdef0123456789abcdef"
PBX = Hop(host="10.0.0.50", port=5080, uri="sip:2001@10.0.0.50:5080", dispatcher_set="pbx")
PBX2 = Hop(host="10.0.0.51", port=5080, uri="sip:2001@10.0.0.51:5080", dispatcher_set="pbx")
SDP_CALLER = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)
ANCHORED = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 30000 RTP/AVP 0\r\n"
)


def _policy(mode: str = "always", **overrides: str) -> Policy:
    settings = RouterSettings(
        domain="example.com",
        auth=False,
        media=mode,  # type: ignore[arg-type]
        media_overrides=overrides,  # type: ignore[arg-type]
    )
    return make_policy(settings, SECRET)


def _inputs(policy: Policy, routing: Any = EMPTY_VIEW, locations: Any = None) -> Inputs:
    return Inputs(
        routing=routing,
        policy=policy,
        nonces=NonceManager(secret=SECRET, ttl=300.0),
        now=NOW,
        entropy=b"e" * 12,
        locations=locations or {},
    )


def _run(kit: Any, msg: Request | Response, inp: Inputs, **env: Any) -> Decision:
    envelope = kit.envelope(msg, **env)
    return core.decide(envelope, parse(envelope.data), inp)


def _ok(instance: str = "rtp1", sdp: bytes = ANCHORED) -> MediaReply:
    return MediaReply(ok=True, sdp=sdp, instance=instance)


def _sdp(ip: str = "198.51.100.7") -> str:
    return SDP_CALLER.format(ip=ip)


def _pbx_invite(kit: Any, policy: Policy, *, sdp: str | None = None) -> tuple[Decision, Inputs]:
    routing = kit.FakeRouting(
        peers={"198.51.100.7": Peer(name="carrier")},
        selectors={"2001": "pbx"},
        sets={"pbx": [PBX, PBX2]},
    )
    inp = _inputs(policy, routing)
    req = kit.request(ruri="sip:2001@example.com", body=_sdp() if sdp is None else sdp)
    return _run(kit, req, inp), inp


def _forwarded(decision: Decision) -> tuple[Forward, Request]:
    assert isinstance(decision.reply, Forward), decision
    req = parse(decision.reply.data)
    assert isinstance(req, Request)
    return decision.reply, req


# -- looks_natted -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "sdp_ip", "contact", "natted"),
    [
        pytest.param("203.0.113.9", "203.0.113.9", None, False, id="same-public"),
        pytest.param("127.0.0.1", "127.0.0.1", "127.0.0.1", False, id="loopback"),
        pytest.param("203.0.113.9", "192.168.1.20", None, True, id="private-sdp"),
        pytest.param("203.0.113.9", None, "10.0.0.9", True, id="private-contact"),
        pytest.param("203.0.113.9", "198.51.100.1", None, True, id="other-public-sdp"),
        pytest.param("10.0.0.9", "10.0.0.9", "10.0.0.9", False, id="same-private-lan"),
        pytest.param("203.0.113.9", None, "pbx.example.com", False, id="hostname-ignored"),
    ],
)
def test_looks_natted(source: str, sdp_ip: str | None, contact: str | None, natted: bool) -> None:
    sdp = None if sdp_ip is None else _sdp(sdp_ip).encode()
    assert media.looks_natted(source, sdp=sdp, contact_host=contact) is natted


# -- the offer of a new call ----------------------------------------------------------------


def test_decide_invite_with_sdp_asks_for_an_offer_when_always(kit: Any) -> None:
    decision, _ = _pbx_invite(kit, _policy("always"))
    assert isinstance(decision.media, MediaOffer)
    assert decision.media.sdp == _sdp().encode()
    assert (decision.media.call_id, decision.media.from_tag) == ("call-1@host", "ftag")
    assert decision.media.to_tag is None
    assert decision.media.received_from is None  # a trusted peer is never "NATed"
    fwd, _ = _forwarded(decision)
    assert decode_context(fwd.context or b"").media is True


@pytest.mark.parametrize(
    ("mode", "overrides", "sdp"),
    [
        pytest.param("never", {}, None, id="never"),
        pytest.param("nat", {}, None, id="nat-peer-not-natted"),
        pytest.param("always", {"set:pbx": "never"}, None, id="set-override"),
        pytest.param("always", {"peer:carrier": "never"}, None, id="peer-override"),
        pytest.param("always", {}, "", id="no-sdp-late-offer"),
    ],
)
def test_decide_invite_not_anchored(
    kit: Any, mode: str, overrides: dict[str, str], sdp: str | None
) -> None:
    decision, _ = _pbx_invite(kit, _policy(mode, **overrides), sdp=sdp)
    assert decision.media is None
    fwd, _ = _forwarded(decision)
    assert decode_context(fwd.context or b"").media is False


def test_decide_destination_override_wins_over_peer(kit: Any) -> None:
    policy = _policy("never", **{"peer:carrier": "never", "set:pbx": "always"})
    decision, _ = _pbx_invite(kit, policy)
    assert isinstance(decision.media, MediaOffer)


def test_decide_nat_mode_anchors_a_natted_phone_with_its_source(kit: Any) -> None:
    policy = _policy("nat")
    bob = kit.binding("sip:bob@203.0.113.9:40000", host="203.0.113.9", port=40000)
    inp = _inputs(policy, locations=kit.bindings("bob", bob))
    req = kit.request(from_="sip:alice@example.com", body=_sdp("192.168.1.20"))
    decision = _run(kit, req, inp)  # from 198.51.100.7, SDP says 192.168.1.20
    assert isinstance(decision.media, MediaOffer)
    assert decision.media.received_from == "198.51.100.7"
    assert decision.media.flags == list(media.NAT_FLAGS)


def test_decide_nat_mode_anchors_for_a_natted_callee(kit: Any) -> None:
    policy = _policy("nat")
    bob = kit.binding()  # Contact 10.0.0.9, registered from 203.0.113.9
    inp = _inputs(policy, locations=kit.bindings("bob", bob))
    req = kit.request(from_="sip:alice@example.com", body=_sdp())
    decision = _run(kit, req, inp)
    assert isinstance(decision.media, MediaOffer)
    assert decision.media.received_from is None  # the caller itself is not NATed


# -- apply_media ------------------------------------------------------------------------------


def test_apply_media_swaps_the_sdp_and_remembers_the_instance(kit: Any) -> None:
    decision, _ = _pbx_invite(kit, _policy("always"))
    done = media.apply_media(decision, _ok("rtp2"), secret=SECRET)
    assert done.media is None
    fwd, sent = _forwarded(done)
    assert sent.body == ANCHORED
    assert sent.header(b"content-length") == b"%d" % len(ANCHORED)
    ctx = decode_context(fwd.context or b"")
    assert (ctx.media, ctx.media_instance) == (True, "rtp2")
    stored = parse(ctx.request)
    assert stored.body == ANCHORED  # a failover forwards the anchored offer too
    token = open_token(ctx.token.encode(), secret=SECRET, call_id=b"call-1@host")
    assert token is not None
    assert (token.media, token.media_instance) == (True, "rtp2")
    assert ctx.token.encode() in sent.headers.get_all(b"record-route")[0]
    assert [(e.kind, e.media_instance, e.media_error) for e in done.events] == [
        ("attempt", "rtp2", None)
    ]


@pytest.mark.parametrize("code", ["instance_down", "unavailable", "timeout", "no_instance"])
def test_apply_media_failure_goes_on_unanchored_and_says_why(kit: Any, code: str) -> None:
    decision, _ = _pbx_invite(kit, _policy("always"))
    reply = MediaReply(ok=False, code=code, error="x", instance="rtp1")
    done = media.apply_media(decision, reply, secret=SECRET)
    fwd, sent = _forwarded(done)
    assert sent.body == _sdp().encode()
    ctx = decode_context(fwd.context or b"")
    assert ctx.media is False
    token = open_token(ctx.token.encode(), secret=SECRET, call_id=b"call-1@host")
    assert token is not None
    assert token.media is False
    assert [e.media_error for e in done.events] == [code]


def test_apply_media_without_a_request_changes_nothing(kit: Any) -> None:
    decision, _ = _pbx_invite(kit, _policy("never"))
    assert media.apply_media(decision, _ok(), secret=SECRET) is decision


# -- responses --------------------------------------------------------------------------------


def _anchored_call(kit: Any) -> tuple[Forward, Request, Inputs]:
    decision, inp = _pbx_invite(kit, _policy("always"))
    done = media.apply_media(decision, _ok("rtp1"), secret=SECRET)
    fwd, sent = _forwarded(done)
    return fwd, sent, inp


@pytest.mark.parametrize("status", [183, 200])
def test_decide_response_with_sdp_asks_for_an_answer(kit: Any, status: int) -> None:
    fwd, sent, inp = _anchored_call(kit)
    resp = kit.response(sent, status, body=_sdp("10.0.0.50"))
    decision = _run(kit, resp, inp, source=("10.0.0.50", 5080), context=fwd.context)
    assert isinstance(decision.media, MediaAnswer)
    assert (decision.media.from_tag, decision.media.to_tag) == ("ftag", "ttag")
    assert decision.media.instance == "rtp1"
    done = media.apply_media(decision, _ok("rtp1"), secret=SECRET)
    assert isinstance(done.reply, SendResponse)
    assert parse(done.reply.data).body == ANCHORED
    if status == 200:
        assert done.dialog_put is not None
        assert done.dialog_put[1].media_instance == "rtp1"
        assert done.events[0].media_instance == "rtp1"


def test_decide_answer_on_a_dead_instance_is_reported(kit: Any) -> None:
    fwd, sent, inp = _anchored_call(kit)
    resp = kit.response(sent, 200, body=_sdp("10.0.0.50"))
    decision = _run(kit, resp, inp, source=("10.0.0.50", 5080), context=fwd.context)
    dead = MediaReply(ok=False, code="instance_down", error="rtp1 is down", instance="rtp1")
    done = media.apply_media(decision, dead, secret=SECRET)
    assert isinstance(done.reply, SendResponse)
    assert parse(done.reply.data).body == _sdp("10.0.0.50").encode()
    assert [(e.kind, e.media_error) for e in done.events] == [("answered", "instance_down")]
    assert done.dialog_put is not None
    assert done.dialog_put[1].media_error == "instance_down"


def test_decide_response_without_sdp_or_anchoring_asks_nothing(kit: Any) -> None:
    fwd, sent, inp = _anchored_call(kit)
    ringing = _run(kit, kit.response(sent, 180), inp, context=fwd.context)
    assert ringing.media is None
    plain, inp2 = _pbx_invite(kit, _policy("never"))
    pfwd, psent = _forwarded(plain)
    ok = _run(kit, kit.response(psent, 200, body=_sdp()), inp2, context=pfwd.context)
    assert ok.media is None


@pytest.mark.parametrize("status", [486, 487, 603])
def test_decide_failed_anchored_call_deletes_the_session(kit: Any, status: int) -> None:
    fwd, sent, inp = _anchored_call(kit)
    decision = _run(kit, kit.response(sent, status), inp, context=fwd.context)
    assert decision.media_delete == MediaDelete(call_id="call-1@host", instance="rtp1")


def test_decide_failover_keeps_the_session(kit: Any) -> None:
    fwd, sent, inp = _anchored_call(kit)
    decision = _run(kit, kit.response(sent, 503), inp, context=fwd.context)
    assert decision.media_delete is None
    again, req = _forwarded(decision)
    assert req.body == ANCHORED
    assert decode_context(again.context or b"").media_instance == "rtp1"


# -- in-dialog ------------------------------------------------------------------------------


def _dialog(kit: Any, *, anchored: bool = True) -> tuple[bytes, Inputs]:
    """An anchored call alice -> bob (phones), answered; returns our Record-Route value."""
    policy = _policy("always" if anchored else "never")
    inp = _inputs(policy, locations=kit.bindings("bob", kit.binding()))
    invite = kit.request(from_="sip:alice@example.com", from_tag="atag", body=_sdp())
    decision = _run(kit, invite, inp)
    if anchored:
        decision = media.apply_media(decision, _ok("rtp9"), secret=SECRET)
    fwd, sent = _forwarded(decision)
    ok = kit.response(sent, 200, body=_sdp("203.0.113.9"))
    answer = _run(kit, ok, inp, source=("203.0.113.9", 40000), context=fwd.context)
    if anchored:
        answer = media.apply_media(answer, _ok("rtp9"), secret=SECRET)
    assert isinstance(answer.reply, SendResponse)
    up = parse(answer.reply.data)
    return up.headers.get_all(b"record-route")[0], inp


def _in_dialog(kit: Any, method: str, rr: bytes, *, from_caller: bool, body: str = "") -> Request:
    tags = ("atag", "ttag") if from_caller else ("ttag", "atag")
    req: Request = kit.request(
        method,
        ruri="sip:bob@10.0.0.9:5060" if from_caller else "sip:caller@10.1.1.1:5060",
        from_tag=tags[0],
        to_tag=tags[1],
        extra=[("Route", rr.decode())],
        body=body,
    )
    return req


@pytest.mark.parametrize("from_caller", [True, False], ids=["caller", "callee"])
def test_decide_bye_of_an_anchored_call_deletes_on_its_instance(
    kit: Any, from_caller: bool
) -> None:
    rr, inp = _dialog(kit)
    decision = _run(kit, _in_dialog(kit, "BYE", rr, from_caller=from_caller), inp)
    assert decision.media_delete == MediaDelete(call_id="call-1@host", instance="rtp9")
    assert decision.events[0].media_instance == "rtp9"


def test_decide_bye_of_an_unanchored_call_deletes_nothing(kit: Any) -> None:
    rr, inp = _dialog(kit, anchored=False)
    decision = _run(kit, _in_dialog(kit, "BYE", rr, from_caller=True), inp)
    assert decision.media_delete is None
    assert decision.media is None


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_decide_in_dialog_offer_goes_to_the_calls_instance(kit: Any, method: str) -> None:
    rr, inp = _dialog(kit)
    req = _in_dialog(kit, method, rr, from_caller=False, body=_sdp("203.0.113.9"))
    decision = _run(kit, req, inp, source=("203.0.113.9", 40000))
    assert isinstance(decision.media, MediaOffer)
    assert (decision.media.from_tag, decision.media.to_tag) == ("ttag", "atag")
    assert decision.media.instance == "rtp9"
    done = media.apply_media(decision, _ok("rtp9"), secret=SECRET)
    fwd, sent = _forwarded(done)
    assert sent.body == ANCHORED
    ctx = decode_context(fwd.context or b"")
    assert (ctx.media, ctx.in_dialog, ctx.media_instance) == (True, True, "rtp9")
    # Its 200 is the answer; a failure (491) keeps the call's session.
    ok = _run(kit, kit.response(sent, 200, body=_sdp()), inp, context=fwd.context)
    assert isinstance(ok.media, MediaAnswer)
    assert ok.media.instance == "rtp9"
    pending = _run(kit, kit.response(sent, 491), inp, context=fwd.context)
    assert pending.media_delete is None


def test_decide_in_dialog_without_sdp_asks_nothing(kit: Any) -> None:
    rr, inp = _dialog(kit)
    decision = _run(kit, _in_dialog(kit, "INFO", rr, from_caller=True), inp)
    assert decision.media is None
    assert decision.media_delete is None


# -- settings ----------------------------------------------------------------------------------


def test_make_policy_orders_the_407_algorithms(kit: Any) -> None:
    settings = RouterSettings(domain="example.com", algorithms=("MD5",))
    policy = make_policy(settings, SECRET)
    inp = _inputs(policy, locations=kit.bindings("bob", kit.binding()))
    inp = msgspec.structs.replace(inp, subscribers={"example=2Ecom.alice": kit.subscriber("alice")})
    decision = _run(kit, kit.request(from_="sip:alice@example.com"), inp)
    assert isinstance(decision.reply, SendResponse)
    resp = parse(decision.reply.data)
    assert isinstance(resp, Response)
    assert resp.status == 407
    assert [c.algorithm for c in resp.proxy_authenticate] == [b"MD5"]


def test_router_settings_refuse_an_unknown_media_mode() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"media": "sometimes"}, RouterSettings)


# -- MediaBus --------------------------------------------------------------------------------


class _Msg:
    def __init__(self, data: bytes) -> None:
        self.data = data


class _FakeNats:
    def __init__(self, outcome: bytes | Exception) -> None:
        self.outcome = outcome
        self.sent: list[tuple[str, bytes, float]] = []

    async def request(self, subject: str, payload: bytes = b"", timeout: float = 0.5) -> _Msg:
        self.sent.append((subject, payload, timeout))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return _Msg(self.outcome)


def test_mediabus_sends_to_the_commands_subject() -> None:
    fake = _FakeNats(encode(_ok("rtp1")))
    bus = MediaBus(fake, timeout=0.7)
    offer = MediaOffer(call_id="c", from_tag="f", sdp=b"v=0\r\n")
    reply = asyncio.run(bus.ask(offer))
    assert reply == _ok("rtp1")
    [(subject, payload, timeout)] = fake.sent
    assert (subject, timeout) == ("sip.media.offer", 0.7)
    assert decode_media_offer(payload) == offer


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        pytest.param(nats.errors.NoRespondersError(), "unavailable", id="no-responders"),
        pytest.param(nats.errors.TimeoutError(), "timeout", id="timeout"),
        pytest.param(nats.errors.ConnectionClosedError(), "unavailable", id="closed"),
        pytest.param(b"\xc1garbage", "bad_reply", id="garbage"),
    ],
)
def test_mediabus_failures_are_replies(outcome: bytes | Exception, code: str) -> None:
    bus = MediaBus(_FakeNats(outcome), timeout=0.1)
    reply = asyncio.run(bus.ask(MediaDelete(call_id="c")))
    assert (reply.ok, reply.code) == (False, code)
