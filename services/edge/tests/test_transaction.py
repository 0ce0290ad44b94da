"""sipmesh_edge.transaction: the lean non-INVITE server transaction behaves as sipmsg's."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipmesh_edge.transaction import NonInviteServer, status_of
from sipmsg import LocalProtocolError, Request, Response, make_response, parse
from sipmsg.transaction import (
    RequestReceived,
    ServerNonInviteTransaction,
    State,
    Terminated,
    TransactionConfig,
    TransportFailed,
)

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-reg1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r1\r\nTo: <sip:alice@example.com>\r\n"
    b"Call-ID: reg1@198.51.100.7\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
)


def _request() -> Request:
    req = parse(REGISTER)
    assert isinstance(req, Request)
    return req


REQ = _request()
T1 = 0.5


def test_non_invite_server_timeline_over_udp() -> None:
    tx = NonInviteServer(REQ, now=0.0, reliable=False)
    assert tx.state.name == "TRYING"
    assert tx.get_timer() is None
    tx.receive(REQ, 0.1)  # §17.2.2: "further request retransmissions are discarded"
    assert tx.datagrams_to_send() == []
    ok = bytes(make_response(REQ, 200))
    tx.send_bytes(200, ok, 0.2)
    assert tx.datagrams_to_send() == [ok]
    assert tx.state is State.COMPLETED
    assert tx.get_timer() == pytest.approx(0.2 + 64 * T1)
    tx.receive(REQ, 1.0)
    assert tx.datagrams_to_send() == [ok]
    tx.handle_timer(0.2 + 64 * T1 - 0.001)
    assert tx.next_event() is None
    tx.handle_timer(0.2 + 64 * T1)
    assert tx.terminated
    assert isinstance(tx.next_event(), Terminated)
    assert tx.next_event() is None
    tx.receive(REQ, 40.0)
    assert tx.datagrams_to_send() == []


def test_non_invite_server_terminates_at_once_over_reliable_transports() -> None:
    tx = NonInviteServer(REQ, now=0.0, reliable=True)
    tx.send(make_response(REQ, 404), 0.0)
    assert len(tx.datagrams_to_send()) == 1
    assert tx.terminated
    assert isinstance(tx.next_event(), Terminated)


def test_non_invite_server_refuses_a_second_final_response() -> None:
    tx = NonInviteServer(REQ, now=0.0, reliable=False)
    tx.send_bytes(200, b"SIP/2.0 200 OK\r\n\r\n", 0.0)
    with pytest.raises(LocalProtocolError):
        tx.send_bytes(486, b"SIP/2.0 486 Busy Here\r\n\r\n", 0.1)


def test_non_invite_server_refuses_invite() -> None:
    invite = parse(REGISTER.replace(b"REGISTER", b"INVITE"))
    assert isinstance(invite, Request)
    with pytest.raises(LocalProtocolError):
        NonInviteServer(invite, now=0.0, reliable=False)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", 200),
        (b"SIP/2.0 401 Unauthorized\r\n\r\n", 401),
        (b"SIP/2.0 699 \r\n\r\n", 699),
        (b"SIP/2.0 099 Low\r\n\r\n", None),
        (b"SIP/2.0 700 High\r\n\r\n", None),
        (b"SIP/2.0 20 Short\r\n\r\n", None),
        (b"SIP/2.0 2000 Long\r\n\r\n", None),
        (b"SIP/2.0 200 OK\r\nVia: x\r\n", None),  # no end of the header block
        (b"REGISTER sip:x SIP/2.0\r\n\r\n", None),
        (b"", None),
    ],
)
def test_status_of(data: bytes, status: int | None) -> None:
    assert status_of(data) == status


# Differential: the same inputs through sipmsg's machine and the edge's.
_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["receive", "send", "timer", "transport_error"]),
        st.sampled_from([100, 180, 200, 302, 486, 699]),
        st.floats(min_value=0.0, max_value=40.0),
    ),
    max_size=12,
)


def _run(
    tx: ServerNonInviteTransaction | NonInviteServer, steps: list[tuple[str, int, float]]
) -> list[object]:
    trace: list[object] = []
    now = 0.0
    for what, status, dt in steps:
        now += dt
        if what == "receive":
            tx.receive(REQ, now)
        elif what == "send":
            resp = make_response(REQ, status)
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


@settings(max_examples=300, deadline=None)
@given(steps=_STEPS, reliable=st.booleans())
def test_non_invite_server_matches_sipmsg(
    steps: list[tuple[str, int, float]], reliable: bool
) -> None:
    config = TransactionConfig()
    lib = ServerNonInviteTransaction(REQ, now=0.0, reliable=reliable, config=config)
    lean = NonInviteServer(REQ, now=0.0, reliable=reliable, config=config)
    assert _run(lean, steps) == _run(lib, steps)


def test_non_invite_server_transport_error_informs_then_terminates() -> None:
    tx = NonInviteServer(REQ, now=0.0, reliable=False)
    tx.handle_transport_error(0.0)
    assert isinstance(tx.next_event(), TransportFailed)
    assert isinstance(tx.next_event(), Terminated)
    tx.handle_transport_error(1.0)
    assert tx.next_event() is None


def test_non_invite_server_send_passes_response_bytes() -> None:
    resp: Response = make_response(REQ, 180)
    tx = NonInviteServer(REQ, now=0.0, reliable=False)
    tx.send(resp, 0.0)
    assert tx.state is State.PROCEEDING
    assert tx.datagrams_to_send() == [bytes(resp)]
    tx.receive(REQ, 0.5)  # Proceeding: the last provisional again
    assert tx.datagrams_to_send() == [bytes(resp)]


def test_non_invite_server_keeps_the_request_as_bytes_after_the_final() -> None:
    tx = NonInviteServer(REQ, now=0.0, reliable=False)
    assert tx.request is REQ
    tx.send_bytes(200, b"SIP/2.0 200 OK\r\n\r\n", 0.0)
    tx.datagrams_to_send()
    assert tx._request is None  # the parsed copy is gone; Timer J runs 32 s
    tx.retransmitted(1.0)
    assert tx.datagrams_to_send() == [b"SIP/2.0 200 OK\r\n\r\n"]
    assert tx._request is None  # absorbing needs no parse
    again = tx.request  # parsed again on demand
    assert again is not REQ
    assert bytes(again) == REGISTER
    assert again.call_id == REQ.call_id
