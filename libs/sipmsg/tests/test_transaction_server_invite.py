"""The INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §8.5-8.7), on scripted timelines."""

from __future__ import annotations

import pytest

from sipmsg import LocalProtocolError
from sipmsg.message import Request, Response, parse
from sipmsg.transaction import (
    AckReceived,
    Input,
    RequestReceived,
    ServerInviteTransaction,
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
NO_TRYING = TransactionConfig(trying_delay=None)


def _request(method: bytes) -> Request:
    msg = parse(
        b"%s sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159 %s\r\n"
        b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
        b"Content-Length: 0\r\n\r\n" % (method, method)
    )
    assert isinstance(msg, Request)
    return msg


def _response(status: int, reason: bytes) -> Response:
    msg = parse(
        b"SIP/2.0 %d %s\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n" % (status, reason)
    )
    assert isinstance(msg, Response)
    return msg


INVITE = _request(b"INVITE")
ACK = _request(b"ACK")
TRYING = _response(100, b"Trying")
RINGING = _response(180, b"Ringing")
OK = _response(200, b"OK")
BUSY = _response(486, b"Busy Here")


def _events(tx: ServerInviteTransaction) -> list[TxEvent]:
    out = []
    while (event := tx.next_event()) is not None:
        out.append(event)
    return out


class _TryingFactory:
    def __init__(self) -> None:
        self.calls: list[Request] = []

    def __call__(self, invite: Request) -> Response:
        self.calls.append(invite)
        return TRYING


def _tx(
    *, reliable: bool = False, config: TransactionConfig | None = NO_TRYING
) -> ServerInviteTransaction:
    tx = ServerInviteTransaction(INVITE, now=0.0, reliable=reliable, config=config)
    assert _events(tx) == [RequestReceived(request=INVITE)]
    return tx


# --------------------------------------------------------------------------- Proceeding, 100 Trying


def test_server_invite_sends_100_trying_after_200_ms() -> None:
    factory = _TryingFactory()
    tx = ServerInviteTransaction(INVITE, now=0.0, reliable=False, trying_factory=factory)
    assert tx.state is State.PROCEEDING
    assert _events(tx) == [RequestReceived(request=INVITE)]
    assert tx.datagrams_to_send() == []
    assert tx.get_timer() == 0.2
    tx.handle_timer(0.2)
    assert factory.calls == [INVITE]
    assert tx.datagrams_to_send() == [bytes(TRYING)]
    assert tx.get_timer() is None
    # The 100 is the latest provisional: a retransmitted INVITE re-sends it.
    tx.receive(INVITE, 0.5)
    assert tx.datagrams_to_send() == [bytes(TRYING)]
    assert _events(tx) == []


def test_server_invite_no_automatic_trying_when_the_tu_is_quick() -> None:
    factory = _TryingFactory()
    tx = ServerInviteTransaction(INVITE, now=0.0, reliable=False, trying_factory=factory)
    tx.send(RINGING, 0.1)
    assert tx.datagrams_to_send() == [bytes(RINGING)]
    assert tx.get_timer() is None
    tx.handle_timer(1.0)
    assert factory.calls == []
    assert tx.datagrams_to_send() == []


def test_server_invite_trying_delay_zero_sends_at_once() -> None:
    factory = _TryingFactory()
    config = TransactionConfig(trying_delay=0.0)
    tx = ServerInviteTransaction(
        INVITE, now=3.0, reliable=True, config=config, trying_factory=factory
    )
    assert tx.datagrams_to_send() == [bytes(TRYING)]
    assert tx.get_timer() is None


def test_server_invite_default_trying_factory_answers_100() -> None:
    tx = ServerInviteTransaction(INVITE, now=0.0, reliable=False)
    tx.handle_timer(0.2)
    (data,) = tx.datagrams_to_send()
    trying = parse(data)
    assert isinstance(trying, Response)
    assert trying.status == 100
    assert trying.call_id == INVITE.call_id
    assert trying.header("Via") == INVITE.header("Via")


def test_server_invite_retransmission_before_any_provisional_sends_nothing() -> None:
    tx = _tx()
    assert tx.get_timer() is None
    tx.receive(INVITE, 0.5)
    assert (tx.datagrams_to_send(), _events(tx)) == ([], [])


def test_server_invite_proceeding_resends_the_latest_provisional() -> None:
    tx = _tx()
    tx.send(TRYING, 0.0)
    tx.send(RINGING, 1.0)
    assert tx.datagrams_to_send() == [bytes(TRYING), bytes(RINGING)]
    tx.receive(INVITE, 1.5)
    assert tx.datagrams_to_send() == [bytes(RINGING)]
    tx.receive(ACK, 1.6)  # an ACK before any final response is absorbed
    assert (tx.datagrams_to_send(), _events(tx), tx.state) == ([], [], State.PROCEEDING)


# --------------------------------------------------------------------------- Completed, Confirmed


def test_server_invite_timer_g_doubles_to_t2_until_timer_h() -> None:
    tx = _tx()
    tx.send(BUSY, 0.0)
    assert tx.state is State.COMPLETED
    assert tx.datagrams_to_send() == [bytes(BUSY)]
    # §17.2.1: G = T1, then MIN(2*G, T2); H = 64*T1 whatever happens.
    sent_at = []
    while (deadline := tx.get_timer()) is not None and deadline < 64 * T1:
        tx.handle_timer(deadline)
        assert tx.datagrams_to_send() == [bytes(BUSY)]
        sent_at.append(deadline)
    assert sent_at == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert tx.get_timer() == 64 * T1
    tx.handle_timer(64 * T1)
    assert _events(tx) == [TimedOut(timer=Input.TIMER_H), Terminated()]
    assert tx.get_timer() is None
    assert tx.datagrams_to_send() == []


def test_server_invite_timers_due_together_fire_in_arming_order() -> None:
    # T1 = T2 = 1: Timer G is due at 1, 2, ... 64 and Timer H at 64 too. A
    # firing timer is re-armed after H was, so at 64 H (armed first) fires
    # first and ends the transaction: 63 retransmissions, not 64.
    tx = _tx(config=TransactionConfig(t1=1.0, t2=1.0, trying_delay=None))
    tx.send(BUSY, 0.0)
    tx.datagrams_to_send()
    resent = 0
    while (deadline := tx.get_timer()) is not None:
        tx.handle_timer(deadline)
        resent += len(tx.datagrams_to_send())
    assert resent == 63
    assert _events(tx) == [TimedOut(timer=Input.TIMER_H), Terminated()]


def test_server_invite_completed_resends_final_on_retransmitted_invite() -> None:
    tx = _tx()
    tx.send(RINGING, 0.0)
    tx.send(BUSY, 1.0)
    tx.datagrams_to_send()
    tx.receive(INVITE, 1.2)
    assert tx.datagrams_to_send() == [bytes(BUSY)]
    assert _events(tx) == []


def test_server_invite_ack_confirms_and_lingers_for_timer_i() -> None:
    tx = _tx()
    tx.send(BUSY, 0.0)
    tx.handle_timer(0.5)
    tx.datagrams_to_send()
    tx.receive(ACK, 0.7)
    assert tx.state is State.CONFIRMED
    # The ACK for a non-2xx response is hop-by-hop: not passed to the TU.
    assert _events(tx) == []
    # Timer G and H are gone; Timer I = T4.
    assert tx.get_timer() == 0.7 + T4
    tx.receive(ACK, 1.0)
    tx.receive(INVITE, 1.0)
    assert (tx.datagrams_to_send(), _events(tx)) == ([], [])
    tx.handle_timer(0.7 + T4)
    assert _events(tx) == [Terminated()]
    assert tx.terminated


def test_server_invite_reliable_has_no_timer_g_and_zero_timer_i() -> None:
    tx = _tx(reliable=True)
    tx.send(BUSY, 0.0)
    tx.datagrams_to_send()
    assert tx.get_timer() == 64 * T1  # only Timer H
    tx.receive(ACK, 1.0)
    assert _events(tx) == [Terminated()]
    assert tx.get_timer() is None


def test_server_invite_reliable_timer_h() -> None:
    tx = _tx(reliable=True)
    tx.send(BUSY, 0.0)
    tx.datagrams_to_send()
    tx.handle_timer(64 * T1)
    assert tx.datagrams_to_send() == []
    assert _events(tx) == [TimedOut(timer=Input.TIMER_H), Terminated()]


# --------------------------------------------------------------------------- Accepted (RFC 6026)


@pytest.mark.parametrize("reliable", [False, True], ids=["udp", "tcp"])
def test_server_invite_2xx_moves_to_accepted_until_timer_l(reliable: bool) -> None:
    tx = _tx(reliable=reliable)
    tx.send(RINGING, 0.0)
    tx.send(OK, 1.0)
    assert tx.state is State.ACCEPTED
    assert tx.datagrams_to_send() == [bytes(RINGING), bytes(OK)]
    assert tx.get_timer() == 1.0 + 64 * T1
    # RFC 6026 §8.7: no 2xx retransmission of its own; INVITEs absorbed; the
    # TU's 2xx retransmissions go out; ACKs go up.
    tx.handle_timer(1.5)
    tx.receive(INVITE, 2.0)
    assert tx.datagrams_to_send() == []
    tx.send(OK, 2.0)
    assert tx.datagrams_to_send() == [bytes(OK)]
    tx.receive(ACK, 2.5)
    tx.receive(ACK, 2.6)
    assert _events(tx) == [AckReceived(request=ACK), AckReceived(request=ACK)]
    assert tx.state is State.ACCEPTED
    tx.handle_timer(1.0 + 64 * T1)
    assert _events(tx) == [Terminated()]
    assert tx.get_timer() is None


@pytest.mark.parametrize("response", [TRYING, BUSY], ids=["1xx", "486"])
def test_server_invite_accepted_refuses_non_2xx(response: Response) -> None:
    tx = _tx()
    tx.send(OK, 0.0)
    tx.datagrams_to_send()
    with pytest.raises(LocalProtocolError):
        tx.send(response, 1.0)
    assert tx.state is State.ACCEPTED
    assert tx.datagrams_to_send() == []


# --------------------------------------------------------------------------- misuse, errors


@pytest.mark.parametrize("response", [TRYING, OK, BUSY], ids=["1xx", "2xx", "486"])
def test_server_invite_completed_refuses_any_response(response: Response) -> None:
    tx = _tx()
    tx.send(BUSY, 0.0)
    tx.datagrams_to_send()
    with pytest.raises(LocalProtocolError) as exc_info:
        tx.send(response, 0.1)
    assert "COMPLETED" in str(exc_info.value)
    assert tx.state is State.COMPLETED
    assert tx.datagrams_to_send() == []


def test_server_invite_terminated_refuses_sends_and_absorbs_input() -> None:
    tx = _tx(reliable=True)
    tx.send(BUSY, 0.0)
    tx.receive(ACK, 0.1)
    assert tx.terminated
    tx.datagrams_to_send()
    _events(tx)
    with pytest.raises(LocalProtocolError):
        tx.send(OK, 1.0)
    tx.receive(INVITE, 1.0)
    tx.receive(ACK, 1.0)
    tx.handle_transport_error(1.0)
    assert (tx.datagrams_to_send(), _events(tx), tx.state) == ([], [], State.TERMINATED)


@pytest.mark.parametrize("sent", [None, BUSY, OK], ids=["proceeding", "completed", "accepted"])
def test_server_invite_transport_error_informs_the_tu(sent: Response | None) -> None:
    tx = _tx()
    if sent is not None:
        tx.send(sent, 0.0)
    tx.handle_transport_error(0.1)
    assert _events(tx) == [TransportFailed(), Terminated()]
    assert tx.get_timer() is None
