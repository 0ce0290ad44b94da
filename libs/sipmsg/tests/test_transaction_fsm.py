"""Properties of the four transaction machines: the tables, and random timelines.

After h2's tests/test_state_machines.py: whatever sequence of wire input, TU
sends, timers and transport errors, the machines raise nothing but
LocalProtocolError (and that only from ``send``), Terminated is absorbing and
announced once, the timer never lies in the past, and retransmissions stay
within the RFC's counts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipmsg import LocalProtocolError
from sipmsg.message import Request, Response, parse
from sipmsg.transaction import (
    AckReceived,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Input,
    RequestReceived,
    ResponseReceived,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    Terminated,
    TimedOut,
    TransactionConfig,
    TransportFailed,
    TxEvent,
)
from sipmsg.transaction._common import (
    TIMERS,
    WIRE_INPUTS,
    ClientTransaction,
    ServerTransaction,
    Transaction,
)

MACHINES: list[type[Transaction]] = [
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
]
INITIAL = {
    ClientInviteTransaction: State.CALLING,
    ClientNonInviteTransaction: State.TRYING,
    ServerInviteTransaction: State.PROCEEDING,
    ServerNonInviteTransaction: State.TRYING,
}


def _request(method: bytes) -> Request:
    cseq = b"INVITE" if method == b"ACK" else method
    msg = parse(
        b"%s sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159 %s\r\n"
        b"Content-Length: 0\r\n\r\n" % (method, b"ACK" if method == b"ACK" else cseq)
    )
    assert isinstance(msg, Request)
    return msg


def _response(status: int, method: bytes) -> Response:
    msg = parse(
        b"SIP/2.0 %d Whatever\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159 %s\r\n"
        b"Content-Length: 0\r\n\r\n" % (status, method)
    )
    assert isinstance(msg, Response)
    return msg


INVITE = _request(b"INVITE")
ACK = _request(b"ACK")
OPTIONS = _request(b"OPTIONS")
STATUSES = [100, 180, 200, 202, 302, 486, 603]
#: What a client may read: also the edges of each class, and a status no class
#: covers (the parser accepts any three digits; the transaction must absorb it).
RECEIVED = [*STATUSES, 199, 299, 699, 701, 999]


# --------------------------------------------------------------------------- the tables


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_fsm_every_running_timer_has_a_transition(machine: type[Transaction]) -> None:
    for state, timers in machine._STATE_TIMERS.items():
        for timer in timers:
            assert (state, timer) in machine._TRANSITIONS, (state, timer)
    for state, event in machine._TRANSITIONS:
        if event in TIMERS:
            assert event in machine._STATE_TIMERS[state], (state, event)


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_fsm_terminated_is_absorbing_and_reachable(machine: type[Transaction]) -> None:
    table = machine._TRANSITIONS
    states = {s for s, _ in table} | {t for _, t in table.values()}
    assert not any(s is State.TERMINATED for s, _ in table)
    # Every state is reachable from the initial one ...
    seen = {INITIAL[machine]}
    todo = deque(seen)
    while todo:
        state = todo.popleft()
        for (src, _), (_, dst) in table.items():
            if src is state and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    assert seen == states
    # ... can fail on a transport error, and leads to Terminated.
    for state in states - {State.TERMINATED}:
        assert table[state, Input.TRANSPORT_ERROR][1] is State.TERMINATED


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_fsm_linger_states_end_on_a_timer(machine: type[Transaction]) -> None:
    # Completed, Confirmed and Accepted never wait forever: a timer always ends them.
    for state in (State.COMPLETED, State.CONFIRMED, State.ACCEPTED):
        ends = [
            e
            for (s, e), (_, t) in machine._TRANSITIONS.items()
            if s is state and e in TIMERS and t is State.TERMINATED
        ]
        used = any(s is state for s, _ in machine._TRANSITIONS)
        assert bool(ends) == used, state


# --------------------------------------------------------------------------- random timelines


@dataclass
class _Run:
    """One transaction driven by random operations, checking invariants as it goes."""

    tx: Transaction
    now: float = 0.0
    events: list[TxEvent] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)
    terminated_at: int | None = None

    def drain(self) -> None:
        data = self.tx.datagrams_to_send()
        events = []
        while (event := self.tx.next_event()) is not None:
            events.append(event)
        if self.terminated_at is not None:
            assert data == []
            assert events == []
        self.sent.extend(data)
        self.events.extend(events)
        if Terminated() in events:
            assert events[-1] == Terminated()
            assert events.count(Terminated()) == 1
            self.terminated_at = len(self.events)
        deadline = self.tx.get_timer()
        assert deadline is None or deadline > self.now
        assert (self.tx.state is State.TERMINATED) == (self.terminated_at is not None)
        if self.terminated_at is not None:
            assert deadline is None


Op = tuple[str, int | float]
OPS: st.SearchStrategy[Op] = st.one_of(
    st.tuples(st.just("receive"), st.integers(0, len(RECEIVED) - 1)),
    st.tuples(st.just("send"), st.sampled_from(STATUSES)),
    st.tuples(st.just("advance"), st.floats(0.0, 12.0, allow_nan=False)),
    st.tuples(st.just("next-timer"), st.just(0)),
    st.tuples(st.just("transport-error"), st.just(0)),
)


def _new(machine: type[Transaction], reliable: bool, trying: float | None) -> _Run:
    config = TransactionConfig(trying_delay=trying)
    if machine is ClientInviteTransaction:
        return _Run(ClientInviteTransaction(INVITE, now=0.0, reliable=reliable, config=config))
    if machine is ClientNonInviteTransaction:
        return _Run(ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=reliable))
    if machine is ServerInviteTransaction:
        return _Run(ServerInviteTransaction(INVITE, now=0.0, reliable=reliable, config=config))
    return _Run(ServerNonInviteTransaction(OPTIONS, now=0.0, reliable=reliable))


def _apply(run: _Run, op: Op) -> None:
    kind, arg = op
    tx = run.tx
    method = tx.request.method
    if kind == "advance":
        deadline = tx.get_timer()
        run.now += float(arg)
        tx.handle_timer(run.now)
        if deadline is None or deadline > run.now:
            # Nothing was due: a timer never fires early.
            assert tx.datagrams_to_send() == []
            assert tx.next_event() is None
            assert tx.get_timer() == deadline
    elif kind == "next-timer":
        deadline = tx.get_timer()
        if deadline is not None:
            run.now = deadline
        tx.handle_timer(run.now)
    elif kind == "transport-error":
        tx.handle_transport_error(run.now)
    elif kind == "receive":
        index = int(arg)
        if isinstance(tx, ClientTransaction):
            tx.receive(_response(RECEIVED[index % len(RECEIVED)], method), run.now)
        elif isinstance(tx, ServerTransaction):
            tx.receive(ACK if index % 2 else tx.request, run.now)
    elif isinstance(tx, ServerTransaction):
        tx.handle_timer(run.now)
        run.drain()
        before = (tx.state, tx.get_timer())
        try:
            tx.send(_response(int(arg), method), run.now)
        except LocalProtocolError:
            # A refused send changes nothing.
            assert (tx.state, tx.get_timer()) == before
            assert tx.datagrams_to_send() == []
            assert tx.next_event() is None


def _check_totals(run: _Run, reliable: bool) -> None:
    tx = run.tx
    request = bytes(tx.request)
    kinds = {type(e) for e in run.events}
    if isinstance(tx, ClientInviteTransaction | ClientNonInviteTransaction):
        assert not kinds & {RequestReceived, AckReceived}
        # §17.1.1.2: an INVITE goes out at most 7 times over UDP (A: 0.5 ... 16
        # before B at 32 s); a non-INVITE at most 11 times (E capped at T2 = 4 s).
        limit = 1 if reliable else (7 if isinstance(tx, ClientInviteTransaction) else 11)
        assert run.sent.count(request) <= limit
        ack = tx.ack if isinstance(tx, ClientInviteTransaction) else None
        assert all(d in (request, ack) for d in run.sent)
        finals = [
            e for e in run.events if isinstance(e, ResponseReceived) and e.response.status >= 300
        ]
        assert len(finals) <= 1
    else:
        assert ResponseReceived not in kinds
        assert isinstance(run.events[0], RequestReceived)
        assert request not in run.sent
    failures = [e for e in run.events if isinstance(e, TimedOut | TransportFailed)]
    assert len(failures) <= 1


@settings(max_examples=400, deadline=None)
@given(
    machine=st.sampled_from(MACHINES),
    reliable=st.booleans(),
    trying=st.sampled_from([None, 0.0, 0.2]),
    ops=st.lists(OPS, max_size=40),
)
def test_fsm_random_timelines_keep_the_invariants(
    machine: type[Transaction], reliable: bool, trying: float | None, ops: list[Op]
) -> None:
    run = _new(machine, reliable, trying)
    run.drain()
    for op in ops:
        _apply(run, op)
        run.drain()
    _check_totals(run, reliable)


@settings(max_examples=100, deadline=None)
@given(machine=st.sampled_from(MACHINES), reliable=st.booleans())
def test_fsm_every_transaction_ends_by_itself(machine: type[Transaction], reliable: bool) -> None:
    # With no input at all, or after any final response, timers alone terminate
    # the transaction (server transactions wait for the TU, so they get one).
    run = _new(machine, reliable, None)
    if isinstance(run.tx, ServerInviteTransaction | ServerNonInviteTransaction):
        run.tx.send(_response(486, run.tx.request.method), 0.0)
    for _ in range(100):
        deadline = run.tx.get_timer()
        if deadline is None:
            break
        run.now = deadline
        run.tx.handle_timer(deadline)
        run.drain()
    assert run.tx.state is State.TERMINATED
    assert run.now <= 64 * 0.5 + 5.0


def test_fsm_wire_inputs_are_the_message_kinds() -> None:
    assert {i.name for i in WIRE_INPUTS} == {
        "REQUEST",
        "ACK",
        "RESPONSE_1XX",
        "RESPONSE_2XX",
        "RESPONSE_3456XX",
    }
