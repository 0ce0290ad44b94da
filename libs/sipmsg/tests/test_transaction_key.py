"""Transaction matching keys (RFC 3261 §17.1.3, §17.2.3)."""

from __future__ import annotations

import pytest

from sipmsg import ParseError
from sipmsg.message import Request, Response, parse
from sipmsg.transaction import MAGIC_COOKIE, client_key, server_key

VIA = b"SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds"


def _request(
    method: bytes,
    *,
    via: bytes = VIA,
    cseq_method: bytes | None = None,
    to_tag: bytes = b"",
    uri: bytes = b"sip:bob@biloxi.example.com",
) -> Request:
    msg = parse(
        b"%s %s SIP/2.0\r\n"
        b"Via: %s\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>%s\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159 %s\r\n"
        b"Content-Length: 0\r\n\r\n"
        % (method, uri, via, to_tag, cseq_method if cseq_method is not None else method)
    )
    assert isinstance(msg, Request)
    return msg


def _response(*, via: bytes = VIA, cseq_method: bytes = b"INVITE") -> Response:
    msg = parse(
        b"SIP/2.0 200 OK\r\n"
        b"Via: %s\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159 %s\r\n"
        b"Content-Length: 0\r\n\r\n" % (via, cseq_method)
    )
    assert isinstance(msg, Response)
    return msg


# --------------------------------------------------------------------------- server, RFC 3261


def test_server_key_retransmission_matches() -> None:
    assert server_key(_request(b"INVITE")) == server_key(_request(b"INVITE"))


def test_server_key_ack_matches_its_invite() -> None:
    ack = _request(b"ACK", to_tag=b";tag=a6c85cf")
    assert server_key(ack) == server_key(_request(b"INVITE"))


def test_server_key_cancel_is_its_own_transaction_but_finds_the_invite() -> None:
    cancel = _request(b"CANCEL")
    invite = _request(b"INVITE")
    assert server_key(cancel) != server_key(invite)
    assert server_key(cancel, method=b"INVITE") == server_key(invite)


@pytest.mark.parametrize(
    "via",
    [
        b"SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhdX",
        b"SIP/2.0/UDP pc34.atlanta.example.com:5060;branch=z9hG4bK776asdhds",
        b"SIP/2.0/UDP pc33.atlanta.example.com:5070;branch=z9hG4bK776asdhds",
        b"SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    ],
    ids=["branch", "host", "port", "no-port"],
)
def test_server_key_differs_on_branch_and_sent_by(via: bytes) -> None:
    assert server_key(_request(b"INVITE", via=via)) != server_key(_request(b"INVITE"))


def test_server_key_ignores_host_case_and_the_rest_of_the_message() -> None:
    upper = b"SIP/2.0/UDP PC33.Atlanta.Example.COM:5060;branch=z9hG4bK776asdhds;rport"
    other = _request(b"INVITE", via=upper, uri=b"sip:carol@chicago.example.com")
    assert server_key(other) == server_key(_request(b"INVITE"))


# --------------------------------------------------------------------------- server, RFC 2543


OLD_VIA = b"SIP/2.0/UDP pc33.atlanta.example.com:5060"


def test_server_key_rfc2543_matches_on_the_dialog_fields() -> None:
    invite = _request(b"INVITE", via=OLD_VIA)
    key = server_key(invite)
    assert key[0] == b"rfc2543"
    assert server_key(_request(b"INVITE", via=OLD_VIA)) == key
    # The ACK carries the To tag of the response; it still finds the INVITE.
    assert server_key(_request(b"ACK", via=OLD_VIA, to_tag=b";tag=a6c85cf")) == key
    assert server_key(_request(b"INVITE", via=OLD_VIA, uri=b"sip:carol@c.example")) != key


def test_server_key_rfc2543_branch_without_cookie_is_not_trusted() -> None:
    via = b"SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=1234"
    assert not b"1234".startswith(MAGIC_COOKIE)
    assert server_key(_request(b"INVITE", via=via))[0] == b"rfc2543"


def test_server_key_rfc2543_non_invite_includes_to_tag() -> None:
    bye = server_key(_request(b"BYE", via=OLD_VIA, to_tag=b";tag=1"))
    assert bye != server_key(_request(b"BYE", via=OLD_VIA, to_tag=b";tag=2"))
    assert bye == server_key(_request(b"BYE", via=OLD_VIA, to_tag=b";tag=1"))


def test_server_key_without_via_raises_parse_error() -> None:
    msg = parse(
        b"OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"To: <sip:bob@biloxi.example.com>\r\n"
        b"From: <sip:alice@atlanta.example.com>;tag=1\r\n"
        b"Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(msg, Request)
    with pytest.raises(ParseError) as exc_info:
        server_key(msg)
    assert exc_info.value.header == "via"


# --------------------------------------------------------------------------- client


def test_client_key_response_matches_its_request() -> None:
    invite = _request(b"INVITE")
    assert client_key(invite) == (b"z9hG4bK776asdhds", b"INVITE")
    assert client_key(_response()) == client_key(invite)


def test_client_key_cancel_responses_stay_apart() -> None:
    # Same branch, CSeq method CANCEL: the 200 to the CANCEL, not to the INVITE.
    assert client_key(_response(cseq_method=b"CANCEL")) == client_key(_request(b"CANCEL"))
    assert client_key(_response(cseq_method=b"CANCEL")) != client_key(_request(b"INVITE"))


def test_client_key_without_branch_is_none() -> None:
    assert client_key(_response(via=OLD_VIA)) is None
