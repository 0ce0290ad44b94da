"""The non-INVITE server transaction (RFC 3261 §17.2.2), on scripted timelines."""

from __future__ import annotations

import pytest

from sipmsg import LocalProtocolError
from sipmsg.message import Request, Response, parse
from sipmsg.transaction import (
    RequestReceived,
    ServerNonInviteTransaction,
    State,
    Terminated,
    TransportFailed,
    TxEvent,
)

T1 = 0.5


def _request() -> Request:
    msg = parse(
        b"REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>\r\n"
        b"From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n"
        b"Call-ID: 843817637684230@998sdasdh09\r\n"
        b"CSeq: 1826 REGISTER\r\n"
        b"Contact: <sip:bob@192.0.2.4>\r\n"
        b"Expires: 7200\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(msg, Request)
    return msg


def _response(status: int, reason: bytes) -> Response:
    msg = parse(
        b"SIP/2.0 %d %s\r\n"
        b"Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=2493k59kd\r\n"
        b"From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n"
        b"Call-ID: 843817637684230@998sdasdh09\r\n"
        b"CSeq: 1826 REGISTER\r\n"
        b"Content-Length: 0\r\n\r\n" % (status, reason)
    )
    assert isinstance(msg, Response)
    return msg


REGISTER = _request()
TRYING = _response(100, b"Trying")
PROGRESS = _response(183, b"Still Thinking")
OK = _response(200, b"OK")
UNAUTHORIZED = _response(401, b"Unauthorized")


def _events(tx: ServerNonInviteTransaction) -> list[TxEvent]:
    out = []
    while (event := tx.next_event()) is not None:
        out.append(event)
    return out


def _tx(*, reliable: bool = False) -> ServerNonInviteTransaction:
    tx = ServerNonInviteTransaction(REGISTER, now=0.0, reliable=reliable)
    assert _events(tx) == [RequestReceived(request=REGISTER)]
    return tx


def test_server_non_invite_creation_passes_the_request_up() -> None:
    tx = _tx()
    assert tx.state is State.TRYING
    assert tx.get_timer() is None
    assert tx.datagrams_to_send() == []


def test_server_non_invite_trying_discards_retransmissions() -> None:
    tx = _tx()
    tx.receive(REGISTER, 0.5)
    assert (tx.datagrams_to_send(), _events(tx), tx.state) == ([], [], State.TRYING)


def test_server_non_invite_proceeding_resends_the_latest_provisional() -> None:
    tx = _tx()
    tx.send(TRYING, 0.1)
    assert tx.state is State.PROCEEDING
    assert tx.datagrams_to_send() == [bytes(TRYING)]
    tx.receive(REGISTER, 0.5)
    assert tx.datagrams_to_send() == [bytes(TRYING)]
    tx.send(PROGRESS, 0.6)
    assert tx.datagrams_to_send() == [bytes(PROGRESS)]
    tx.receive(REGISTER, 1.0)
    assert tx.datagrams_to_send() == [bytes(PROGRESS)]
    assert _events(tx) == []
    assert tx.get_timer() is None


@pytest.mark.parametrize("final", [OK, UNAUTHORIZED], ids=["200", "401"])
@pytest.mark.parametrize("provisional", [False, True], ids=["trying", "proceeding"])
def test_server_non_invite_completed_resends_final_until_timer_j(
    final: Response, provisional: bool
) -> None:
    tx = _tx()
    if provisional:
        tx.send(TRYING, 0.1)
        tx.datagrams_to_send()
    tx.send(final, 1.0)
    assert tx.state is State.COMPLETED
    assert tx.datagrams_to_send() == [bytes(final)]
    # Timer J = 64*T1 over unreliable transports; no retransmission timer.
    assert tx.get_timer() == 1.0 + 64 * T1
    tx.handle_timer(20.0)
    assert tx.datagrams_to_send() == []
    tx.receive(REGISTER, 21.0)
    assert tx.datagrams_to_send() == [bytes(final)]
    tx.handle_timer(1.0 + 64 * T1)
    assert _events(tx) == [Terminated()]
    assert tx.get_timer() is None
    tx.receive(REGISTER, 40.0)
    assert tx.datagrams_to_send() == []


def test_server_non_invite_reliable_final_terminates_at_once() -> None:
    tx = _tx(reliable=True)
    tx.send(OK, 1.0)
    assert tx.datagrams_to_send() == [bytes(OK)]
    assert _events(tx) == [Terminated()]
    assert tx.state is State.TERMINATED


@pytest.mark.parametrize("response", [TRYING, OK, UNAUTHORIZED])
def test_server_non_invite_send_after_final_raises(response: Response) -> None:
    tx = _tx()
    tx.send(OK, 1.0)
    tx.datagrams_to_send()
    with pytest.raises(LocalProtocolError):
        tx.send(response, 2.0)
    # §17.2.2: the response is "discarded": state and wire are untouched.
    assert tx.state is State.COMPLETED
    assert tx.datagrams_to_send() == []
    tx.handle_timer(64 * T1 + 1.0)
    with pytest.raises(LocalProtocolError):
        tx.send(response, 2.0)


@pytest.mark.parametrize("sent", [None, TRYING, OK], ids=["trying", "proceeding", "completed"])
def test_server_non_invite_transport_error_informs_the_tu(sent: Response | None) -> None:
    tx = _tx()
    if sent is not None:
        tx.send(sent, 0.1)
    tx.handle_transport_error(0.2)
    assert _events(tx) == [TransportFailed(), Terminated()]
    assert tx.get_timer() is None
