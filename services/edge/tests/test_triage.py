"""core.triage / transaction_key / admit, and the sink's peek-only absorb path (no network)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sipmesh_edge import core
from sipmesh_edge.core import EdgeIdentity, Garbage, KeepAlive, Peeked
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.sink import EdgeSink, SinkConfig
from sipmsg import ParseError, Request, Response, parse
from sipmsg.transaction import server_key

VECTORS = Path(__file__).parents[3] / "libs" / "sipmsg" / "tests" / "vectors"
ALL_VECTORS = sorted(
    p for p in VECTORS.rglob("*") if p.is_file() and p.suffix in (".sip", ".dat", "")
)
INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-inv1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"
    b"Call-ID: inv1@198.51.100.7\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.51.100.7:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-reg1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:alice@example.com>\r\n"
    b"Call-ID: reg1@198.51.100.7\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@198.51.100.7:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _outcome(incoming: object) -> tuple[str, int | None, bytes | None]:
    """What the edge does with it: its kind, the status answered, the request's bytes."""
    if isinstance(incoming, Garbage):
        resp = incoming.response
        return "garbage", None if resp is None else resp.status, None
    if isinstance(incoming, Request):
        return "request", None, bytes(incoming)
    if isinstance(incoming, Response):
        return "response", incoming.status, None
    return type(incoming).__name__, None, None


def _classify_by_parse(data: bytes) -> object:
    """The edge's classify before triage: parse, then check_request / validate_response."""
    return core._classify_parsed(data, None)


TRIAGES = pytest.mark.parametrize("triage", [core.triage, core.peek_triage], ids=["parse", "peek"])
Triage = Callable[[bytes], "KeepAlive | Garbage | Peeked | Response"]


def _then_admit(incoming: object) -> object:
    return core.admit(incoming) if isinstance(incoming, Peeked) else incoming


@TRIAGES
@pytest.mark.parametrize("path", ALL_VECTORS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_triage_then_admit_answers_every_vector_as_the_full_parse_did(
    triage: Triage, path: Path
) -> None:
    data = path.read_bytes()
    if not data.strip(b"\r\n"):
        pytest.skip("empty")
    expected = _outcome(_classify_by_parse(data))
    assert _outcome(_then_admit(triage(data))) == expected


KEYED = [p for p in ALL_VECTORS if isinstance(core.classify(p.read_bytes()), Request)]


@TRIAGES
@pytest.mark.parametrize("path", KEYED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_transaction_key_equals_server_key(triage: Triage, path: Path) -> None:
    incoming = triage(path.read_bytes())
    assert isinstance(incoming, Peeked)
    key = core.transaction_key(incoming)
    invite_key = core.transaction_key(incoming, method=b"INVITE")
    assert key == server_key(incoming.request)
    assert invite_key == server_key(incoming.request, method=b"INVITE")


def test_triage_parses_and_leaves_the_rest_to_admit() -> None:
    data = REGISTER.replace(b"Call-ID: reg1@198.51.100.7\r\n", b"")
    incoming = core.triage(data)
    # check_request (which rejects the missing Call-ID) has not run: a Peeked.
    assert isinstance(incoming, Peeked)
    assert incoming.summary is None
    assert incoming._request is not None
    garbage = core.admit(incoming)
    assert isinstance(garbage, Garbage)
    assert garbage.error.header == "call-id"
    assert _outcome(garbage) == _outcome(_classify_by_parse(data))


def test_peek_triage_does_not_parse_a_request_in_full() -> None:
    incoming = core.peek_triage(REGISTER)
    assert isinstance(incoming, Peeked)
    assert incoming.method == b"REGISTER"
    assert incoming._request is None
    key = core.transaction_key(incoming)
    assert key == (b"z9hG4bK-reg1", b"198.51.100.7", b"5062", b"REGISTER")
    assert incoming._request is None
    req = core.admit(incoming)
    assert isinstance(req, Request)
    assert bytes(req) == REGISTER
    assert core.admit(incoming) is req  # parsed once


def test_peek_triage_rfc2543_request_is_keyed_on_its_parse() -> None:
    incoming = core.peek_triage(REGISTER.replace(b"branch=z9hG4bK-reg1", b"branch=old1"))
    assert isinstance(incoming, Peeked)
    key = core.transaction_key(incoming)
    assert key[0] == b"rfc2543"
    assert incoming._request is not None


@TRIAGES
@pytest.mark.parametrize(
    ("data", "status"),
    [
        (REGISTER.replace(b"sip:example.com SIP", b"mailto:a@example.com SIP"), 416),
        (REGISTER.replace(b"sip:example.com SIP", b"sip:example.com?Subject=x SIP"), 400),
        (REGISTER.replace(b"sip:example.com SIP", b"sip:exa[mple.com SIP"), 400),
        (REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: 1 INVITE"), 400),
    ],
    ids=["scheme-416", "uri-headers", "bad-uri", "cseq-method"],
)
def test_triage_request_uri_and_cseq_checks(triage: Triage, data: bytes, status: int) -> None:
    incoming = _then_admit(triage(data))
    assert isinstance(incoming, Garbage)
    assert incoming.response is not None
    assert incoming.response.status == status
    assert _outcome(incoming) == _outcome(_classify_by_parse(data))


@TRIAGES
def test_triage_garbage_keepalive_and_response(triage: Triage) -> None:
    assert isinstance(triage(b"\r\n\r\n"), KeepAlive)
    garbage = _then_admit(triage(REGISTER.replace(b"Call-ID: reg1@198.51.100.7\r\n", b"")))
    assert isinstance(garbage, Garbage)
    assert isinstance(garbage.error, ParseError)
    resp = parse(b"SIP/2.0 200 OK\r\n" + REGISTER.split(b"\r\n", 1)[1])
    assert isinstance(triage(bytes(resp)), Response)


@TRIAGES
def test_triage_a_malformed_second_via_is_answered_400(triage: Triage) -> None:
    data = REGISTER.replace(b";rport\r\n", b";rport\r\nVia: SIP/2.0/UDP\r\n")
    garbage = _then_admit(triage(data))  # peek reads the top Via only: admit finds it
    assert isinstance(garbage, Garbage)
    assert garbage.error.header == "via"
    # The top Via is usable, and RFC 3261 §18.2.2 sends a response by it alone:
    # a 400 copying both Vias as they came (RFC 4475 §3.1.2.1 "badinv01" alike).
    assert _outcome(garbage) == _outcome(_classify_by_parse(data)) == ("garbage", 400, None)
    assert garbage.response is not None
    assert garbage.response.headers.get_lines(b"via")[1] == b"SIP/2.0/UDP"


class _Bus:
    def __init__(self) -> None:
        self.requests: list[str] = []

    def request(self, subject: str, payload: bytes, callback: object) -> bool:
        self.requests.append(subject)
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        return True


class _Udp:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append(data)

    def statuses(self) -> list[int]:
        out = [m.status for m in map(parse, self.sent) if isinstance(m, Response)]
        self.sent.clear()
        return out


def _sink(*, peek: bool = False) -> tuple[EdgeSink, _Bus, _Udp, CollectorRegistry]:
    registry = CollectorRegistry()
    me = EdgeIdentity(edge_id="e1", hosts=frozenset({b"192.0.2.10"}), ports=frozenset({5060}))
    config = SinkConfig(identity=me, peek=peek)
    sink = EdgeSink(config, EdgeMetrics(registry), clock=lambda: 1000.0)
    bus, udp = _Bus(), _Udp()
    sink.bus = bus
    sink.udp[("192.0.2.10", 5060)] = udp
    return sink, bus, udp, registry


def _receive(sink: EdgeSink, data: bytes) -> None:
    sink.on_message(
        data,
        transport="udp",
        source=("198.51.100.7", 5062),
        local=("192.0.2.10", 5060),
        connection=None,
    )


def test_sink_retransmission_is_absorbed_before_the_remaining_checks() -> None:
    sink, bus, udp, registry = _sink()
    _receive(sink, INVITE)
    assert udp.statuses() == [100]
    assert bus.requests == ["sip.route"]
    # §17.2.3 matches it by the top Via and the method; the From that
    # check_request rejects (400, as for a new request) is never read.
    copy = INVITE.replace(b"From: <sip:alice@example.com>", b"From: <sip:alice@@example.com>")
    new = copy.replace(b"z9hG4bK-inv1", b"z9hG4bK-inv2")
    assert _outcome(_then_admit(core.triage(new))) == ("garbage", 400, None)
    _receive(sink, copy)
    _receive(sink, copy)
    assert udp.statuses() == [100, 100]  # §17.2.1: the last provisional again
    assert bus.requests == ["sip.route"]
    assert registry.get_sample_value("sipmesh_edge_retransmissions_absorbed_total") == 2
    _receive(sink, new)
    assert udp.statuses() == [400]  # a new transaction is checked


def test_sink_with_peek_triage_absorbs_a_retransmission_without_a_full_parse() -> None:
    sink, bus, udp, registry = _sink(peek=True)
    _receive(sink, INVITE)
    assert udp.statuses() == [100]
    # A broken second Via: peek reads the top one only, the full parse of
    # admit (after peek_triage) every Via, so only a copy parsed in full is a 400.
    copy = INVITE.replace(b";rport\r\n", b";rport\r\nVia: SIP/2.0/UDP\r\n", 1)
    peeked = core.peek_triage(copy)
    assert isinstance(peeked, Peeked)
    assert _outcome(core.admit(peeked)) == ("garbage", 400, None)
    _receive(sink, copy)
    _receive(sink, copy)
    assert udp.statuses() == [100, 100]
    assert bus.requests == ["sip.route"]
    assert registry.get_sample_value("sipmesh_edge_retransmissions_absorbed_total") == 2
    _receive(sink, copy.replace(b"z9hG4bK-inv1", b"z9hG4bK-inv2"))
    assert udp.statuses() == [400]  # a new transaction is parsed in full
