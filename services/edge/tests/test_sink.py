"""EdgeSink with a fake bus and fake sockets: CANCEL, Forward, timers (no network)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from sipmesh_bus import schema, subjects
from sipmesh_edge.branch import BranchMaker
from sipmesh_edge.bus import BusFailure
from sipmesh_edge.core import EdgeIdentity
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.sink import EdgeSink, SinkConfig
from sipmsg import ParseError, Request, Response, make_response, parse

LOCAL = ("192.0.2.10", 5060)
PHONE = ("198.51.100.7", 5062)
CALLEE = ("203.0.113.5", 5080)


class FakeBus:
    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes, Callable[[bytes | BusFailure], None]]] = []
        self.published: list[str] = []

    def request(
        self, subject: str, payload: bytes, callback: Callable[[bytes | BusFailure], None]
    ) -> bool:
        self.requests.append((subject, payload, callback))
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        self.published.append(subject)
        return True


class FakeUdp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def take(self) -> list[tuple[Request | Response, tuple[str, int]]]:
        out = [(parse(d), a) for d, a in self.sent]
        self.sent.clear()
        return out


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_sink() -> tuple[EdgeSink, FakeBus, FakeUdp, Clock]:
    clock = Clock()
    me = EdgeIdentity(edge_id="e1", hosts=frozenset({b"192.0.2.10"}), ports=frozenset({5060}))
    sink = EdgeSink(
        SinkConfig(identity=me), EdgeMetrics(CollectorRegistry()), clock=clock, wallclock=clock
    )
    bus, udp = FakeBus(), FakeUdp()
    sink.bus = bus
    sink.udp[LOCAL] = udp
    return sink, bus, udp, clock


INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-inv1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"
    b"Call-ID: inv1@198.51.100.7\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.51.100.7:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
CANCEL = INVITE.replace(b"INVITE sip:", b"CANCEL sip:", 1).replace(
    b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL"
)


def receive(sink: EdgeSink, data: bytes, source: tuple[str, int] = PHONE) -> None:
    sink.on_message(data, transport="udp", source=source, local=LOCAL, connection=None)


def statuses(udp: FakeUdp) -> list[int]:
    return [m.status for m, _ in udp.take() if isinstance(m, Response)]


def test_sink_invite_100_then_cancel_answers_200_and_487() -> None:
    sink, bus, udp, _ = make_sink()
    receive(sink, INVITE)
    assert statuses(udp) == [100]
    assert [s for s, _, _ in bus.requests] == [subjects.SIP_ROUTE]
    receive(sink, CANCEL)
    assert sorted(statuses(udp)) == [200, 487]
    assert bus.published == [subjects.SIP_ROUTE]
    # The router's late answer cannot add a second final response.
    late = make_response(parse(INVITE), 180)  # type: ignore[arg-type]
    bus.requests[0][2](schema.encode(schema.SendResponse(data=bytes(late))))
    assert statuses(udp) == []


def test_sink_bus_failure_is_503() -> None:
    sink, bus, udp, _ = make_sink()
    receive(sink, INVITE)
    udp.take()
    bus.requests[0][2](BusFailure.TIMEOUT)
    assert statuses(udp) == [503]


def test_sink_forward_runs_a_client_transaction_and_relays_the_final_via_router() -> None:
    sink, bus, udp, clock = make_sink()
    receive(sink, INVITE)
    udp.take()
    invite = parse(INVITE)
    assert isinstance(invite, Request)
    onward = invite.prepend_header(b"Via", b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-e1-x")
    target = schema.Target(uri="sip:bob@203.0.113.5:5080", host=CALLEE[0], port=CALLEE[1])
    fwd = schema.Forward(data=bytes(onward), targets=[target], context=b"ctx")
    bus.requests[0][2](schema.encode(fwd))
    sent = udp.take()
    assert len(sent) == 1
    branch_req, addr = sent[0]
    assert addr == CALLEE
    assert isinstance(branch_req, Request)
    assert branch_req.uri == b"sip:bob@203.0.113.5:5080"
    # Timer A: the INVITE is re-sent after T1 until a response arrives.
    clock.now += 0.5
    sink.tick()
    assert len(udp.take()) == 1
    ringing = make_response(branch_req, 180)
    receive(sink, bytes(ringing), CALLEE)
    relayed = udp.take()
    assert [(m.status, a) for m, a in relayed if isinstance(m, Response)] == [(180, PHONE)]
    assert len(relayed[0][0].via) == 1  # our Via removed (§16.7 step 3)
    busy = make_response(branch_req, 486)
    receive(sink, bytes(busy), CALLEE)
    acks = udp.take()
    assert [m.method for m, _ in acks if isinstance(m, Request)] == [b"ACK"]
    subject, payload, callback = bus.requests[-1]
    assert subject == subjects.SIP_ROUTE_RESPONSE
    env = schema.decode_envelope(payload)
    assert env.context == b"ctx"
    assert parse(env.data).status == 486  # type: ignore[union-attr]
    upstream = make_response(invite, 486)
    callback(schema.encode(schema.SendResponse(data=bytes(upstream))))
    assert statuses(udp) == [486]


def test_sink_stray_response_dropped_and_internal_errors_contained() -> None:
    sink, _, udp, _ = make_sink()
    stray = make_response(parse(INVITE), 200)  # type: ignore[arg-type]
    receive(sink, bytes(stray), CALLEE)
    assert udp.take() == []
    sink.udp[LOCAL] = Broken()
    receive(sink, INVITE)  # must not raise
    registry = sink._metrics.internal_errors
    assert registry._value.get() == 1


class Broken:
    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        raise RuntimeError("a bug")


class FakeConnection:
    """A stream connection; ``closed`` makes send raise like a real one."""

    def __init__(self, closed: bool = False) -> None:
        self.id = "c1-test"
        self.transport = "tcp"
        self.peer = PHONE
        self.local = LOCAL
        self.closed = closed
        self.sent: list[bytes] = []

    @property
    def is_open(self) -> bool:
        return not self.closed

    def send(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionError("closed")
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True


def test_sink_stream_framing_error_answers_400_naming_the_header() -> None:
    sink, _, _, _ = make_sink()
    conn = FakeConnection()
    bad = INVITE.replace(b"Content-Length: 0\r\n", b"")
    error = ParseError("Content-Length missing on a stream transport", header="content-length")
    sink.on_parse_error(error, connection=conn, data=bad)
    (raw,) = conn.sent
    resp = parse(raw)
    assert isinstance(resp, Response)
    assert resp.status == 400
    assert b"Content-Length" in resp.reason
    assert resp.call_id == b"inv1@198.51.100.7"
    # Nothing readable, or a closed connection: silence, and never an exception.
    sink.on_parse_error(error, connection=conn, data=b"\x16\x03\x01garbage")
    sink.on_parse_error(error, connection=FakeConnection(closed=True), data=bad)
    assert len(conn.sent) == 1


def test_sink_closed_connection_is_a_transport_error_for_the_server_transaction() -> None:
    sink, bus, _, _ = make_sink()
    conn = FakeConnection()
    options = INVITE.replace(b"INVITE sip:", b"OPTIONS sip:", 1).replace(b"1 INVITE", b"1 OPTIONS")
    sink.on_message(options, transport="tcp", source=PHONE, local=LOCAL, connection=conn)
    assert sink.transactions == 1
    conn.closed = True
    ok = make_response(parse(options), 200)  # type: ignore[arg-type]
    bus.requests[0][2](schema.encode(schema.SendResponse(data=bytes(ok))))
    # §18.2.2: with the connection gone the edge opens a new one; without a
    # connector nothing can be opened, so §18.4: the transaction fails and ends.
    assert conn.sent == []
    assert sink.transactions == 0


def test_sink_forward_over_a_closed_held_connection_is_a_503_for_the_router() -> None:
    sink, bus, udp, _ = make_sink()
    conn = FakeConnection(closed=True)
    sink.connections = Registry(conn)
    receive(sink, INVITE)
    udp.take()
    target = schema.Target(
        uri="sip:bob@x", host=PHONE[0], port=PHONE[1], transport="tcp", connection_id=conn.id
    )
    fwd = schema.Forward(data=INVITE, targets=[target], context=b"ctx")
    bus.requests[0][2](schema.encode(fwd))
    subject, payload, _ = bus.requests[-1]
    assert subject == subjects.SIP_ROUTE_RESPONSE
    # §16.9: a transport failure counts as a 503; §16.7 step 6: "If the only
    # response that was received is a 503, the proxy SHOULD generate a 500".
    assert parse(schema.decode_envelope(payload).data).status == 500  # type: ignore[union-attr]


def test_sink_target_of_another_edge_is_handed_over_and_its_failure_seen() -> None:
    sink, bus, udp, _ = make_sink()
    receive(sink, INVITE)
    udp.take()
    target = schema.Target(
        uri="sip:bob@x", host="203.0.113.9", port=5070, transport="tcp",
        connection_id="c9-abc", edge_id="e2",
    )  # fmt: skip
    bus.requests[0][2](schema.encode(schema.Forward(data=INVITE, targets=[target])))
    subject, payload, callback = bus.requests[-1]
    assert subject == subjects.edge_send("e2")
    handoff = schema.decode_edge_send(payload)
    assert (handoff.connection_id, handoff.host, handoff.port) == ("c9-abc", "203.0.113.9", 5070)
    sent = parse(handoff.data)
    assert isinstance(sent, Request)
    assert sent.method == b"INVITE"
    callback(schema.encode(schema.EdgeSendResult(ok=False, error="gone")))
    subject, payload, _ = bus.requests[-1]
    assert subject == subjects.SIP_ROUTE_RESPONSE
    assert parse(schema.decode_envelope(payload).data).status == 500  # type: ignore[union-attr]


def test_sink_send_response_target_overrides_the_via() -> None:
    sink, bus, udp, _ = make_sink()
    receive(sink, INVITE)
    udp.take()
    ok = make_response(parse(INVITE), 200)  # type: ignore[arg-type]
    target = schema.Target(uri="", host=CALLEE[0], port=CALLEE[1])
    bus.requests[0][2](schema.encode(schema.SendResponse(data=bytes(ok), target=target)))
    assert [(m.status, a) for m, a in udp.take() if isinstance(m, Response)] == [(200, CALLEE)]


def test_sink_stray_response_with_another_edges_branch_goes_to_that_edge() -> None:
    sink, bus, _, _ = make_sink()
    req = parse(INVITE)
    assert isinstance(req, Request)
    theirs = BranchMaker("e2").make(req)
    onward = req.prepend_header(b"Via", b"SIP/2.0/TCP 192.0.2.10:5060;branch=" + theirs)
    resp = make_response(onward, 180)
    sink.on_message(
        bytes(resp), transport="tcp", source=CALLEE, local=LOCAL, connection=FakeConnection()
    )
    assert bus.published == [subjects.edge_send("e2")]


class Registry:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn

    def get(self, connection_id: str) -> FakeConnection | None:
        return self.conn if connection_id == self.conn.id else None


def test_sink_finished_non_invite_lingers_as_bytes_until_timer_j() -> None:
    # §17.2.2: Completed re-sends the final on each retransmission until Timer J
    # (64*T1 over UDP); what is kept that long is no object the cyclic garbage
    # collector must walk, only a tuple of the response's bytes and its address.
    sink, bus, udp, clock = make_sink()
    options = INVITE.replace(b"INVITE sip:", b"OPTIONS sip:", 1).replace(b"1 INVITE", b"1 OPTIONS")
    receive(sink, options)
    ok = make_response(parse(options), 200)  # type: ignore[arg-type]
    bus.requests[0][2](schema.encode(schema.SendResponse(data=bytes(ok))))
    assert udp.sent == [(bytes(ok), PHONE)]
    udp.sent.clear()
    assert sink.transactions == 1
    assert sink._servers == {}
    assert len(sink._lingering) == 1  # no Server, transaction or Flow: a tuple
    clock.now += 31.9
    sink.tick()
    receive(sink, options)  # a retransmission: the same bytes again, the bus not asked
    assert udp.sent == [(bytes(ok), PHONE)]
    assert len(bus.requests) == 1
    udp.sent.clear()
    clock.now += 0.2  # Timer J (32 s) fired
    sink.tick()
    assert sink.transactions == 0
    receive(sink, options)  # now a new request
    assert udp.sent == []
    assert len(bus.requests) == 2


def test_sink_finished_non_invite_is_new_again_after_timer_j_before_the_tick() -> None:
    sink, bus, udp, clock = make_sink()
    options = INVITE.replace(b"INVITE sip:", b"OPTIONS sip:", 1).replace(b"1 INVITE", b"1 OPTIONS")
    receive(sink, options)
    ok = make_response(parse(options), 200)  # type: ignore[arg-type]
    bus.requests[0][2](schema.encode(schema.SendResponse(data=bytes(ok))))
    udp.sent.clear()
    clock.now += 32.0  # Timer J is due, but no tick ran yet
    receive(sink, options)
    assert udp.sent == []
    assert len(bus.requests) == 2
