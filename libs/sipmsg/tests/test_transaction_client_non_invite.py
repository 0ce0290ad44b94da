"""The non-INVITE client transaction (RFC 3261 §17.1.2), on scripted timelines."""

from __future__ import annotations

import pytest

from sipmsg.message import Request, Response, parse
from sipmsg.transaction import (
    ClientNonInviteTransaction,
    Input,
    ResponseReceived,
    State,
    Terminated,
    TimedOut,
    TransactionConfig,
    TransportFailed,
    TxEvent,
)

T1 = 0.5
T2 = 4.0
T4 = 5.0
BRANCH = b"z9hG4bKnashds7"


def _request() -> Request:
    msg = parse(
        b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=%s\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"To: <sip:carol@chicago.example.com>\r\n"
        b"Call-ID: a84b4c76e66710\r\n"
        b"CSeq: 63104 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n" % BRANCH
    )
    assert isinstance(msg, Request)
    return msg


def _response(status: int, reason: bytes) -> Response:
    msg = parse(
        b"SIP/2.0 %d %s\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=%s\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"To: <sip:carol@chicago.example.com>;tag=93810874\r\n"
        b"Call-ID: a84b4c76e66710\r\n"
        b"CSeq: 63104 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n" % (status, reason, BRANCH)
    )
    assert isinstance(msg, Response)
    return msg


OPTIONS = _request()
TRYING = _response(100, b"Trying")
OK = _response(200, b"OK")
NOT_FOUND = _response(404, b"Not Found")


def _events(tx: ClientNonInviteTransaction) -> list[TxEvent]:
    out = []
    while (event := tx.next_event()) is not None:
        out.append(event)
    return out


def _run_until(tx: ClientNonInviteTransaction, end: float) -> list[float]:
    """Fire every timer up to ``end``; return the times the request was re-sent."""
    sent_at = []
    while (deadline := tx.get_timer()) is not None and deadline <= end:
        tx.handle_timer(deadline)
        if tx.datagrams_to_send() == [bytes(OPTIONS)]:
            sent_at.append(deadline)
    return sent_at


# --------------------------------------------------------------------------- Trying


def test_client_non_invite_sends_the_request_at_creation() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=False)
    assert tx.state is State.TRYING
    assert tx.datagrams_to_send() == [bytes(OPTIONS)]
    assert tx.get_timer() == T1


def test_client_non_invite_timer_e_doubles_to_t2_until_timer_f() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=False)
    tx.datagrams_to_send()
    # §17.1.2.2: E = T1, then MIN(2*E, T2): intervals 0.5, 1, 2, 4, 4, 4 ...
    assert _run_until(tx, 31.9) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert tx.state is State.TRYING
    assert tx.get_timer() == 64 * T1
    tx.handle_timer(64 * T1)
    assert _events(tx) == [TimedOut(timer=Input.TIMER_F), Terminated()]
    assert tx.get_timer() is None
    assert tx.datagrams_to_send() == []


def test_client_non_invite_reliable_has_no_timer_e() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=True)
    tx.datagrams_to_send()
    assert tx.get_timer() == 64 * T1
    assert _run_until(tx, 31.9) == []
    tx.handle_timer(32.0)
    assert _events(tx) == [TimedOut(timer=Input.TIMER_F), Terminated()]


def test_client_non_invite_small_t2_caps_at_once() -> None:
    config = TransactionConfig(t1=0.5, t2=0.5)
    tx = ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=False, config=config)
    tx.datagrams_to_send()
    assert _run_until(tx, 2.0) == [0.5, 1.0, 1.5, 2.0]


# --------------------------------------------------------------------------- Proceeding


def test_client_non_invite_proceeding_retransmits_every_t2() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=False)
    tx.datagrams_to_send()
    assert _run_until(tx, 0.5) == [0.5]
    tx.receive(TRYING, 0.7)
    assert tx.state is State.PROCEEDING
    assert _events(tx) == [ResponseReceived(response=TRYING)]
    # Timer E keeps its deadline (1.5); when it fires in Proceeding it is
    # "reset with a value of T2 seconds".
    assert tx.get_timer() == 1.5
    assert _run_until(tx, 20.0) == [1.5, 5.5, 9.5, 13.5, 17.5]
    tx.receive(TRYING, 20.0)  # further provisionals are passed up too
    assert _events(tx) == [ResponseReceived(response=TRYING)]
    # Timer F still runs in Proceeding.
    assert _run_until(tx, 32.0) == [21.5, 25.5, 29.5]
    assert _events(tx) == [TimedOut(timer=Input.TIMER_F), Terminated()]


# --------------------------------------------------------------------------- Completed


@pytest.mark.parametrize("final", [OK, NOT_FOUND], ids=["200", "404"])
@pytest.mark.parametrize("provisional", [False, True], ids=["trying", "proceeding"])
def test_client_non_invite_final_lingers_for_timer_k(final: Response, provisional: bool) -> None:
    tx = ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=False)
    tx.datagrams_to_send()
    if provisional:
        tx.receive(TRYING, 0.1)
        _events(tx)
    tx.receive(final, 0.25)
    assert tx.state is State.COMPLETED
    assert _events(tx) == [ResponseReceived(response=final)]
    assert tx.datagrams_to_send() == []
    # Timer K = T4 over unreliable transports; E and F are gone.
    assert tx.get_timer() == 0.25 + T4
    # "The "Completed" state exists to buffer any additional response
    # retransmissions": absorbed, nothing sent.
    tx.receive(final, 2.0)
    tx.receive(TRYING, 2.0)
    assert (tx.datagrams_to_send(), _events(tx)) == ([], [])
    tx.handle_timer(0.25 + T4)
    assert _events(tx) == [Terminated()]
    assert tx.get_timer() is None


def test_client_non_invite_reliable_final_terminates_at_once() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=True)
    tx.receive(OK, 1.0)
    assert _events(tx) == [ResponseReceived(response=OK), Terminated()]
    assert tx.state is State.TERMINATED
    assert tx.get_timer() is None


# --------------------------------------------------------------------------- errors, strays


@pytest.mark.parametrize("response", [None, TRYING, OK], ids=["trying", "proceeding", "completed"])
def test_client_non_invite_transport_error_informs_the_tu(response: Response | None) -> None:
    tx = ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=False)
    if response is not None:
        tx.receive(response, 0.1)
    _events(tx)
    tx.handle_transport_error(0.2)
    assert _events(tx) == [TransportFailed(), Terminated()]
    assert tx.get_timer() is None


def test_client_non_invite_terminated_absorbs_everything() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=True)
    tx.handle_timer(32.0)
    tx.datagrams_to_send()
    _events(tx)
    tx.receive(OK, 33.0)
    tx.handle_transport_error(33.0)
    tx.handle_timer(100.0)
    assert (tx.datagrams_to_send(), _events(tx), tx.state) == ([], [], State.TERMINATED)


def test_client_non_invite_keeps_its_request_as_bytes_after_a_final() -> None:
    # Completed only absorbs retransmitted responses (Timer K): the parsed
    # request is dropped and parsed again if asked.
    tx = ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=False)
    tx.receive(TRYING, 0.1)
    assert tx.request is OPTIONS  # Proceeding still needs it
    tx.receive(OK, 0.2)
    again = tx.request
    assert again is not OPTIONS
    assert again == OPTIONS
    tx.receive(OK, 0.3)  # a retransmission: absorbed
    assert _events(tx) == [ResponseReceived(response=TRYING), ResponseReceived(response=OK)]
