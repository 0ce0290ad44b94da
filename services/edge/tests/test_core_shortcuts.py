"""core's shortcuts (Request-URI check, carries_sdp): each answers as the full parse would."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipmesh_edge import core
from sipmesh_edge.branch import _b32, loop_hash
from sipmesh_edge.stamp import _plain_params
from sipmsg import ParseError, Request, Response, parse
from sipmsg.uri import SipUri, parse_uri

URIS = [
    b"sip:uas@192.0.2.10:5060",
    b"sip:uas@203.0.113.5:5080;transport=UDP",
    b"sips:alice@example.com",
    b"sip:example.com",
    b"sip:example.com.",
    b"sip:192.0.2.1:65535",
    b"sip:192.0.2.1:65536",
    b"sip:192.0.2.1:99999",
    b"sip:192.0.2.1:00080",
    b"sip:192.0.2.1:",
    b"sip:256.0.2.1",
    b"sip:alice@example.com;ttl=255",
    b"sip:alice@example.com;ttl=256",
    b"sip:alice@example.com;TTL=abc",
    b"sip:alice@example.com;maddr=239.255.255.1",
    b"sip:alice@example.com;MADDR=bad_host",
    b"sip:alice@example.com;maddr",
    b"sip:alice@example.com;lr;user=phone",
    b"sip:alice@example.com?subject=hi",
    b"sip:alice@example.com;x=y?subject=hi",
    b"sip:alice%20b@example.com",
    b"sip:alice:secret@example.com",
    b"sip:[2001:db8::1]:5060",
    b"sip:alice@-bad-.com",
    b"sip:alice@@example.com",
    b"sip:",
    b"sip:;x",
    b"SIP:Alice@Example.COM;Transport=TCP",
]


def _parses_plain(uri: bytes) -> bool:
    """What the check before the shortcut concluded: parses, and carries no headers."""
    try:
        parsed = parse_uri(uri)
    except ParseError:
        return False
    return not (isinstance(parsed, SipUri) and parsed.headers)


@pytest.mark.parametrize("uri", URIS)
def test_shortcut_never_accepts_what_parse_uri_rejects(uri: bytes) -> None:
    colon = uri.find(b":")
    if core._plain_sip_uri(uri, colon):
        assert _parses_plain(uri)


def test_shortcut_takes_the_usual_shapes() -> None:
    # The shortcut is what makes the check cheap: the call's URIs take it.
    for uri in URIS[:6]:
        assert core._plain_sip_uri(uri, uri.find(b":")), uri


@given(
    rest=st.text(alphabet="abcz019.-_:;=@?%[]!~*'()&+$,/ TtLlMmAaDdRr65", min_size=0, max_size=30),
    sips=st.booleans(),
)
@settings(max_examples=2000)
def test_shortcut_agrees_with_parse_uri(rest: str, sips: bool) -> None:
    uri = (b"sips:" if sips else b"sip:") + rest.encode()
    if core._plain_sip_uri(uri, uri.find(b":")):
        assert _parses_plain(uri)


def _invite(uri: bytes) -> bytes:
    return (
        b"INVITE " + uri + b" SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-abc\r\n"
        b"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"
        b"Call-ID: c1@198.51.100.7\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


@pytest.mark.parametrize("uri", URIS)
def test_check_request_answers_as_parse_uri(uri: bytes) -> None:
    msg = parse(_invite(uri))
    assert isinstance(msg, Request)
    if _parses_plain(uri):
        core.check_request(msg)
    else:
        with pytest.raises(ParseError) as exc:
            core.check_request(msg)
        assert exc.value.status_hint == 400


def _ok(content_types: list[bytes], body: bytes = b"v=0\r\n") -> bytes:
    lines = b"".join(b"%s\r\n" % line for line in content_types)
    return (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.e1.x.1\r\n"
        b"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"
        b"Call-ID: c1@198.51.100.7\r\nCSeq: 1 INVITE\r\n" + lines
        + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


@pytest.mark.parametrize(
    ("content_types", "expected"),
    [
        ([b"Content-Type: application/sdp"], True),
        ([b"Content-Type:   Application/SDP  "], True),
        ([b"c: application/sdp"], True),
        ([b"Content-Type: application/sdp;charset=utf-8"], True),
        ([b"Content-Type: application/ sdp"], True),
        ([b"Content-Type: application/sdpx"], False),
        ([b"Content-Type: text/plain"], False),
        ([b"Content-Type: application/sdp/x"], False),
        ([b"Content-Type: application/sdp", b"Content-Type: application/sdp"], False),
        ([], False),
    ],
)
def test_carries_sdp_as_the_parsed_content_type(content_types: list[bytes], expected: bool) -> None:
    resp = parse(_ok(content_types))
    assert isinstance(resp, Response)
    assert core.carries_sdp(resp) is expected
    try:
        ctype = resp.content_type
    except ParseError:
        parsed = False
    else:
        parsed = ctype is not None and ctype.mime == b"application/sdp"
    assert parsed is expected


def test_carries_sdp_needs_a_body() -> None:
    resp = parse(_ok([b"Content-Type: application/sdp"], body=b""))
    assert isinstance(resp, Response)
    assert not core.carries_sdp(resp)


def test_loop_hash_is_the_base32_blake2b_older_edges_compute() -> None:
    # Other replicas compare this text with their own (§16.3 step 4): the
    # compiled base 32 must stay RFC 4648's, lower-cased, of the same digest.
    msg = parse(_invite(b"sip:bob@example.com"))
    assert isinstance(msg, Request)
    parts = [msg.uri, b"", b"a1", msg.call_id, b"1", b""]
    digest = hashlib.blake2b(b"\x00".join(parts), digest_size=10).digest()
    assert loop_hash(msg) == base64.b32encode(digest).rstrip(b"=").lower()
    for digest in (bytes(10), b"\xff" * 10, bytes(range(10)), bytes(range(246, 256))):
        assert _b32(digest) == base64.b32encode(digest).rstrip(b"=").lower()


@pytest.mark.parametrize(
    "via",
    [
        b"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport",
        b'SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;x="a";rport',
        b'SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;x="a b";rport',
        b"SIP/2.0/UDP 10.0.0.5:5060 ;branch=z9hG4bK1;rport",
        b"SIP/2.0/UDP 10.0.0.5:5060; branch=z9hG4bK1;rport",
        b"SIP/2.0/UDP\t10.0.0.5:5060;branch=z9hG4bK1;rport",
        b"SIP/2.0/UDP 10.0.0.5",
    ],
)
def test_plain_params_as_the_three_finds(via: bytes) -> None:
    semi = via.find(b";")
    if semi < 0:
        return
    expected = via.find(b" ", semi) < 0 and via.find(b'"', semi) < 0 and via.find(b"\t", semi) < 0
    assert _plain_params(via, semi) is expected
