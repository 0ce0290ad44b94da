"""The registrar's 401 answered at the edge (sipmesh_edge.challenge), and its nonces accepted."""

from __future__ import annotations

import asyncio
import socket

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from sipmesh_bus.config import HttpConfig, NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.records import Subscriber, aor_key
from sipmesh_edge.app import Edge, EdgeConfig
from sipmesh_edge.challenge import RegisterChallenger, _around_branch
from sipmesh_edge.stamp import stamp_via
from sipmesh_registrar.config import RegistrarSettings, make_policy
from sipmesh_registrar.fastpath import FastAdmitted, FastPath
from sipmsg import Request, Response, parse
from sipmsg.digest import (
    NonceManager,
    build_authorization,
    ha1_md5,
    ha1_sha256,
    parse_challenge,
)

NOW = 1_700_000_000.0
SECRET = b"s" * 32
SETTINGS = RegistrarSettings(domain="example.com", algorithms=("SHA-256", "MD5"))
SOURCE = ("203.0.113.9", 40123)
ALICE = Subscriber(
    user="alice",
    domain="example.com",
    ha1_md5=ha1_md5(b"alice", b"example.com", b"pw").decode(),
    ha1_sha256=ha1_sha256(b"alice", b"example.com", b"pw").decode(),
)


def register(*, extra: bytes = b"", to: bytes = b"<sip:alice@example.com>") -> Request:
    data = (
        b"REGISTER sip:example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-e1;rport\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=f1\r\nTo: " + to + b"\r\n"
        b"Call-ID: reg-1@192.168.1.20\r\nCSeq: 1 REGISTER\r\n"
        b"Contact: <sip:alice@192.168.1.20:5060>\r\nExpires: 600\r\n"
        + extra
        + b"Content-Length: 0\r\n\r\n"
    )
    req = parse(data)
    assert isinstance(req, Request)
    return req


def test_401_offers_the_registrars_algorithms_with_the_via_stamped() -> None:
    answer = RegisterChallenger(SETTINGS, SECRET).challenge(register(), SOURCE, NOW)
    assert answer is not None
    resp = parse(answer)
    assert isinstance(resp, Response)
    assert resp.status == 401
    challenges = [parse_challenge(v) for v in resp.headers.get_all(b"www-authenticate")]
    # RFC 8760 §2.4: one challenge per algorithm, most preferred first.
    assert [c.algorithm for c in challenges] == [b"SHA-256", b"MD5"]
    assert {c.realm for c in challenges} == {b"example.com"}
    # RFC 3581 §4: the phone learns its public address from received and rport.
    via = resp.via[0]
    assert via.received == b"203.0.113.9"
    assert b"rport=40123" in bytes(resp.headers.get_all(b"via")[0])


def test_registrar_accepts_the_answer_to_an_edge_nonce_and_no_other_secret() -> None:
    req = register()
    answer = RegisterChallenger(SETTINGS, SECRET).challenge(req, SOURCE, NOW)
    assert answer is not None
    resp = parse(answer)
    assert isinstance(resp, Response)
    challenge = parse_challenge(resp.headers.get_all(b"www-authenticate")[1])  # MD5
    creds = build_authorization(
        challenge,
        username=b"alice",
        method=b"REGISTER",
        uri=b"sip:example.com",
        cnonce=b"0a4f113b",
        password=b"pw",
    )
    answered = register(extra=b"Authorization: " + bytes(creds) + b"\r\n")
    subscribers = {aor_key("alice", "example.com"): ALICE}
    for secret, accepted in ((SECRET, True), (b"x" * 32, False)):
        registrar = FastPath(make_policy(SETTINGS), NonceManager(secret=secret, ttl=300.0))
        step = registrar.admit(answered, subscribers=subscribers, now=NOW + 1, entropy=b"e" * 12)
        assert isinstance(step, FastAdmitted) is accepted, step


def test_credentials_or_unusual_registers_go_to_the_registrar() -> None:
    challenger = RegisterChallenger(SETTINGS, SECRET)
    assert (
        challenger.challenge(register(extra=b"Authorization: Digest x=y\r\n"), SOURCE, NOW) is None
    )
    # A domain the registrar does not serve: its answer (404 or 403), not a 401.
    assert challenger.challenge(register(to=b"<sip:alice@other.example>"), SOURCE, NOW) is None


def test_each_challenge_has_a_fresh_nonce() -> None:
    challenger = RegisterChallenger(SETTINGS, SECRET)
    nonces = set()
    for _ in range(600):  # past one entropy pool
        answer = challenger.challenge(register(), SOURCE, NOW)
        assert answer is not None
        resp = parse(answer)
        assert isinstance(resp, Response)
        nonces.add(parse_challenge(resp.headers.get_all(b"www-authenticate")[0]).nonce)
    assert len(nonces) == 600


async def test_an_edge_answers_the_401_with_no_registrar_on_the_bus(
    nats_server: NatsServer,
) -> None:
    config = EdgeConfig(
        edge_id="ch",
        udp=["127.0.0.1:0"],
        nats=NatsConfig(url=nats_server.url, reconnect_wait=0.1, drain_timeout=1.0),
        http=HttpConfig(port=0),
        shutdown_grace=0.2,
        challenge_registers=True,
        registrar=msgspec.structs.replace(SETTINGS, nonce_secret=SECRET.decode()),
    )
    edge = Edge(config, registry=CollectorRegistry(), install_signal_handlers=False)
    await edge.start()
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        phone.bind(("127.0.0.1", 0))
        phone.setblocking(False)
        loop = asyncio.get_running_loop()
        phone.sendto(bytes(register()), edge.udp[0].local)
        resp = parse(await asyncio.wait_for(loop.sock_recv(phone, 65535), 3.0))
        # Nobody serves sip.register: only the edge itself can have answered 401.
        assert isinstance(resp, Response)
        assert resp.status == 401
        nonce = parse_challenge(resp.headers.get_all(b"www-authenticate")[0]).nonce
        assert nonce is not None
        checker = NonceManager(secret=SECRET, ttl=300.0)
        assert checker.issued_at(nonce, realm=b"example.com") is not None
        # With credentials it is the registrar's to answer: none here, so 503.
        phone.sendto(
            bytes(register(extra=b'Authorization: Digest username="alice"\r\n')).replace(
                b"branch=z9hG4bK-e1", b"branch=z9hG4bK-e2"
            ),
            edge.udp[0].local,
        )
        resp = parse(await asyncio.wait_for(loop.sock_recv(phone, 65535), 3.0))
        assert isinstance(resp, Response)
        assert resp.status == 503
    finally:
        phone.close()
        await edge.close()


def _without_nonce(answer: bytes) -> bytes:
    resp = parse(answer)
    assert isinstance(resp, Response)
    nonce = parse_challenge(resp.headers.get_all(b"www-authenticate")[0]).nonce
    assert nonce is not None
    return answer.replace(nonce, b"NONCE")


@pytest.mark.parametrize(
    "via",
    [
        b"SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-e1;rport",  # NAT, rport asked
        b"SIP/2.0/UDP 203.0.113.9:40123;branch=z9hG4bK-e1",  # nothing to stamp
        b"SIP/2.0/UDP 192.168.1.20;rport;branch=z9hG4bK-e1",  # rport not last
        b'SIP/2.0/UDP 192.168.1.20;branch=z9hG4bK-e1;x="a b"',  # quoted: rebuilt
        b"SIP/2.0/UDP 192.168.1.20;branch=z9hG4bK-e1, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-0",
    ],
)
def test_401_is_the_registrars_for_the_stamped_request(via: bytes) -> None:
    challenger = RegisterChallenger(SETTINGS, SECRET)
    # The same phone again with other branches, and from another address: the
    # stamped Via kept per phone and address fits each.
    for branch, source in (
        (b"z9hG4bK-e1", SOURCE),
        (b"z9hG4bK-2nd.x", SOURCE),
        (b"z9hG4bK-3", ("198.51.100.7", 5060)),
        (b"z9hG4bK-4", SOURCE),
    ):
        req = register()
        line = via.replace(b"z9hG4bK-e1", branch)
        req = parse(bytes(req).replace(req.headers.get_lines(b"via")[0], line))  # type: ignore[assignment]
        assert isinstance(req, Request)
        answer = challenger.challenge(req, source, NOW)
        assert answer is not None
        stamped = parse(stamp_via(req, *source))
        assert isinstance(stamped, Request)
        registrar = FastPath(make_policy(SETTINGS), NonceManager(secret=SECRET, ttl=300.0))
        expected = registrar.admit(stamped, subscribers={}, now=NOW, entropy=b"e" * 12)
        assert isinstance(expected, bytes)
        assert _without_nonce(answer) == _without_nonce(expected)
        assert branch in answer


@pytest.mark.parametrize(
    ("stamped", "branch", "around"),
    [
        (
            b"SIP/2.0/UDP h;branch=z9hG4bK-1;rport=5",
            b"z9hG4bK-1",
            (b"SIP/2.0/UDP h;branch=", b";rport=5"),
        ),
        (
            b"SIP/2.0/UDP h;rport=5;branch=z9hG4bK-1",
            b"z9hG4bK-1",
            (b"SIP/2.0/UDP h;rport=5;branch=", b""),
        ),
        # Not the branch of the line, or not only it: no template.
        (b"SIP/2.0/UDP h;branch=z9hG4bK-12", b"z9hG4bK-1", None),
        (b"SIP/2.0/UDP h;branch=z9hG4bK-1;BRANCH=z9hG4bK-1", b"z9hG4bK-1", None),
        (b"SIP/2.0/UDP h;branch=z9hG4bK-2", b"z9hG4bK-1", None),
    ],
)
def test__around_branch(stamped: bytes, branch: bytes, around: tuple[bytes, bytes] | None) -> None:
    assert _around_branch(stamped, branch) == around


def test_stamped_vias_kept_are_bounded_and_right_after_eviction() -> None:
    challenger = RegisterChallenger(SETTINGS, SECRET)
    req = register()
    for port in range(1, 40_001):  # more sources than the challenger keeps stamps of
        assert challenger.challenge(req, ("198.51.100.7", port), NOW) is not None
    assert len(challenger._stamps) <= 32_768
    for port in (1, 39_999):  # one forgotten, one kept
        answer = challenger.challenge(req, ("198.51.100.7", port), NOW)
        assert answer is not None
        assert b";rport=%d;received=198.51.100.7" % port in answer
        stamped = parse(stamp_via(req, "198.51.100.7", port))
        assert isinstance(stamped, Request)
        registrar = FastPath(make_policy(SETTINGS), NonceManager(secret=SECRET, ttl=300.0))
        expected = registrar.admit(stamped, subscribers={}, now=NOW, entropy=b"e" * 12)
        assert isinstance(expected, bytes)
        assert _without_nonce(answer) == _without_nonce(expected)
