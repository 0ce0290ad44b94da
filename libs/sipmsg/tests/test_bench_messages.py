"""The parser benchmark's messages (bench/parse/messages) parse to the right fields.

Not a timing test: it pins what ``bench/parse/run.py`` measures, so a fast
path that reads a field wrongly fails here as well as in the benchmark.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmsg import Request, Response, SipUri, Star, parse

MESSAGES = Path(__file__).resolve().parents[3] / "bench" / "parse" / "messages"


def _load(name: str) -> bytes:
    return (MESSAGES / name).read_bytes()


@pytest.mark.parametrize("name", ["register.sip", "invite.sip", "ringing-180.sip", "ok-200.sip"])
def test_bench_message_round_trips_and_classifies_like_the_full_parse(name: str) -> None:
    data = _load(name)
    msg = parse(data)
    assert bytes(msg) is data
    assert msg.via_branch == msg.via[0].branch
    assert msg.from_tag == msg.from_.tag
    assert msg.to_tag == msg.to.tag
    assert msg.content_length == len(msg.body)


def test_bench_register_fields() -> None:
    msg = parse(_load("register.sip"))
    assert isinstance(msg, Request)
    assert msg.method == b"REGISTER"
    assert bytes(msg.request_uri) == b"sip:sip.example.net"
    (via,) = msg.via
    assert (via.transport, via.host, via.port) == (b"UDP", b"192.0.2.10", 5060)
    assert via.has_rport
    assert via.rport is None
    assert msg.from_.tag == b"7Vt8kEiKp"
    assert msg.to.tag is None
    contact = msg.contact
    assert not isinstance(contact, Star)
    assert contact[0].expires == 3600
    assert contact[0].params[0] == (
        b"+sip.instance",
        b'"<urn:uuid:0f2a7a1a-4e5b-4a3a-8c11-2d0b7b5e9a01>"',
    )
    assert isinstance(contact[0].uri, SipUri)
    assert contact[0].uri.transport == b"udp"
    assert (msg.cseq.seq, msg.cseq.method) == (21, b"REGISTER")
    assert msg.max_forwards == 70
    assert msg.expires == 3600
    assert msg.supported == (b"replaces", b"outbound", b"gruu", b"path")
    (cred,) = msg.authorization
    assert (cred.username, cred.realm, cred.uri) == (
        b"alice",
        b"sip.example.net",
        b"sip:sip.example.net",
    )
    assert (cred.qop, cred.nc, cred.cnonce) == (b"auth", 1, b"SjfoPTTBWsGBE3Bn")
    assert msg.headers.get_all(b"accept") == [
        b"application/sdp",
        b"text/plain",
        b"application/vnd.gsma.rcs-ft-http+xml",
    ]


def test_bench_invite_fields() -> None:
    msg = parse(_load("invite.sip"))
    assert isinstance(msg, Request)
    uri = msg.request_uri
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.host, uri.port, uri.transport) == (
        b"1001",
        b"203.0.113.5",
        5060,
        b"udp",
    )
    top, second = msg.via
    assert (top.transport, second.transport) == (b"UDP", b"TCP")
    assert (second.received, second.rport) == (b"198.51.100.7", 36483)
    routes = msg.record_route
    assert [r.uri.lr for r in routes if isinstance(r.uri, SipUri)] == [True, True]
    assert routes[1].uri.params == (  # type: ignore[union-attr]
        (b"transport", b"tcp"),
        (b"lr", None),
        (b"ftag", b"5e1b0f7c9a2d4e36"),
    )
    assert msg.from_.display_name == b"Bob"
    assert msg.max_forwards == 69
    assert len(msg.allow) == 12
    assert msg.supported == (b"replaces", b"norefersub", b"100rel")
    ct = msg.content_type
    assert ct is not None
    assert ct.mime == b"application/sdp"
    assert msg.body.startswith(b"v=0\r\n")
    assert msg.user_agent == b"baresip v3.10.1 (x86_64/linux)"


@pytest.mark.parametrize(("name", "status"), [("ringing-180.sip", 180), ("ok-200.sip", 200)])
def test_bench_responses_fields(name: str, status: int) -> None:
    msg = parse(_load(name))
    assert isinstance(msg, Response)
    assert msg.status == status
    assert [v.branch for v in msg.via] == [
        b"z9hG4bK4a1e.b0c6c1f2d9a7e3f18b4c2d6e0a9f5b71.0",
        b"z9hG4bKc2d7a1a8e0b94b53",
    ]
    assert msg.via[0].received == b"203.0.113.20"
    assert msg.to.tag == b"as6d3f1b72"
    assert len(msg.record_route) == 2
    assert msg.allow[-1] == b"MESSAGE"
    assert msg.headers.get(b"server") == b"Asterisk PBX 20.5.0"
    assert (msg.content_type is None) == (status == 180)
