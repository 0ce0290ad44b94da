"""The INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §8.4), on scripted timelines."""

from __future__ import annotations

import pytest

from sipmsg.message import Request, Response, parse
from sipmsg.transaction import (
    ClientInviteTransaction,
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
BRANCH = b"z9hG4bK74bf9"


def _request(method: bytes) -> Request:
    msg = parse(
        b"%s sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=%s\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>\r\n"
        b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
        b"CSeq: 1 %s\r\n"
        b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
        b"Content-Length: 0\r\n\r\n" % (method, BRANCH, method)
    )
    assert isinstance(msg, Request)
    return msg


def _response(status: int, reason: bytes = b"Whatever") -> Response:
    msg = parse(
        b"SIP/2.0 %d %s\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=%s\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
        b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n" % (status, reason, BRANCH)
    )
    assert isinstance(msg, Response)
    return msg


INVITE = _request(b"INVITE")
ACK = _request(b"ACK")
RINGING = _response(180, b"Ringing")
OK = _response(200, b"OK")
BUSY = _response(486, b"Busy Here")


class _AckFactory:
    """Records its calls; returns a fixed ACK."""

    def __init__(self) -> None:
        self.calls: list[tuple[Request, Response]] = []

    def __call__(self, invite: Request, response: Response) -> Request:
        self.calls.append((invite, response))
        return ACK


def _events(tx: ClientInviteTransaction) -> list[TxEvent]:
    out = []
    while (event := tx.next_event()) is not None:
        out.append(event)
    return out


def _tx(
    *, reliable: bool = False, now: float = 0.0, config: TransactionConfig | None = None
) -> tuple[ClientInviteTransaction, _AckFactory]:
    factory = _AckFactory()
    tx = ClientInviteTransaction(
        INVITE, now=now, reliable=reliable, config=config, ack_factory=factory
    )
    return tx, factory


# --------------------------------------------------------------------------- Calling


def test_client_invite_sends_the_request_at_creation() -> None:
    tx, _ = _tx()
    assert tx.state is State.CALLING
    assert tx.datagrams_to_send() == [bytes(INVITE)]
    assert tx.datagrams_to_send() == []
    assert tx.get_timer() == T1
    assert _events(tx) == []


def test_client_invite_timer_a_doubles_until_timer_b_times_out() -> None:
    tx, _ = _tx()
    tx.datagrams_to_send()
    # §17.1.1.2: retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (A doubles
    # with no cap for INVITE), then Timer B at 64*T1 = 32 s.
    for deadline in (0.5, 1.5, 3.5, 7.5, 15.5, 31.5):
        assert tx.get_timer() == deadline
        tx.handle_timer(deadline - 0.01)  # not yet due: nothing happens
        assert tx.datagrams_to_send() == []
        tx.handle_timer(deadline)
        assert tx.datagrams_to_send() == [bytes(INVITE)]
        assert tx.state is State.CALLING
    assert tx.get_timer() == 64 * T1
    tx.handle_timer(64 * T1)
    assert _events(tx) == [TimedOut(timer=Input.TIMER_B), Terminated()]
    assert tx.state is State.TERMINATED
    assert tx.get_timer() is None
    assert tx.datagrams_to_send() == []


def test_client_invite_reliable_has_no_timer_a() -> None:
    tx, _ = _tx(reliable=True)
    assert tx.datagrams_to_send() == [bytes(INVITE)]
    assert tx.get_timer() == 64 * T1
    tx.handle_timer(31.0)
    assert tx.datagrams_to_send() == []
    tx.handle_timer(32.0)
    assert _events(tx) == [TimedOut(timer=Input.TIMER_B), Terminated()]
    assert tx.terminated


def test_client_invite_late_handle_timer_fires_in_order() -> None:
    # A caller that wakes up late gets one retransmission, then Timer B: Timer A
    # re-arms from the time it actually fired, not in a burst.
    tx, _ = _tx()
    tx.datagrams_to_send()
    tx.handle_timer(40.0)
    assert tx.datagrams_to_send() == [bytes(INVITE)]
    assert _events(tx) == [TimedOut(timer=Input.TIMER_B), Terminated()]


def test_client_invite_config_scales_timers() -> None:
    tx, _ = _tx(config=TransactionConfig(t1=0.1), now=10.0)
    assert tx.get_timer() == pytest.approx(10.1)
    tx.handle_timer(10.1)
    assert tx.get_timer() == pytest.approx(10.3)
    tx.handle_timer(10.0 + 6.4)
    assert tx.terminated


# --------------------------------------------------------------------------- Proceeding


def test_client_invite_1xx_moves_to_proceeding_and_stops_retransmitting() -> None:
    tx, _ = _tx()
    tx.datagrams_to_send()
    tx.receive(RINGING, 0.2)
    assert tx.state is State.PROCEEDING
    assert _events(tx) == [ResponseReceived(response=RINGING)]
    # §17.1.1.2: "the client transaction SHOULD NOT retransmit the request any
    # longer"; Timer B belongs to Calling: the TU's Timer C bounds Proceeding.
    assert tx.get_timer() is None
    tx.handle_timer(100.0)
    assert tx.datagrams_to_send() == []
    tx.receive(RINGING, 101.0)
    assert _events(tx) == [ResponseReceived(response=RINGING)]
    assert tx.state is State.PROCEEDING


def test_client_invite_due_timer_fires_before_the_response() -> None:
    # The retransmission due at T1 happened before a response read at T1.
    tx, _ = _tx()
    tx.datagrams_to_send()
    tx.receive(RINGING, T1)
    assert tx.datagrams_to_send() == [bytes(INVITE)]
    assert tx.state is State.PROCEEDING


# --------------------------------------------------------------------------- Completed


@pytest.mark.parametrize("first", [None, RINGING], ids=["from-calling", "from-proceeding"])
def test_client_invite_non2xx_is_acked_and_lingers_for_timer_d(first: Response | None) -> None:
    tx, factory = _tx()
    tx.datagrams_to_send()
    if first is not None:
        tx.receive(first, 0.1)
        _events(tx)
    tx.receive(BUSY, 0.25)
    assert tx.state is State.COMPLETED
    assert _events(tx) == [ResponseReceived(response=BUSY)]
    assert factory.calls == [(INVITE, BUSY)]
    assert tx.datagrams_to_send() == [bytes(ACK)]
    assert tx.ack == bytes(ACK)
    # Timer D: 32 s over unreliable transports; Timers A and B are gone.
    assert tx.get_timer() == 32.25
    # §17.1.1.2: a retransmitted final response re-sends the ACK, not passed up.
    tx.receive(BUSY, 2.0)
    assert tx.datagrams_to_send() == [bytes(ACK)]
    assert _events(tx) == []
    assert factory.calls == [(INVITE, BUSY)]
    # Provisional and 2xx responses are absorbed in Completed.
    tx.receive(RINGING, 3.0)
    tx.receive(OK, 3.0)
    assert (tx.datagrams_to_send(), _events(tx)) == ([], [])
    tx.handle_timer(32.25)
    assert tx.terminated
    assert _events(tx) == [Terminated()]
    assert tx.get_timer() is None


def test_client_invite_reliable_non2xx_terminates_at_once() -> None:
    # Timer D is "zero seconds for reliable transports".
    tx, _ = _tx(reliable=True)
    tx.datagrams_to_send()
    tx.receive(BUSY, 1.0)
    assert tx.datagrams_to_send() == [bytes(ACK)]
    assert _events(tx) == [ResponseReceived(response=BUSY), Terminated()]
    assert tx.terminated
    assert tx.get_timer() is None


# --------------------------------------------------------------------------- Accepted (RFC 6026)


@pytest.mark.parametrize("reliable", [False, True], ids=["udp", "tcp"])
def test_client_invite_2xx_moves_to_accepted_until_timer_m(reliable: bool) -> None:
    tx, factory = _tx(reliable=reliable)
    tx.datagrams_to_send()
    tx.receive(OK, 0.25)
    assert tx.state is State.ACCEPTED
    assert _events(tx) == [ResponseReceived(response=OK)]
    # The ACK for a 2xx is the TU's (§13.2.2.4), never the transaction's.
    assert factory.calls == []
    assert tx.datagrams_to_send() == []
    assert tx.get_timer() == 0.25 + 64 * T1
    # RFC 6026 §8.4: further 2xx (retransmissions, forks) go to the TU.
    tx.receive(OK, 3.0)
    assert _events(tx) == [ResponseReceived(response=OK)]
    tx.receive(BUSY, 3.0)
    tx.receive(RINGING, 3.0)
    assert _events(tx) == []
    tx.handle_timer(0.25 + 64 * T1)
    assert _events(tx) == [Terminated()]
    assert tx.terminated


def test_client_invite_2xx_from_proceeding() -> None:
    tx, _ = _tx()
    tx.receive(RINGING, 1.0)
    tx.receive(OK, 5.0)
    assert tx.state is State.ACCEPTED
    assert tx.get_timer() == 5.0 + 32.0


# --------------------------------------------------------------------------- errors, strays


@pytest.mark.parametrize("state_after", [State.CALLING, State.PROCEEDING, State.COMPLETED])
def test_client_invite_transport_error_informs_the_tu(state_after: State) -> None:
    tx, _ = _tx()
    if state_after is State.PROCEEDING:
        tx.receive(RINGING, 0.1)
    elif state_after is State.COMPLETED:
        tx.receive(BUSY, 0.1)
    assert tx.state is state_after
    _events(tx)
    tx.handle_transport_error(0.2)
    assert _events(tx) == [TransportFailed(), Terminated()]
    assert tx.get_timer() is None
    tx.handle_transport_error(0.3)  # absorbed once terminated
    assert _events(tx) == []


def test_client_invite_one_late_handle_timer_fires_the_earliest_timer_first() -> None:
    # At 40 both Timer A (due 0.5) and Timer B (due 32) are due: A fires first,
    # re-sends and re-arms from now (40 + 2*T1), then B times the transaction
    # out. B first would re-send nothing.
    tx, _ = _tx()
    tx.datagrams_to_send()
    assert tx.get_timer() == T1
    tx.handle_timer(40.0)
    assert tx.datagrams_to_send() == [bytes(INVITE)]
    assert _events(tx) == [TimedOut(timer=Input.TIMER_B), Terminated()]
    assert tx.get_timer() is None


def test_client_invite_terminated_absorbs_everything() -> None:
    tx, _ = _tx(reliable=True)
    tx.receive(BUSY, 0.0)
    tx.datagrams_to_send()
    _events(tx)
    for response in (RINGING, OK, BUSY):
        tx.receive(response, 1.0)
    tx.handle_timer(1000.0)
    assert (tx.datagrams_to_send(), _events(tx), tx.state) == ([], [], State.TERMINATED)


def test_client_invite_default_ack_factory_builds_the_rfc_ack() -> None:
    tx = ClientInviteTransaction(INVITE, now=0.0, reliable=True)
    tx.receive(BUSY, 0.1)
    ack = parse(tx.datagrams_to_send()[-1])
    assert isinstance(ack, Request)
    # §17.1.1.3: same Request-URI, Call-ID, From, top Via and CSeq number as the
    # INVITE; To from the response; CSeq method ACK.
    assert ack.method == b"ACK"
    assert ack.uri == INVITE.uri
    assert ack.call_id == INVITE.call_id
    assert ack.via[0].branch == BRANCH
    assert ack.cseq.seq == 1
    assert ack.cseq.method == b"ACK"
    assert ack.header("To") == BUSY.header("To")


@pytest.mark.parametrize("final", [OK, BUSY], ids=["2xx", "non-2xx"])
def test_client_invite_keeps_its_request_as_bytes_after_a_final(final: Response) -> None:
    # Accepted and Completed linger 64*T1 and 32 s, absorbing or re-sending an
    # ACK held as bytes: the parsed INVITE is dropped and parsed again if asked.
    tx, _ = _tx()
    assert tx.request is INVITE
    tx.receive(final, 0.25)
    again = tx.request
    assert again is not INVITE
    assert again == INVITE
    assert again.call_id == INVITE.call_id
    assert tx.request is again  # parsed once
