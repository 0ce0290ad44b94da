"""The registrar's pure core: RFC 3261 §10.3 and digest authentication, table-driven."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from sipmesh_bus.records import Binding, BindingSet, aor_key
from sipmesh_registrar import core
from sipmesh_registrar.core import Admitted, Answer, Policy, Registered
from sipmesh_registrar.model import KEY_TTL_MARGIN
from sipmsg import Request, Response
from sipmsg.address import Star
from sipmsg.digest import NonceManager, build_authorization, challenge_for

NOW = 1_700_000_000.0
NONCES = NonceManager(secret=b"k" * 32, ttl=300.0)
POLICY = Policy(domains=frozenset({"example.com"}), aliases={"192.0.2.10": "example.com"})
OPEN = dataclasses.replace(POLICY, auth=False)
PASSWORD = "s3cret"


def admit(req: Request, policy: Policy = POLICY, subs: Any = None, now: float = NOW) -> Any:
    return core.admit(
        req, policy, subscribers=subs or {}, nonces=NONCES, now=now, entropy=b"e" * 12
    )


def challenged(ua: Any, now: float = NOW) -> Response:
    first = admit(ua.register(), now=now)
    assert isinstance(first, Answer)
    assert first.response.status == 401
    return first.response


# --- authentication ---------------------------------------------------------------


def _no_credentials(ua: Any, kit: Any) -> tuple[Request, Any, float]:
    return ua.register(), kit.table(kit.subscriber("alice", PASSWORD)), NOW


def _right(algorithm: bytes) -> Callable[[Any, Any], tuple[Request, Any, float]]:
    def case(ua: Any, kit: Any) -> tuple[Request, Any, float]:
        auth = ua.answer(challenged(ua), PASSWORD, algorithm=algorithm)
        return ua.register(authorization=auth), kit.table(kit.subscriber("alice", PASSWORD)), NOW

    return case


def _wrong_password(ua: Any, kit: Any) -> tuple[Request, Any, float]:
    auth = ua.answer(challenged(ua), "guess")
    return ua.register(authorization=auth), kit.table(kit.subscriber("alice", PASSWORD)), NOW


def _unknown_user(ua: Any, kit: Any) -> tuple[Request, Any, float]:
    auth = ua.answer(challenged(ua), PASSWORD)
    return ua.register(authorization=auth), kit.table(kit.subscriber("bob", PASSWORD)), NOW


def _disabled(ua: Any, kit: Any) -> tuple[Request, Any, float]:
    auth = ua.answer(challenged(ua), PASSWORD)
    subs = kit.table(kit.subscriber("alice", PASSWORD, enabled=False))
    return ua.register(authorization=auth), subs, NOW


def _stale(password: str) -> Callable[[Any, Any], tuple[Request, Any, float]]:
    def case(ua: Any, kit: Any) -> tuple[Request, Any, float]:
        auth = ua.answer(challenged(ua), password)
        subs = kit.table(kit.subscriber("alice", PASSWORD))
        return ua.register(authorization=auth), subs, NOW + 301.0

    return case


def _forged_nonce(ua: Any, kit: Any) -> tuple[Request, Any, float]:
    forged = NonceManager(secret=b"x" * 32).issue(NOW, entropy=b"1", realm=b"example.com")
    creds = build_authorization(
        challenge_for(b"example.com", forged),
        username=b"alice",
        method=b"REGISTER",
        uri=b"sip:example.com",
        cnonce=b"c",
        password=PASSWORD.encode(),
    )
    subs = kit.table(kit.subscriber("alice", PASSWORD))
    return ua.register(authorization=bytes(creds)), subs, NOW


def _someone_else(ua: Any, kit: Any) -> tuple[Request, Any, float]:
    # Bob authenticates correctly, but registers Alice's AoR.
    auth = ua.answer(challenged(ua), "bobpw", username="bob")
    subs = kit.table(kit.subscriber("alice", PASSWORD), kit.subscriber("bob", "bobpw"))
    return ua.register(authorization=auth), subs, NOW


def _uri_mismatch(ua: Any, kit: Any) -> tuple[Request, Any, float]:
    auth = ua.answer(challenged(ua), PASSWORD, uri="sip:elsewhere.org")
    return ua.register(authorization=auth), kit.table(kit.subscriber("alice", PASSWORD)), NOW


def _other_realm(ua: Any, kit: Any) -> tuple[Request, Any, float]:
    auth = ua.answer(challenged(ua), PASSWORD).replace(b'realm="example.com"', b'realm="x.org"')
    return ua.register(authorization=auth), kit.table(kit.subscriber("alice", PASSWORD)), NOW


def _no_qop(ua: Any, kit: Any) -> tuple[Request, Any, float]:
    nonce = kit.pick(challenged(ua), b"MD5").nonce
    creds = build_authorization(
        challenge_for(b"example.com", nonce, algorithm=b"MD5", qop=()),
        username=b"alice",
        method=b"REGISTER",
        uri=b"sip:example.com",
        cnonce=b"c",
        password=PASSWORD.encode(),
    )
    subs = kit.table(kit.subscriber("alice", PASSWORD))
    return ua.register(authorization=bytes(creds)), subs, NOW


AUTH_CASES = [
    pytest.param(_no_credentials, (401, "challenge", None), id="no-credentials"),
    pytest.param(_right(b"SHA-256"), (0, "admitted", None), id="sha256-right"),
    pytest.param(_right(b"MD5"), (0, "admitted", None), id="md5-right"),
    pytest.param(_wrong_password, (401, "auth_failed", "wrong_password"), id="wrong-password"),
    pytest.param(_unknown_user, (401, "auth_failed", "unknown_user"), id="unknown-user"),
    pytest.param(_disabled, (401, "auth_failed", "unknown_user"), id="disabled-user"),
    pytest.param(_stale(PASSWORD), (401, "stale", None), id="stale-nonce-right-password"),
    pytest.param(_stale("guess"), (401, "auth_failed", "wrong_password"), id="stale-nonce-wrong"),
    pytest.param(_forged_nonce, (401, "auth_failed", "invalid_nonce"), id="forged-nonce"),
    pytest.param(_someone_else, (403, "forbidden", None), id="someone-elses-aor"),
    pytest.param(_uri_mismatch, (400, "bad_request", None), id="digest-uri-mismatch"),
    pytest.param(_other_realm, (401, "challenge", None), id="credentials-for-other-realm"),
    pytest.param(_no_qop, (401, "auth_failed", "bad_qop"), id="rfc2069-no-qop"),
]


@pytest.mark.parametrize(("make", "expected"), AUTH_CASES)
def test_core_authentication(
    make: Callable[[Any, Any], tuple[Request, Any, float]],
    expected: tuple[int, str, str | None],
    ua: Any,
    kit: Any,
) -> None:
    status, result, failure = expected
    req, subs, now = make(ua, kit)
    decision = admit(req, subs=subs, now=now)
    if status == 0:
        assert isinstance(decision, Admitted)
        assert decision.replay is not None
        assert decision.replay.nc == 1
        # Remembered until the nonce is stale on every replica (ttl plus skew).
        assert now < decision.replay.until <= now + NONCES.ttl + NONCES.max_skew
        return
    assert isinstance(decision, Answer)
    assert (decision.response.status, decision.result, decision.auth_failure) == (
        status,
        result,
        failure,
    )
    if status == 401:
        challenges = decision.response.www_authenticate
        # RFC 8760: SHA-256 first, MD5 second, both qop=auth, realm = the domain.
        assert [c.algorithm for c in challenges] == [b"SHA-256", b"MD5"]
        assert all(c.qop == (b"auth",) and c.realm == b"example.com" for c in challenges)
        assert all(c.stale is (result == "stale") for c in challenges)
        assert NONCES.check(challenges[0].nonce, now, realm=b"example.com").value == "valid"


def test_core_unknown_user_looks_like_wrong_password(ua: Any, kit: Any) -> None:
    subs = kit.table(kit.subscriber("alice", PASSWORD))
    wrong = admit(ua.register(authorization=ua.answer(challenged(ua), "guess")), subs=subs)
    ghost = kit.UA(user="ghost")
    unknown = admit(ghost.register(authorization=ghost.answer(challenged(ghost), "guess")))
    assert isinstance(wrong, Answer)
    assert isinstance(unknown, Answer)
    assert wrong.response.status == unknown.response.status == 401
    assert wrong.response.reason == unknown.response.reason
    assert [n for n, _, _ in wrong.response.headers] == [n for n, _, _ in unknown.response.headers]


def test_core_replay_names_nonce_and_count(ua: Any, kit: Any) -> None:
    subs = kit.table(kit.subscriber("alice", PASSWORD))
    first = challenged(ua)
    one = admit(ua.register(authorization=ua.answer(first, PASSWORD, nc=1)), subs=subs)
    again = admit(ua.register(authorization=ua.answer(first, PASSWORD, nc=1)), subs=subs)
    two = admit(ua.register(authorization=ua.answer(first, PASSWORD, nc=2)), subs=subs)
    assert isinstance(one, Admitted)
    assert isinstance(again, Admitted)
    assert isinstance(two, Admitted)
    assert one.replay == again.replay
    assert one.replay is not None
    assert two.replay is not None
    assert (two.replay.nonce, two.replay.nc) == (one.replay.nonce, 2)
    later = challenged(ua, now=NOW + 1)
    other = admit(ua.register(authorization=ua.answer(later, PASSWORD)), subs=subs)
    assert isinstance(other, Admitted)
    assert other.replay is not None
    assert other.replay.nonce != one.replay.nonce


def test_core_replayed_is_a_fresh_challenge(ua: Any, kit: Any) -> None:
    subs = kit.table(kit.subscriber("alice", PASSWORD))
    first = challenged(ua)
    step = admit(ua.register(authorization=ua.answer(first, PASSWORD)), subs=subs)
    assert isinstance(step, Admitted)
    answer = core.replayed(step, NONCES, POLICY, now=NOW, entropy=b"f" * 12)
    assert (answer.response.status, answer.auth_failure) == (401, "replay")
    assert answer.response.www_authenticate[0].nonce != kit.pick(first, b"SHA-256").nonce
    assert not answer.response.www_authenticate[0].stale


def test_core_auth_off_admits_without_replay(ua: Any) -> None:
    decision = admit(ua.register(), policy=OPEN)
    assert isinstance(decision, Admitted)
    assert decision.replay is None
    assert decision.key == aor_key("alice", "example.com")
    assert decision.aor == "sip:alice@example.com"


# --- §10.3 steps 1-6 and the expiry of each contact ------------------------------

VALIDATION_CASES = [
    pytest.param({}, (0, "", ""), id="plain"),
    pytest.param({"to": "<sip:alice@other.org>"}, (404, "not_found", ""), id="domain-not-served"),
    pytest.param(
        {"ruri": "sip:other.org", "to": "<sip:alice@other.org>"},
        (404, "not_found", ""),
        id="foreign-aor-and-domain",
    ),
    pytest.param({"ruri": "sip:192.0.2.10"}, (0, "", ""), id="alias-in-request-uri"),
    pytest.param({"to": "<sip:alice@EXAMPLE.com.>"}, (0, "", ""), id="domain-case-and-dot"),
    pytest.param({"ruri": "sip:198.51.100.1"}, (0, "", ""), id="unserved-ip-request-uri"),
    pytest.param({"to": "<tel:+15551234>"}, (400, "bad_request", ""), id="tel-aor"),
    pytest.param({"to": "<sip:example.com>"}, (400, "bad_request", ""), id="aor-without-user"),
    pytest.param(
        {"extra": [("Require", "foo, path")]},
        (420, "bad_extension", "Unsupported: foo"),
        id="unknown-require",
    ),
    pytest.param({"extra": [("Require", "path")]}, (0, "", ""), id="require-path"),
    pytest.param({"contacts": ["*"], "expires": 0}, (0, "", ""), id="star-expires-0"),
    pytest.param({"contacts": ["*"]}, (400, "bad_request", ""), id="star-without-expires"),
    pytest.param(
        {"contacts": ["*"], "expires": 60}, (400, "bad_request", ""), id="star-expires-60"
    ),
    pytest.param(
        {"contacts": ["*", "<sip:a@192.0.2.1>"], "expires": 0},
        (400, "bad_request", ""),
        id="star-and-contact",
    ),
    pytest.param(
        {"contacts": ["<sip:a@192.0.2.1>;expires=30"]},
        (423, "interval_too_brief", "Min-Expires: 60"),
        id="contact-expires-too-brief",
    ),
    pytest.param({"expires": 59}, (423, "interval_too_brief", "Min-Expires: 60"), id="header-59"),
    pytest.param({"expires": 60}, (0, "", ""), id="header-60"),
    pytest.param(
        {"contacts": ["<sip:a@192.0.2.1>;expires=abc"]},
        (400, "bad_request", ""),
        id="bad-expires-param",
    ),
    pytest.param({"contacts": ["<sip:a@192.0.2.1>;q=1.5"]}, (400, "bad_request", ""), id="bad-q"),
    pytest.param(
        {"contacts": ["<sip:a@192.0.2.1>;reg-id=1"]},
        (400, "bad_request", ""),
        id="reg-id-without-instance",
    ),
    pytest.param(
        {"contacts": ['<sip:a@192.0.2.1>;reg-id=0;+sip.instance="<urn:uuid:1>"']},
        (400, "bad_request", ""),
        id="reg-id-zero",
    ),
]


@pytest.mark.parametrize(("kwargs", "expected"), VALIDATION_CASES)
def test_core_validation(kwargs: dict[str, Any], expected: tuple[int, str, str], ua: Any) -> None:
    status, result, header = expected
    decision = admit(ua.register(**kwargs), policy=OPEN)
    if status == 0:
        assert isinstance(decision, Admitted), getattr(decision, "response", None)
        return
    assert isinstance(decision, Answer)
    assert (decision.response.status, decision.result) == (status, result)
    if header:
        name, _, value = header.partition(": ")
        assert decision.response.header(name) == value.encode()


def test_core_not_register_is_405(ua: Any) -> None:
    req = ua.register()
    options = Request(method=b"OPTIONS", uri=req.uri, headers=req.headers)
    options = options.replace_header(b"CSeq", b"1 OPTIONS")
    decision = admit(options, policy=OPEN)
    assert isinstance(decision, Answer)
    assert decision.response.status == 405
    assert decision.response.header("allow") == b"REGISTER"


def test_core_expiry_default_header_param_and_clamp(ua: Any) -> None:
    policy = dataclasses.replace(OPEN, default_expires=1800, max_expires=7200)
    req = ua.register(
        ["<sip:a@192.0.2.1>", "<sip:b@192.0.2.1>;expires=100000", "<sip:c@192.0.2.1>;expires=0"],
        expires=900,
    )
    decision = admit(req, policy=policy)
    assert isinstance(decision, Admitted)
    assert isinstance(decision.contacts, tuple)
    assert [c.expires for c in decision.contacts] == [900, 7200, 0]
    bare = admit(ua.register(["<sip:a@192.0.2.1>"]), policy=policy)
    assert isinstance(bare, Admitted)
    assert isinstance(bare.contacts, tuple)
    assert bare.contacts[0].expires == 1800


def test_core_brief_interval_rule_only_under_an_hour(ua: Any) -> None:
    # §10.3: 423 "If and only if ... greater than zero AND smaller than one hour
    # AND less than a registrar-configured minimum".
    policy = dataclasses.replace(OPEN, min_expires=3600)
    brief = admit(ua.register(expires=3599), policy=policy)
    hour = admit(ua.register(expires=3600), policy=policy)
    zero = admit(ua.register(expires=0), policy=policy)
    assert isinstance(brief, Answer)
    assert brief.response.header("min-expires") == b"3600"
    assert isinstance(hour, Admitted)
    assert isinstance(zero, Admitted)


def test_core_no_contact_is_a_query(ua: Any) -> None:
    decision = admit(ua.register([]), policy=OPEN)
    assert isinstance(decision, Admitted)
    assert decision.contacts is None


def test_core_star(ua: Any) -> None:
    decision = admit(ua.register(["*"], expires=0), policy=OPEN)
    assert isinstance(decision, Admitted)
    assert isinstance(decision.contacts, Star)


# --- §10.3 step 7 and 8: bindings ---------------------------------------------------


def stored(*bindings: Binding) -> BindingSet:
    return BindingSet(aor="sip:alice@example.com", bindings=list(bindings))


def binding(contact: str, **kw: Any) -> Binding:
    fields: dict[str, Any] = {
        "contact": contact,
        "expires_at": NOW + 1000,
        "call_id": "reg-1@192.0.2.7",
        "cseq": 5,
        "registered_at": NOW - 100,
        "source_host": "198.51.100.9",
        "source_port": 5060,
        "transport": "udp",
        "edge_id": "edge-0",
    }
    fields.update(kw)
    return Binding(**fields)


def apply(
    req: Request, current: BindingSet | None, policy: Policy = OPEN, kit: Any = None
) -> Registered | Answer:
    step = admit(req, policy=policy)
    assert step.replay is None  # auth off: no nonce-count to check
    assert isinstance(step, Admitted)
    from sipmesh_bus.schema import Envelope

    env = Envelope(
        edge_id="edge-1",
        transport="tcp",
        source_host="203.0.113.5",
        source_port=40000,
        local_host="127.0.0.1",
        local_port=5060,
        connection_id="conn-7",
        received_at=NOW,
        data=bytes(req),
    )
    decision = core.apply_bindings(step, current, env, policy, now=NOW)
    assert not isinstance(decision, core.Replayed)
    return decision


def contacts_of(response: Response) -> list[bytes]:
    return response.headers.get_all("contact")


def test_core_new_binding_records_source_and_lists_it(ua: Any) -> None:
    req = ua.register(
        ['<sip:alice@192.0.2.7:5060>;q=0.5;+sip.instance="<urn:uuid:u1>"'],
        extra=[("User-Agent", "Phone/1.0")],
    )
    result = apply(req, None)
    assert isinstance(result, Registered)
    assert (result.result, result.changed, result.response.status) == ("ok", True, 200)
    assert result.bindings is not None
    [b] = result.bindings.bindings
    assert (b.contact, b.expires_at, b.cseq, b.call_id) == (
        "sip:alice@192.0.2.7:5060",
        NOW + 3600,
        1,
        "reg-1@192.0.2.7",
    )
    assert (b.source_host, b.source_port, b.transport, b.edge_id, b.connection_id) == (
        "203.0.113.5",
        40000,
        "tcp",
        "edge-1",
        "conn-7",
    )
    assert (b.q, b.instance, b.user_agent) == (0.5, "<urn:uuid:u1>", "Phone/1.0")
    assert contacts_of(result.response) == [
        b'<sip:alice@192.0.2.7:5060>;+sip.instance="<urn:uuid:u1>";q=0.5;expires=3600'
    ]
    assert result.response.header("date") == b"Tue, 14 Nov 2023 22:13:20 GMT"
    assert result.ttl == 3600 + KEY_TTL_MARGIN


ORDER_CASES = [
    # (stored call-id, stored cseq, request cseq) -> result
    pytest.param("reg-1@192.0.2.7", 5, 6, "ok", id="same-call-higher-cseq"),
    pytest.param("reg-1@192.0.2.7", 5, 5, "retransmission", id="same-call-equal-cseq"),
    pytest.param("reg-1@192.0.2.7", 5, 4, "out_of_order", id="same-call-lower-cseq"),
    pytest.param("other-call", 5, 1, "ok", id="other-call-lower-cseq"),
]


@pytest.mark.parametrize(("call_id", "stored_cseq", "cseq", "result"), ORDER_CASES)
def test_core_call_id_cseq_ordering(
    call_id: str, stored_cseq: int, cseq: int, result: str, ua: Any
) -> None:
    old = binding("sip:alice@192.0.2.7:5060", call_id=call_id, cseq=stored_cseq)
    decision = apply(ua.register(cseq=cseq, expires=600), stored(old))
    assert decision.result == result
    if result == "out_of_order":
        assert decision.response.status == 500
        return
    assert isinstance(decision, Registered)
    assert decision.changed is (result == "ok")
    assert decision.bindings is not None
    [b] = decision.bindings.bindings
    assert b.expires_at == (NOW + 600 if result == "ok" else old.expires_at)


def test_core_star_ordering_applies_to_every_binding(ua: Any) -> None:
    newer = binding("sip:alice@192.0.2.8", cseq=9)
    refused = apply(ua.register(["*"], expires=0, cseq=7), stored(newer))
    assert refused.response.status == 500
    removed = apply(ua.register(["*"], expires=0, cseq=10), stored(newer))
    assert isinstance(removed, Registered)
    assert (removed.bindings, removed.changed, removed.ttl) == (None, True, 0)
    assert contacts_of(removed.response) == []


def test_core_expires_zero_removes_only_that_contact(ua: Any) -> None:
    a = binding("sip:alice@192.0.2.7:5060", call_id="x")
    b = binding("sip:alice@192.0.2.99", call_id="y")
    result = apply(ua.register(["<sip:alice@192.0.2.7:5060>;expires=0"]), stored(a, b))
    assert isinstance(result, Registered)
    assert result.bindings is not None
    assert [x.contact for x in result.bindings.bindings] == ["sip:alice@192.0.2.99"]


def test_core_uri_comparison_matches_equivalent_contacts(ua: Any) -> None:
    # §19.1.4: host case-insensitive, parameter values compared case-insensitively.
    old = binding("sip:alice@HOST.example;transport=TCP", call_id="x")
    result = apply(ua.register(["<sip:alice@host.example;transport=tcp>"]), stored(old))
    assert isinstance(result, Registered)
    assert result.bindings is not None
    assert len(result.bindings.bindings) == 1


def test_core_several_contacts_and_expired_ones_ignored(ua: Any) -> None:
    dead = binding("sip:alice@192.0.2.50", expires_at=NOW - 1)
    result = apply(
        ua.register(["<sip:alice@192.0.2.1>;q=0.1", "<sip:alice@192.0.2.2>;q=0.9"]), stored(dead)
    )
    assert isinstance(result, Registered)
    assert result.bindings is not None
    assert [b.contact for b in result.bindings.bindings] == [
        "sip:alice@192.0.2.2",
        "sip:alice@192.0.2.1",
    ]
    assert len(contacts_of(result.response)) == 2


def test_core_query_lists_live_bindings_without_change(ua: Any) -> None:
    live = binding("sip:alice@192.0.2.1", expires_at=NOW + 99.6)
    dead = binding("sip:alice@192.0.2.2", expires_at=NOW)
    result = apply(ua.register([]), stored(live, dead))
    assert isinstance(result, Registered)
    assert (result.result, result.changed) == ("query", False)
    assert contacts_of(result.response) == [b"<sip:alice@192.0.2.1>;expires=100"]


@pytest.mark.parametrize(
    ("evict", "expected"),
    [pytest.param(False, 403, id="reject"), pytest.param(True, 200, id="evict-oldest")],
)
def test_core_max_contacts(evict: bool, expected: int, ua: Any) -> None:
    policy = dataclasses.replace(OPEN, max_contacts=2, evict_oldest=evict)
    old = binding("sip:alice@192.0.2.1", call_id="x", registered_at=NOW - 500)
    new = binding("sip:alice@192.0.2.2", call_id="y", registered_at=NOW - 10)
    result = apply(ua.register(["<sip:alice@192.0.2.3>"]), stored(old, new), policy)
    assert result.response.status == expected
    if evict:
        assert isinstance(result, Registered)
        assert result.bindings is not None
        assert {b.contact for b in result.bindings.bindings} == {
            "sip:alice@192.0.2.2",
            "sip:alice@192.0.2.3",
        }
    else:
        assert result.result == "too_many_contacts"


def test_core_outbound_flow_replaces_same_instance_and_reg_id(ua: Any) -> None:
    inst = '+sip.instance="<urn:uuid:u1>"'
    old = binding("sip:alice@192.0.2.1;ob", call_id="x", instance="<urn:uuid:u1>", reg_id=1)
    other_flow = binding("sip:alice@192.0.2.9", call_id="x", instance="<urn:uuid:u1>", reg_id=2)
    req = ua.register(
        [f"<sip:alice@198.51.100.3;ob>;reg-id=1;{inst}"], extra=[("Supported", "outbound")]
    )
    result = apply(req, stored(old, other_flow))
    assert isinstance(result, Registered)
    assert result.bindings is not None
    assert sorted((b.contact, b.reg_id) for b in result.bindings.bindings) == [
        ("sip:alice@192.0.2.9", 2),
        ("sip:alice@198.51.100.3;ob", 1),
    ]
    assert result.response.header("require") == b"outbound"


@pytest.mark.parametrize("supported", [True, False], ids=["ua-supports-path", "no-path-support"])
def test_core_path_stored_and_echoed_when_supported(supported: bool, ua: Any) -> None:
    extra = [("Path", "<sip:edge1.example.com;lr>"), ("Path", "<sip:p2.example.com;lr>")]
    if supported:
        extra.append(("Supported", "path"))
    result = apply(ua.register(extra=extra), None)
    assert isinstance(result, Registered)
    assert result.bindings is not None
    assert result.bindings.bindings[0].path == [
        "<sip:edge1.example.com;lr>",
        "<sip:p2.example.com;lr>",
    ]
    echoed = result.response.headers.get_all("path")
    assert echoed == (
        [b"<sip:edge1.example.com;lr>", b"<sip:p2.example.com;lr>"] if supported else []
    )


def test_core_server_error_has_retry_after(ua: Any) -> None:
    response = core.server_error(ua.register(), 503, retry_after=5)
    assert (response.status, response.header("retry-after")) == (503, b"5")


# --- the challenge path parses only what a 401 needs -------------------------------


def test_core_challenge_path_still_refuses_other_schemes(ua: Any) -> None:
    decision = admit(ua.register(ruri="tel:+15551234"))
    assert isinstance(decision, Answer)
    assert decision.response.status == 416


def test_core_challenge_path_leaves_other_headers_to_the_authenticated_request(
    ua: Any, kit: Any
) -> None:
    # Without credentials a broken Max-Forwards is not looked at (the edge has
    # validated the request): the answer is the challenge. With credentials
    # the whole request is checked, and the same header gets 400.
    bad = [("Max-Forwards", "lots")]
    first = admit(ua.register(extra=bad))
    assert isinstance(first, Answer)
    assert first.response.status == 401
    users = kit.table(kit.subscriber("alice", PASSWORD))
    auth = ua.answer(first.response, PASSWORD)
    second = admit(ua.register(extra=bad, authorization=auth), subs=users)
    assert isinstance(second, Answer)
    assert second.response.status == 400
