"""The fast path answers exactly as the typed core does, or steps aside.

Every case runs a REGISTER on the wire through both :class:`FastPath` and
``core.admit`` + ``core.apply_bindings``: when the fast path answers, its bytes,
the record to store and its TTL must equal the typed path's; the cases a phone
sends in a normal registration must be answered by the fast path (that is its
point), the unusual ones must be left to the typed path.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipmesh_bus.records import Binding, BindingSet, SeenNonce, aor_key
from sipmesh_bus.schema import Envelope
from sipmesh_registrar import core
from sipmesh_registrar.fastpath import FastAdmitted, FastPath, _horizon
from sipmesh_registrar.replay import seen_nonce
from sipmsg import ParseError, Request, parse
from sipmsg.digest import NonceManager, build_authorization, parse_challenge

from .conftest import subscriber, table

NOW = 1_700_000_000.0
NONCES = NonceManager(secret=b"k" * 32, ttl=300.0)
POLICY = core.Policy(domains=frozenset({"example.com"}), aliases={"192.0.2.10": "example.com"})
SUBS = table(subscriber("alice", "pw"), subscriber("bob", "pw", enabled=False))
ENVELOPE = Envelope(
    edge_id="edge-1",
    transport="udp",
    source_host="198.51.100.7",
    source_port=5062,
    local_host="192.0.2.10",
    local_port=5060,
    received_at=NOW,
    data=b"",
)
BASE: dict[str, bytes | None] = {
    "Via": b"SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-abc;rport",
    "Max-Forwards": b"70",
    "From": b"<sip:alice@example.com>;tag=f1",
    "To": b"<sip:alice@example.com>",
    "Call-ID": b"c1@198.51.100.7",
    "CSeq": b"1 REGISTER",
    "Contact": b"<sip:alice@198.51.100.7:5062;transport=udp>",
    "Expires": b"3600",
    "User-Agent": b"phone/1.0",
}


def wire(uri: bytes = b"sip:example.com", extra: bytes = b"", **headers: bytes | None) -> bytes:
    """A REGISTER; ``Call_ID=`` style names, None drops a header, ``extra`` adds raw lines."""
    fields = BASE | {k.replace("_", "-"): v for k, v in headers.items()}
    lines = [b"REGISTER " + uri + b" SIP/2.0"]
    lines += [k.encode() + b": " + v for k, v in fields.items() if v is not None]
    return b"\r\n".join(lines) + b"\r\n" + extra + b"Content-Length: 0\r\n\r\n"


def typed(data: bytes, stored: BindingSet | None, now: float, policy: core.Policy) -> Any:
    req = parse(data)
    assert isinstance(req, Request)
    try:
        step = core.admit(req, policy, subscribers=SUBS, nonces=NONCES, now=now, entropy=b"e" * 12)
    except ParseError:
        return "dropped", None, None  # not even a 400 can be built
    if isinstance(step, core.Answer):
        return bytes(step.response), None, None
    decision = core.apply_bindings(step, stored, ENVELOPE, policy, now=now)
    if isinstance(decision, core.Registered):
        return bytes(decision.response), decision.bindings, decision.ttl
    return decision, None, None


def fast(data: bytes, stored: BindingSet | None, now: float, policy: core.Policy) -> Any:
    req = parse(data)
    assert isinstance(req, Request)
    path = FastPath(policy, NONCES)
    step = path.admit(req, subscribers=SUBS, now=now, entropy=b"e" * 12)
    if step is None or isinstance(step, bytes):
        return step
    assert isinstance(step, FastAdmitted)
    decision = path.apply(step, stored, ENVELOPE, now=now)
    return None if decision is None else (decision.response, decision.record, decision.ttl)


def authorized(
    data: bytes,
    *,
    password: bytes = b"pw",
    algorithm: int = 1,
    uri: bytes = b"sip:example.com",
    username: bytes = b"alice",
    nc: int = 1,
    issued: float = NOW,
) -> bytes:
    """``data`` with credentials answering the 401 the typed path gives it."""
    answer, _, _ = typed(
        data, None, issued, dataclasses.replace(POLICY, algorithms=(b"SHA-256", b"MD5"))
    )
    challenges = [
        parse_challenge(line.partition(b": ")[2])
        for line in answer.split(b"\r\n")
        if line.startswith(b"WWW-Authenticate")
    ]
    creds = build_authorization(
        challenges[algorithm],
        username=username,
        method=b"REGISTER",
        uri=uri,
        cnonce=b"0a4f113b",
        nc=nc,
        password=password,
    )
    return data.replace(
        b"Content-Length: 0", b"Authorization: " + bytes(creds) + b"\r\nContent-Length: 0"
    )


def check(
    data: bytes,
    *,
    answered: bool,
    stored: BindingSet | None = None,
    now: float = NOW,
    policy: core.Policy = POLICY,
) -> None:
    slow = typed(data, stored, now, policy)
    quick = fast(data, stored, now, policy)
    if answered:
        assert quick is not None, slow
    if quick is None:
        return
    if isinstance(quick, bytes):
        assert quick == slow[0]
    else:
        assert quick == slow


# --- the first REGISTER: 401 --------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        wire(),
        wire(To=b'"Alice" <sip:alice@EXAMPLE.com>'),
        wire(To=b"sip:alice@example.com"),
        wire(To=b"<sip:alice@example.com>;tag=t9"),
        wire(
            Via=b"SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKx, "
            b"SIP/2.0/UDP a.example;branch=z9hG4bKy"
        ),
        wire(extra=b"Via: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bK2\r\n"),
        wire(uri=b"sip:192.0.2.10"),
        wire(uri=b"sip:198.51.100.99:5060"),
        wire(Via=b"SIP/2.0/UDP h;BRANCH=z9hG4bKa;branch=z9hG4bKb"),
        wire(Via=b'SIP/2.0/UDP h;x="q;branch=z9hG4bKq";branch=z9hG4bKb'),
        wire(Via=b"SIP/2.0/UDP h ; branch = z9hG4bKs ;rport"),
        wire(Via=b"SIP/2.0/UDP h;rport;branch=z9hG4bK.!%*_+`'~x;received=192.0.2.1"),
        wire(Via=b"SIP/2.0/UDP h;rport"),
        wire(uri=b"sip:other.example"),
        wire(Contact=None),
        wire(From=b"Alice <sip:alice@example.com>;tag=x;foo=bar"),
        wire(From=b"<sip:alice@example.com>;TAG=Up.!%*_+`'~"),
        wire(From=b"<sip:alice@example.com>;tag;tag=second"),
        wire(From=b"<sip:alice@example.com>;tag=a;tag=b"),
        wire(From=b'<sip:alice@example.com>;x="a>b";tag=q'),
        wire(From=b"<sip:alice@example.com> ;tag=spaced"),
        wire(From=b"<sip:alice@example.com>;foo;tag=t2;bar=1"),
        wire(From=b"sip:alice@example.com;tag=spec"),
        wire(From=b"<sip:alice@example.com>"),
        wire(Call_ID=b"whatever"),
        b"REGISTER sip:example.com SIP/2.0\r\nv: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1\r\n"
        b"f: <sip:alice@example.com>;tag=1\r\nt: <sip:alice@example.com>\r\ni: c@h\r\n"
        b"CSeq: 7 REGISTER\r\nm: <sip:alice@198.51.100.7>\r\nl: 0\r\n\r\n",
    ],
)
def test_challenge_matches_the_typed_path(data: bytes) -> None:
    check(data, answered=True)


def test_challenge_offers_every_algorithm() -> None:
    policy = dataclasses.replace(POLICY, algorithms=(b"SHA-256", b"MD5"))
    check(wire(), answered=True, policy=policy)
    out = fast(wire(), None, NOW, policy)
    assert out.count(b"WWW-Authenticate: Digest") == 2
    assert out.index(b"SHA-256") < out.index(b"MD5")


def test_challenge_for_any_domain_when_none_is_configured() -> None:
    check(
        wire(uri=b"sip:other.example", To=b"<sip:x@other.example>"),
        answered=True,
        policy=core.Policy(),
    )


@pytest.mark.parametrize(
    "data",
    [
        wire(uri=b"tel:+123"),
        wire(uri=b"sip:example.com?x=y"),
        wire(To=b"<sip:alice@other.example>"),
        wire(To=b"<sip:example.com>"),
        wire(To=b"<tel:+123>"),
        wire(To=b"<sip:alice@example.com"),
        wire(From=b"<sip:alice@example.com"),
        wire(From=b"<sip:alice@example.com>;tag=a{b}"),
        wire(From=b"<sip:alice@example.com>;tag="),
        wire(From=b"<sip:alice@example.com>;=x;tag=a"),
        wire(From=b"<sip:alice@example.com>;x=@;tag=a"),
        wire(Via=b"SIP/2.0/UDP"),
        wire(Via=b"SIP/2.0/UDP h;branch=z9hG4bK{x}"),
        wire(Via=b"SIP/2.0/UDP h;branch="),
        wire(Via=b"SIP/2.0/UDP h;branch=z9hG4bK1;received=nowhere"),
        wire(extra=b"Via: SIP/2.0/UDP h;branch=z9hG4bK1;ttl=999\r\n"),
        wire(Via=None),
        wire(CSeq=b"x REGISTER"),
        wire(Call_ID=b"a b"),
        wire(extra=b"Require: path\r\n"),
        wire(extra=b"Require: foo\r\n"),
        wire(extra=b"To: <sip:bob@example.com>\r\n"),
        wire(extra=b"Content-Type: application/sdp\r\n"),
        wire(To=b"<sip:%C3%28@example.com>"),
        wire(uri=b"sip:example.com").replace(b"REGISTER sip", b"OPTIONS sip", 1),
    ],
)
def test_unusual_first_registers_go_to_the_typed_path(data: bytes) -> None:
    assert fast(data, None, NOW, POLICY) is None


OPEN = dataclasses.replace(POLICY, auth=False)


@pytest.mark.parametrize(
    "data",
    [
        wire(),
        wire(extra=b"Authorization: Digest junk\r\n"),
        wire(Contact=b"<sip:a@h1>;q=1, <sip:a@h2>;expires=0", User_Agent=None),
    ],
)
def test_register_without_authentication(data: bytes) -> None:
    check(data, answered=True, policy=OPEN)


def test_unusual_registers_without_authentication_go_to_the_typed_path() -> None:
    contact = "sip:alice@198.51.100.7:5062;transport=udp"
    again = BindingSet(
        aor="sip:alice@example.com",
        bindings=[_binding(contact, call_id="c1@198.51.100.7", cseq=1)],
    )
    for data, stored in (
        (wire(Contact=None), None),
        (wire(Contact=b"*", Expires=b"0"), None),
        (wire(CSeq=b"1 OPTIONS"), None),
        (wire(), again),
    ):
        assert fast(data, stored, NOW, OPEN) is None
        check(data, answered=False, stored=stored, policy=OPEN)


# --- the authenticated REGISTER: 200 -------------------------------------------------


def _binding(
    contact: str, *, call_id: str = "other", cseq: int = 1, expires_at: float = NOW + 100, **kw: Any
) -> Binding:
    return Binding(
        contact=contact,
        expires_at=expires_at,
        call_id=call_id,
        cseq=cseq,
        registered_at=NOW - 50,
        source_host="203.0.113.9",
        source_port=5060,
        transport="udp",
        edge_id="edge-0",
        **kw,
    )


@pytest.mark.parametrize(
    "data",
    [
        authorized(wire()),
        authorized(wire(), algorithm=0),
        authorized(wire(To=b"<sip:alice@example.com>;tag=t1")),
        authorized(wire(Expires=None)),
        authorized(wire(Expires=b"99999")),
        authorized(wire(Contact=b"<sip:alice@198.51.100.7>;expires=0")),
        authorized(wire(Contact=b'<sip:alice@198.51.100.7>;expires=120;q=0.5;foo="bar"')),
        authorized(wire(Contact=b"<sip:a@h1>;q=1, <sip:a@h2>;q=0.2", User_Agent=None)),
        authorized(wire(extra=b"Contact: <sip:alice@h3>\r\n")),
        authorized(
            wire(
                Contact=b'<sip:alice@198.51.100.7>;+sip.instance="<urn:uuid:1>";reg-id=1',
                extra=b"Supported: path, outbound\r\n",
            )
        ),
        authorized(wire(Contact=b'<sip:alice@h>;+sip.instance="<urn:uuid:1>";reg-id=2')),
        authorized(wire(uri=b"sip:192.0.2.10"), uri=b"sip:192.0.2.10"),
    ],
)
def test_authenticated_register_matches_the_typed_path(data: bytes) -> None:
    check(data, answered=True)


def test_refresh_against_stored_bindings() -> None:
    data = authorized(wire(CSeq=b"5 REGISTER"), nc=3)
    stored = BindingSet(
        aor="sip:alice@example.com",
        bindings=[
            _binding(
                "sip:alice@198.51.100.7:5062;transport=udp", call_id="c1@198.51.100.7", cseq=4
            ),
            _binding("sip:alice@elsewhere", q=0.7),
            _binding("sip:expired@x", expires_at=NOW - 1),
        ],
        seen_nonces=[SeenNonce(nonce="00", nc=9, until=NOW + 100)],
    )
    check(data, answered=True, stored=stored)


def test_replays_and_ordering_go_to_the_typed_path() -> None:
    data = authorized(wire(CSeq=b"5 REGISTER"))
    req = parse(data)
    assert isinstance(req, Request)
    creds = req.authorization[0]
    seen = seen_nonce(creds.nonce, 1, until=NOW + 100)
    contact = "sip:alice@198.51.100.7:5062;transport=udp"
    for stored in (
        BindingSet(aor="sip:alice@example.com", seen_nonces=[seen]),
        BindingSet(
            aor="sip:alice@example.com",
            bindings=[_binding(contact, call_id="c1@198.51.100.7", cseq=5)],
        ),
        BindingSet(
            aor="sip:alice@example.com",
            bindings=[_binding(contact, call_id="c1@198.51.100.7", cseq=9)],
        ),
        BindingSet(
            aor="sip:alice@example.com", bindings=[_binding(f"sip:{i}@x") for i in range(10)]
        ),
    ):
        assert fast(data, stored, NOW, POLICY) is None
        check(data, answered=False, stored=stored)


@pytest.mark.parametrize(
    ("data", "now"),
    [
        (authorized(wire(), password=b"guess"), NOW),
        (authorized(wire()), NOW + 301),
        (authorized(wire(), uri=b"sip:example.com:5060"), NOW),
        (authorized(wire(To=b"<sip:bob@example.com>"), username=b"bob"), NOW),
        (authorized(wire(To=b"<sip:carol@example.com>"), username=b"carol"), NOW),
        (authorized(wire(), username=b"bob"), NOW),
        (authorized(wire(Contact=b"*", Expires=b"0")), NOW),
        (authorized(wire(Contact=None)), NOW),
        (authorized(wire(Contact=b"<sip:alice@h>;expires=10")), NOW),
        (authorized(wire(Contact=b"<sip:alice@h>;reg-id=1")), NOW),
        (authorized(wire(Contact=b"<sip:alice@h>;q=2")), NOW),
        (authorized(wire(extra=b"Path: <sip:edge.example;lr>\r\nSupported: path\r\n")), NOW),
        (authorized(wire(CSeq=b"1 INVITE")), NOW),
        (authorized(wire(Max_Forwards=b"x")), NOW),
        (authorized(wire(Expires=b"soon")), NOW),
    ],
)
def test_failures_go_to_the_typed_path(data: bytes, now: float) -> None:
    assert fast(data, None, now, POLICY) is None


def _answer(path: FastPath, *, now: float, nc: int = 1, nonce: bytes | None = None) -> bytes:
    """A REGISTER answering ``path``'s own 401 (issued at ``now``), or ``nonce`` swapped in."""
    req = parse(wire())
    assert isinstance(req, Request)
    answer = path.admit(req, subscribers=SUBS, now=now, entropy=b"f" * 12)
    assert isinstance(answer, bytes)
    line = next(x for x in answer.split(b"\r\n") if x.startswith(b"WWW-Authenticate"))
    challenge = parse_challenge(line.partition(b": ")[2])
    if nonce is not None:
        challenge = dataclasses.replace(challenge, nonce=nonce)
    creds = build_authorization(
        challenge,
        username=b"alice",
        method=b"REGISTER",
        uri=b"sip:example.com",
        cnonce=b"0a4f113b",
        nc=nc,
        password=b"pw",
    )
    return wire(CSeq=b"2 REGISTER", extra=b"Authorization: " + bytes(creds) + b"\r\n")


def _admit(path: FastPath, data: bytes, now: float) -> FastAdmitted | bytes | None:
    req = parse(data)
    assert isinstance(req, Request)
    return path.admit(req, subscribers=SUBS, now=now, entropy=b"e" * 12)


def test_own_nonce_is_checked_as_the_nonce_manager_does() -> None:
    # Issued at a time with a fraction of a millisecond: the nonce carries whole ones.
    issued = NOW + 0.0123456
    path = FastPath(POLICY, NONCES)
    data = _answer(path, now=issued)
    step = _admit(path, data, issued + 1)
    assert isinstance(step, FastAdmitted)
    req = parse(data)
    assert isinstance(req, Request)
    creds = req.authorization[0]
    expected = NONCES.issued_at(creds.nonce, realm=b"example.com")
    assert expected is not None
    assert step.replay == seen_nonce(creds.nonce, 1, until=expected + 300.0 + 5.0)
    assert not path._issued  # forgotten at its first answer
    # Answered again (a refresh with the next count): checked in full, same result.
    again = _admit(
        path, _answer(FastPath(POLICY, NONCES), now=issued, nonce=creds.nonce, nc=2), issued + 2
    )
    assert isinstance(again, FastAdmitted)
    assert again.replay == seen_nonce(creds.nonce, 2, until=expected + 305.0)
    # The fast and typed paths agree on the answer to a fresh 401 of the fast path.
    check(_answer(FastPath(POLICY, NONCES), now=NOW), answered=True)


def test_own_nonce_still_expires_and_forgeries_still_fail() -> None:
    path = FastPath(POLICY, NONCES)
    assert _admit(path, _answer(path, now=NOW), NOW + 301) is None  # stale
    other = NonceManager(secret=b"x" * 32, ttl=300.0)
    forged = other.issue(NOW, entropy=b"f" * 12, realm=b"example.com")
    path = FastPath(POLICY, NONCES)
    assert _admit(path, _answer(path, now=NOW, nonce=forged), NOW) is None
    assert len(path._issued) == 1  # the nonce the 401 gave is still awaited


@given(
    expiries=st.lists(st.sampled_from([0.0, 1.0, 2.0, math.nan]), max_size=4),
    untils=st.lists(st.sampled_from([0.0, 1.0, 3.0, math.nan]), max_size=4),
    floor=st.sampled_from([0.0, 2.0, math.nan]),
)
def test__horizon_is_max_of_the_three(
    expiries: list[float], untils: list[float], floor: float
) -> None:
    live = [_binding(f"sip:{i}@x", expires_at=x) for i, x in enumerate(expiries)]
    seen = [SeenNonce(nonce=str(i), nc=1, until=u) for i, u in enumerate(untils)]
    expected = max([b.expires_at for b in live] + [e.until for e in seen] + [floor])
    got = _horizon(live, seen, floor)
    # The same value, NaN in the same places (max keeps the first of a tie).
    assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_memos_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sipmesh_registrar.fastpath._MEMO_SIZE", 4)
    path = FastPath(POLICY, NONCES)
    for i in range(20):
        req = parse(wire(To=b"<sip:alice@example.com>;x=%d" % i))
        assert isinstance(req, Request)
        assert isinstance(path.admit(req, subscribers=SUBS, now=NOW, entropy=b"e"), bytes)
    assert len(path._to._table) <= 4
    # The newest entries stay.
    assert b"<sip:alice@example.com>;x=19" in path._to._table


def test_key_of_the_aor() -> None:
    data = authorized(wire())
    req = parse(data)
    assert isinstance(req, Request)
    step = FastPath(POLICY, NONCES).admit(req, subscribers=SUBS, now=NOW, entropy=b"e")
    assert isinstance(step, FastAdmitted)
    assert step.key == aor_key("alice", "example.com")
    assert step.aor == "sip:alice@example.com"


_SEEDS: Final = (
    wire(),
    authorized(wire()),
    authorized(wire(Contact=b'<sip:a@h>;q=0.5;+sip.instance="<urn:uuid:1>";reg-id=1')),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    at=st.integers(min_value=0, max_value=10_000),
    junk=st.one_of(
        st.binary(min_size=1, max_size=3),
        st.lists(st.sampled_from(list(b';=<>"@:, \tZz09.%-')), min_size=1, max_size=3).map(bytes),
    ),
)
def test_fast_path_on_mangled_registers_matches_or_steps_aside(
    seed: bytes, at: int, junk: bytes
) -> None:
    # Splice a few bytes into the header block: whatever the typed path makes
    # of it, the fast path gives the same answer or none, and never raises.
    head_end = seed.index(b"\r\n\r\n")
    at = at % head_end
    data = seed[:at] + junk + seed[at + len(junk) :]
    try:
        req = parse(data)
    except ParseError:
        return
    if not isinstance(req, Request):
        return
    check(data, answered=False)
