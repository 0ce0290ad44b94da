"""core's Request-URI check: the regex shortcut answers exactly as parsing the URI would."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipmesh_edge import core
from sipmsg import ParseError, Request, parse
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
    rest=st.text(
        alphabet="abcz019.-_:;=@?%[]!~*'()&+$,/ TtLlMmAaDdRr65", min_size=0, max_size=30
    ),
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
