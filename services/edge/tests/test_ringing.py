"""The edge reports when a call rang with its final (``Envelope.ringing_at``), not per 180."""

from __future__ import annotations

import pytest

from sipmesh_bus import schema, subjects
from sipmesh_edge.sink import EdgeSink
from sipmsg import Request, Response, make_response, parse

from .test_sink import CALLEE, CANCEL, INVITE, Clock, FakeBus, FakeUdp, make_sink, receive

TARGET = schema.Target(uri="sip:bob@203.0.113.5:5080", host=CALLEE[0], port=CALLEE[1])


def _forwarded(bus: FakeBus, udp: FakeUdp, *, all_responses: bool = False) -> Request:
    invite = parse(INVITE)
    assert isinstance(invite, Request)
    onward = invite.prepend_header(b"Via", b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-e1-x")
    reply = schema.Forward(
        data=bytes(onward), targets=[TARGET], context=b"ctx", all_responses=all_responses
    )
    bus.requests[0][2](schema.encode(reply))
    [(branch_req, _)] = [(m, a) for m, a in udp.take() if isinstance(m, Request)]
    assert isinstance(branch_req, Request)
    return branch_req


def _start() -> tuple[FakeBus, FakeUdp, Clock, Request, EdgeSink]:
    sink, bus, udp, clock = make_sink()
    receive(sink, INVITE)
    udp.take()
    return bus, udp, clock, _forwarded(bus, udp), sink


def _asked(bus: FakeBus) -> list[schema.Envelope]:
    return [
        schema.decode_envelope(p) for s, p, _ in bus.requests if s == subjects.SIP_ROUTE_RESPONSE
    ]


def _status(env: schema.Envelope) -> int:
    resp = parse(env.data)
    assert isinstance(resp, Response)
    return resp.status


@pytest.mark.parametrize("status", [180, 183])
@pytest.mark.parametrize("final", [200, 486])
def test_final_carries_when_the_call_first_rang(status: int, final: int) -> None:
    bus, udp, clock, branch_req, sink = _start()
    clock.now += 2.0
    receive(sink, bytes(make_response(branch_req, status)), CALLEE)
    assert [m.status for m, _ in udp.take() if isinstance(m, Response)] == [status]
    assert _asked(bus) == []  # relayed by the edge: no round trip
    clock.now += 1.0
    receive(sink, bytes(make_response(branch_req, 180)), CALLEE)
    clock.now += 4.0
    receive(sink, bytes(make_response(branch_req, final)), CALLEE)
    [env] = _asked(bus)
    assert _status(env) == final
    # The test's wall clock is the monotonic one: the first ringing was 5 s ago.
    assert env.ringing_at == pytest.approx(clock.now - 5.0)
    assert env.received_at == clock.now


def test_final_of_a_call_that_did_not_ring_has_no_ringing_at() -> None:
    bus, _, _, branch_req, sink = _start()
    receive(sink, bytes(make_response(branch_req, 200)), CALLEE)
    [env] = _asked(bus)
    assert env.ringing_at is None


def test_provisional_asked_about_has_no_ringing_at_but_its_final_does() -> None:
    sink, bus, udp, clock = make_sink()
    receive(sink, INVITE)
    udp.take()
    branch_req = _forwarded(bus, udp, all_responses=True)  # topology hiding
    receive(sink, bytes(make_response(branch_req, 180)), CALLEE)
    [ringing] = _asked(bus)
    assert (_status(ringing), ringing.ringing_at) == (180, None)
    clock.now += 1.5
    receive(sink, bytes(make_response(branch_req, 200)), CALLEE)
    ok = _asked(bus)[-1]
    assert ok.ringing_at == pytest.approx(clock.now - 1.5)


def test_cancel_after_ringing_the_487_carries_ringing_at() -> None:
    bus, udp, clock, branch_req, sink = _start()
    receive(sink, bytes(make_response(branch_req, 180)), CALLEE)
    rang = clock.now
    clock.now += 3.0
    receive(sink, CANCEL)
    cancels = [m for m, _ in udp.take() if isinstance(m, Request) and m.method == b"CANCEL"]
    assert len(cancels) == 1  # §16.10: the ringing branch is cancelled
    clock.now += 0.1
    receive(sink, bytes(make_response(branch_req, 487)), CALLEE)
    [env] = _asked(bus)
    assert _status(env) == 487
    assert env.ringing_at == pytest.approx(rang)
