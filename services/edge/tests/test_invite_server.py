"""sipmesh_edge.invite_server: the lean INVITE server transaction behaves as sipmsg's."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipmesh_edge.invite_server import InviteServer
from sipmsg import LocalProtocolError, Request, make_response, parse
from sipmsg.transaction import (
    AckReceived,
    RequestReceived,
    ServerInviteTransaction,
    State,
    Terminated,
    TimedOut,
    TransactionConfig,
    TransportFailed,
)

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-inv1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"
    b"Call-ID: inv1@198.51.100.7\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


def _request(data: bytes) -> Request:
    req = parse(data)
    assert isinstance(req, Request)
    return req


REQ = _request(INVITE)
ACK = _request(
    INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
)  # the ACK of a non-2xx: the INVITE's branch (§17.1.1.3)
T1 = 0.5
CONFIG = TransactionConfig(trying_delay=0.0)  # the edge's (sink._with_trying)


def test_invite_server_sends_100_trying_at_once_and_absorbs_until_the_final() -> None:
    tx = InviteServer(REQ, now=0.0, reliable=False, config=CONFIG)
    [trying] = tx.datagrams_to_send()
    assert trying.startswith(b"SIP/2.0 100 Trying\r\n")
    assert tx.state is State.PROCEEDING
    assert tx.get_timer() is None
    tx.receive(REQ, 0.2)  # §17.2.1: the most recent provisional again
    assert tx.datagrams_to_send() == [trying]
    ringing = bytes(make_response(REQ, 180, to_tag=b"b1"))
    tx.send_bytes(180, ringing, 0.3)
    assert tx.datagrams_to_send() == [ringing]
    tx.retransmitted(0.4)
    assert tx.datagrams_to_send() == [ringing]


def test_invite_server_2xx_accepted_then_timer_l() -> None:
    tx = InviteServer(REQ, now=0.0, reliable=False, config=CONFIG)
    tx.datagrams_to_send()
    ok = bytes(make_response(REQ, 200, to_tag=b"b1"))
    tx.send_bytes(200, ok, 1.0)
    assert tx.state is State.ACCEPTED
    assert tx.datagrams_to_send() == [ok]
    assert tx.get_timer() == pytest.approx(1.0 + 64 * T1)
    tx.receive(REQ, 2.0)  # RFC 6026 §8.7: absorbed
    assert tx.datagrams_to_send() == []
    tx.send_bytes(200, ok, 2.5)  # the TU's retransmission of the 2xx
    assert tx.datagrams_to_send() == [ok]
    with pytest.raises(LocalProtocolError):
        tx.send_bytes(486, b"SIP/2.0 486 Busy Here\r\n\r\n", 2.6)
    ack = _request(INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK"))
    tx.receive(ack, 3.0)
    event = tx.next_event()
    assert isinstance(event, AckReceived)
    assert event.request is ack
    tx.handle_timer(1.0 + 64 * T1)
    assert tx.terminated
    assert isinstance(tx.next_event(), Terminated)
    assert tx._request is None  # the parsed INVITE went with the final
    assert tx.request.call_id == REQ.call_id  # parsed again on demand


def test_invite_server_non_2xx_timer_g_until_the_ack_then_timer_i() -> None:
    tx = InviteServer(REQ, now=0.0, reliable=False, config=CONFIG)
    tx.datagrams_to_send()
    busy = bytes(make_response(REQ, 486, to_tag=b"b1"))
    tx.send_bytes(486, busy, 0.0)
    assert tx.datagrams_to_send() == [busy]
    assert tx.get_timer() == pytest.approx(T1)
    tx.handle_timer(T1)  # Timer G: again, then 2*T1
    assert tx.datagrams_to_send() == [busy]
    assert tx.get_timer() == pytest.approx(T1 + 2 * T1)
    tx.receive(ACK, 1.0)
    assert tx.state is State.CONFIRMED
    assert tx.get_timer() == pytest.approx(1.0 + 5.0)  # Timer I = T4
    tx.receive(ACK, 2.0)
    tx.receive(REQ, 2.0)
    assert tx.datagrams_to_send() == []  # Confirmed absorbs both
    tx.handle_timer(6.0)
    assert tx.terminated


def test_invite_server_timer_h_times_out() -> None:
    tx = InviteServer(REQ, now=0.0, reliable=True, config=CONFIG)
    tx.send(make_response(REQ, 500), 0.0)
    assert tx.get_timer() == pytest.approx(64 * T1)  # no Timer G over a reliable transport
    tx.handle_timer(64 * T1)
    assert isinstance(tx.next_event(), TimedOut)
    assert isinstance(tx.next_event(), Terminated)
    assert tx.next_event() is None


def test_invite_server_refuses_other_methods() -> None:
    with pytest.raises(LocalProtocolError):
        InviteServer(ACK, now=0.0, reliable=False)


# Differential: the same inputs through sipmsg's machine and the edge's.
_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["invite", "ack", "send", "timer", "transport_error"]),
        st.sampled_from([100, 180, 183, 200, 302, 486, 699]),
        st.one_of(
            st.floats(min_value=0.0, max_value=40.0),
            st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0, 5.0, 31.0, 32.0]),
        ),
    ),
    max_size=14,
)


def _run(
    tx: ServerInviteTransaction | InviteServer, steps: list[tuple[str, int, float]]
) -> list[object]:
    trace: list[object] = [(tx.state, tx.get_timer(), tx.datagrams_to_send())]
    now = 0.0
    for what, status, dt in steps:
        now += dt
        if what == "invite":
            tx.receive(REQ, now)
        elif what == "ack":
            tx.receive(ACK, now)
        elif what == "send":
            resp = make_response(REQ, status, to_tag=b"b1")
            try:
                tx.send(resp, now)
            except LocalProtocolError:
                trace.append("refused")
        elif what == "timer":
            tx.handle_timer(now)
        else:
            tx.handle_transport_error(now)
        events = []
        while (event := tx.next_event()) is not None:
            if not isinstance(event, RequestReceived):  # the lean one emits none
                events.append(type(event).__name__)
        trace.append((tx.state, tx.get_timer(), tx.datagrams_to_send(), events))
    return trace


@settings(max_examples=500, deadline=None)
@given(steps=_STEPS, reliable=st.booleans())
def test_invite_server_matches_sipmsg(steps: list[tuple[str, int, float]], reliable: bool) -> None:
    lib = ServerInviteTransaction(REQ, now=0.0, reliable=reliable, config=CONFIG)
    lean = InviteServer(REQ, now=0.0, reliable=reliable, config=CONFIG)
    assert _run(lean, steps) == _run(lib, steps)


def test_invite_server_transport_error_informs_then_terminates() -> None:
    tx = InviteServer(REQ, now=0.0, reliable=False, config=CONFIG)
    tx.handle_transport_error(0.0)
    assert isinstance(tx.next_event(), TransportFailed)
    assert isinstance(tx.next_event(), Terminated)
    tx.handle_transport_error(1.0)
    assert tx.next_event() is None


@pytest.mark.parametrize("reliable", [False, True])
@pytest.mark.parametrize(
    "steps",
    [
        # Timer G doubles to T2 (0.5, 1, 2, 4, 4 ...): fired on time each time.
        [("send", 486, 0.0)] + [("timer", 0, dt) for dt in (0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0)],
        # Timer G re-armed at 31 + 1 = 32 = Timer H: H fires first, no resend.
        [("send", 486, 0.0), ("timer", 0, 31.0), ("timer", 0, 1.0)],
        # The ACK in the same instant as a due Timer G: G first, then Confirmed.
        [("send", 302, 0.0), ("ack", 0, 0.5), ("timer", 0, 5.0)],
    ],
)
def test_invite_server_matches_sipmsg_on_timer_edges(
    steps: list[tuple[str, int, float]], reliable: bool
) -> None:
    lib = ServerInviteTransaction(REQ, now=0.0, reliable=reliable, config=CONFIG)
    lean = InviteServer(REQ, now=0.0, reliable=reliable, config=CONFIG)
    assert _run(lean, steps) == _run(lib, steps)
