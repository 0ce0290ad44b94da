"""The edge's proxy branches (sipmesh_edge.proxy) through EdgeSink: fake bus, fake sockets.

Each test forwards the caller's INVITE to two or three UDP "phones" and plays
their responses; ``Router`` stands for the router (what it was asked, and the
replies it sends back).
"""

from __future__ import annotations

import gc
import types
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from sipmesh_bus import schema, subjects
from sipmesh_edge.bus import BusFailure
from sipmesh_edge.core import EdgeIdentity
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.proxy import Branch, Fork, Server
from sipmesh_edge.sink import EdgeSink, SinkConfig
from sipmsg import Request, Response, make_response, parse

LOCAL = ("192.0.2.10", 5060)
CALLER = ("198.51.100.7", 5062)
PHONES = [("203.0.113.5", 5080), ("203.0.113.6", 5080), ("203.0.113.7", 5080)]
OUR_VIA = b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKsm-router-1"

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-fork1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"
    b"Call-ID: fork1@198.51.100.7\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.51.100.7:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
CANCEL = INVITE.replace(b"INVITE sip:", b"CANCEL sip:", 1).replace(
    b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL"
)


class Router:
    """A fake bus: records every request with its callback."""

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

    def asked(self) -> list[Response]:
        """The responses sent to ``sip.route.response``, oldest first."""
        out = []
        for subject, payload, _ in self.requests:
            if subject == subjects.SIP_ROUTE_RESPONSE:
                resp = parse(schema.decode_envelope(payload).data)
                assert isinstance(resp, Response)
                out.append(resp)
        return out

    def answer_last(self, reply: schema.SendResponse | schema.Forward) -> None:
        self.requests[-1][2](schema.encode(reply))


class Udp:
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


class Call:
    """One caller's INVITE through the sink, forked to ``n`` phones."""

    def __init__(self, n: int = 2, *, timer_c: float = 181.0, all_responses: bool = False) -> None:
        self.clock = Clock()
        me = EdgeIdentity(edge_id="e1", hosts=frozenset({b"192.0.2.10"}), ports=frozenset({5060}))
        metrics = EdgeMetrics(CollectorRegistry())
        self.sink = EdgeSink(
            SinkConfig(identity=me), metrics, clock=self.clock, wallclock=self.clock
        )
        self.router, self.udp = Router(), Udp()
        self.sink.bus = self.router
        self.sink.udp[LOCAL] = self.udp
        self.receive(INVITE, CALLER)
        invite = parse(INVITE)
        assert isinstance(invite, Request)
        self.invite = invite
        assert self.statuses_to(CALLER) == [100]
        onward = invite.prepend_header(b"Via", OUR_VIA)
        if all_responses:  # the router hid the caller's Via (topology hiding)
            onward = onward.replace_header(b"Via", OUR_VIA)
        targets = [schema.Target(uri=f"sip:bob@{h}:{p}", host=h, port=p) for h, p in PHONES[:n]]
        fwd = schema.Forward(
            data=bytes(onward),
            targets=targets,
            timer_c=timer_c,
            context=b"ctx",
            all_responses=all_responses,
        )
        self.router.answer_last(fwd)
        self.branches: dict[tuple[str, int], Request] = {}
        for msg, addr in self.udp.take():
            assert isinstance(msg, Request)
            self.branches[addr] = msg
        assert sorted(self.branches) == sorted(PHONES[:n])

    def receive(self, data: bytes, source: tuple[str, int]) -> None:
        self.sink.on_message(data, transport="udp", source=source, local=LOCAL, connection=None)

    def phone_says(self, phone: int, status: int, **kw: object) -> Response:
        """Phone ``phone`` answers its branch with ``status``."""
        resp = make_response(self.branches[PHONES[phone]], status, **kw)  # type: ignore[arg-type]
        self.receive(bytes(resp), PHONES[phone])
        return resp

    def sent(self) -> list[tuple[Request | Response, tuple[str, int]]]:
        return self.udp.take()

    def statuses_to(self, addr: tuple[str, int]) -> list[int]:
        return [m.status for m, a in self.sent() if isinstance(m, Response) and a == addr]

    def tick(self, seconds: float) -> None:
        self.clock.now += seconds
        self.sink.tick()

    def upstream(self, status: int) -> schema.SendResponse:
        """The router's answer to the last response asked about: the same for the caller.

        Built on the caller's INVITE (its Vias, as the router restores them)
        with the To tag of the response asked about (a proxy never changes it).
        """
        tag = self.router.asked()[-1].to_tag
        return schema.SendResponse(data=bytes(make_response(self.invite, status, to_tag=tag)))


def requests_of(
    sent: list[tuple[Request | Response, tuple[str, int]]], method: bytes
) -> list[tuple[str, int]]:
    return [a for m, a in sent if isinstance(m, Request) and m.method == method]


def test_fork_200_is_forwarded_at_once_and_cancels_the_ringing_branch() -> None:
    call = Call(3)
    call.phone_says(0, 180)
    call.phone_says(2, 180)
    assert call.statuses_to(CALLER) == [180, 180]  # §16.7 step 5, relayed by the edge
    call.phone_says(0, 486)
    assert requests_of(call.sent(), b"ACK") == [PHONES[0]]
    assert call.router.asked() == []  # a 486 waits for the other branches
    call.phone_says(1, 200)
    assert [r.status for r in call.router.asked()] == [200]
    # §16.7 step 10: the still ringing branch is cancelled; the 486 one is not.
    cancels = [(m, a) for m, a in call.sent() if isinstance(m, Request) and m.method == b"CANCEL"]
    assert [a for _, a in cancels] == [PHONES[2]]
    assert cancels[0][0].via_branch == call.branches[PHONES[2]].via_branch  # §9.1
    call.router.answer_last(call.upstream(200))
    assert call.statuses_to(CALLER) == [200]
    # The cancelled branch's 487 is acknowledged and goes nowhere else.
    call.phone_says(2, 487)
    assert requests_of(call.sent(), b"ACK") == [PHONES[2]]
    assert len(call.router.asked()) == 1
    # A retransmitted 200 replays what went upstream, without asking again.
    call.phone_says(1, 200)
    assert call.statuses_to(CALLER) == [200]
    assert len(call.router.asked()) == 1


def test_fork_every_distinct_2xx_goes_to_the_router() -> None:
    call = Call(2)
    first = call.phone_says(0, 200, to_tag=b"t-one")
    call.router.answer_last(
        schema.SendResponse(data=bytes(make_response(call.invite, 200, to_tag=b"t-one")))
    )
    assert first.to_tag == b"t-one"
    call.phone_says(1, 200, to_tag=b"t-two")
    assert [r.to_tag for r in call.router.asked()] == [b"t-one", b"t-two"]
    call.router.answer_last(
        schema.SendResponse(data=bytes(make_response(call.invite, 200, to_tag=b"t-two")))
    )
    assert call.statuses_to(CALLER) == [200, 200]  # RFC 6026: both dialogs reach the caller


def test_fork_all_failed_asks_the_router_once_with_the_best() -> None:
    call = Call(2)
    call.phone_says(0, 486)
    assert call.router.asked() == []
    call.phone_says(1, 404)
    asked = call.router.asked()
    # §16.7 step 6: both are 4xx; "The proxy MAY select any response within
    # that chosen class": the edge keeps the first received (forking.py).
    assert [r.status for r in asked] == [486]
    env = schema.decode_envelope(call.router.requests[-1][1])
    assert (env.context, (env.source_host, env.source_port)) == (b"ctx", PHONES[0])
    call.router.answer_last(call.upstream(486))
    assert call.statuses_to(CALLER) == [486]


def test_fork_6xx_cancels_the_others_and_wins() -> None:
    call = Call(2)
    call.phone_says(1, 180)
    call.sent()
    call.phone_says(0, 603)
    sent = call.sent()
    assert requests_of(sent, b"CANCEL") == [PHONES[1]]
    assert call.router.asked() == []  # "it is not immediately forwarded"
    call.phone_says(1, 487)
    assert [r.status for r in call.router.asked()] == [603]


def test_fork_401_and_407_challenges_are_merged() -> None:
    call = Call(2)
    www = b'Digest realm="a.example", nonce="n1", algorithm=SHA-256'
    proxy = b'Digest realm="b.example", nonce="n2"'
    call.phone_says(0, 401, headers=[(b"WWW-Authenticate", www)])
    call.phone_says(1, 407, headers=[(b"Proxy-Authenticate", proxy)])
    (asked,) = call.router.asked()
    assert asked.status == 401
    assert asked.headers.get_lines("www-authenticate") == [www]
    assert asked.headers.get_lines("proxy-authenticate") == [proxy]


def test_upstream_cancel_fans_out_and_the_invite_gets_487() -> None:
    call = Call(2)
    call.phone_says(0, 180)
    call.sent()
    call.receive(CANCEL, CALLER)
    sent = call.sent()
    assert [m.status for m, a in sent if isinstance(m, Response)] == [200]  # to the CANCEL
    # §9.1: phone 1 sent no provisional yet, so it gets no CANCEL yet.
    assert requests_of(sent, b"CANCEL") == [PHONES[0]]
    assert call.router.published == [subjects.SIP_ROUTE]
    call.phone_says(1, 180)
    assert requests_of(call.sent(), b"CANCEL") == [PHONES[1]]
    call.phone_says(0, 487)
    assert [r.status for r in call.router.asked()] == [487]
    call.router.answer_last(call.upstream(487))
    assert call.statuses_to(CALLER) == [487]


def test_upstream_cancel_while_the_router_decides_answers_487_and_ignores_the_forward() -> None:
    call = Call(1)
    call.phone_says(0, 500)
    assert [r.status for r in call.router.asked()] == [500]
    call.receive(CANCEL, CALLER)
    assert sorted(call.statuses_to(CALLER)) == [200, 487]
    # The router's failover Forward comes too late: no new branch.
    target = schema.Target(uri="sip:bob@203.0.113.7", host=PHONES[2][0], port=PHONES[2][1])
    call.router.answer_last(schema.Forward(data=bytes(call.branches[PHONES[0]]), targets=[target]))
    assert call.sent() == []


def test_timer_c_with_a_provisional_cancels_and_is_a_408() -> None:
    call = Call(1, timer_c=10.0)
    call.tick(3.0)
    call.phone_says(0, 180)
    call.sent()
    call.tick(9.0)  # §16.7 step 2: the 180 reset Timer C (due at 13, not 10)
    assert requests_of(call.sent(), b"CANCEL") == []
    call.tick(1.5)
    assert requests_of(call.sent(), b"CANCEL") == [PHONES[0]]
    assert [r.status for r in call.router.asked()] == [408]
    call.phone_says(0, 487)  # the CANCEL's outcome: acknowledged, not asked about
    assert requests_of(call.sent(), b"ACK") == [PHONES[0]]
    assert len(call.router.asked()) == 1


def test_timer_c_without_a_provisional_is_a_408_and_a_late_180_is_cancelled() -> None:
    call = Call(1, timer_c=5.0)
    call.tick(5.0)
    sent = call.sent()
    assert requests_of(sent, b"CANCEL") == []  # §9.1: nothing to cancel yet
    assert [r.status for r in call.router.asked()] == [408]
    # The router fails over (408) to the next leg: a new branch.
    target = schema.Target(uri="sip:vm@203.0.113.7", host=PHONES[2][0], port=PHONES[2][1])
    call.router.answer_last(
        schema.Forward(data=bytes(call.branches[PHONES[0]]), targets=[target], context=b"ctx2")
    )
    assert requests_of(call.sent(), b"INVITE") == [PHONES[2]]
    call.phone_says(0, 180)
    assert requests_of(call.sent(), b"CANCEL") == [PHONES[0]]
    assert call.statuses_to(CALLER) == []  # the old branch's 180 no longer goes upstream


def test_cancelled_branch_without_a_final_gives_up_after_64_t1() -> None:
    call = Call(2)
    call.phone_says(0, 180)
    call.phone_says(1, 180)
    call.receive(CANCEL, CALLER)
    call.phone_says(1, 487)
    assert call.router.asked() == []
    call.tick(31.0)
    assert call.router.asked() == []
    call.tick(1.5)  # phone 0 never answered its CANCEL: 64*T1 = 32 s
    assert [r.status for r in call.router.asked()] == [487]


def test_all_responses_mode_asks_about_every_response() -> None:
    call = Call(1, all_responses=True)
    ringing = call.phone_says(0, 180)
    assert len(ringing.via) == 1  # the router hid the caller's Via
    assert call.statuses_to(CALLER) == []  # not relayed (nor dropped) by the edge
    assert [r.status for r in call.router.asked()] == [180]
    call.router.answer_last(call.upstream(180))  # the router puts the Vias back
    assert call.statuses_to(CALLER) == [180]
    call.phone_says(0, 200)
    assert [r.status for r in call.router.asked()] == [180, 200]


def test_single_via_provisional_without_all_responses_is_dropped() -> None:
    call = Call(1)
    branch = call.branches[PHONES[0]]
    top = branch.headers.get_all(b"via")[0]
    resp = make_response(branch, 180).replace_header(b"Via", top)
    call.receive(bytes(resp), PHONES[0])
    assert call.statuses_to(CALLER) == []
    assert call.router.asked() == []


def test_cancelled_call_gets_its_487_even_when_the_router_does_not_answer() -> None:
    call = Call(1)
    call.phone_says(0, 180)
    call.receive(CANCEL, CALLER)
    call.sent()
    call.phone_says(0, 487)
    call.router.requests[-1][2](BusFailure.TIMEOUT)
    assert call.statuses_to(CALLER) == [487]  # not the 503 of an unanswered request


def test_late_2xx_of_a_given_up_branch_cancels_the_next_leg() -> None:
    call = Call(1, timer_c=5.0)
    call.phone_says(0, 180)
    call.tick(5.0)  # Timer C: CANCEL, and a 408 for the router, which fails over
    assert requests_of(call.sent(), b"CANCEL") == [PHONES[0]]
    target = schema.Target(uri="sip:vm@203.0.113.7", host=PHONES[2][0], port=PHONES[2][1])
    call.router.answer_last(
        schema.Forward(data=bytes(call.branches[PHONES[0]]), targets=[target], context=b"ctx2")
    )
    (voicemail,) = [m for m, a in call.sent() if isinstance(m, Request) and a == PHONES[2]]
    assert isinstance(voicemail, Request)
    call.receive(bytes(make_response(voicemail, 180)), PHONES[2])
    call.sent()
    call.phone_says(0, 200)  # phone 0 answered after all: 2xx always go upstream
    assert [r.status for r in call.router.asked()] == [408, 200]
    assert requests_of(call.sent(), b"CANCEL") == [PHONES[2]]


def _proxy_objects() -> int:
    return sum(1 for o in gc.get_objects() if type(o) in (Server, Fork, Branch))


def test_a_finished_call_is_freed_without_the_cyclic_collector() -> None:
    # Server <-> Fork <-> Branch point at each other while the call lives;
    # once out of the tables the cycles are cut, so reference counting frees
    # them: the edge runs the cyclic GC rarely (sipmesh_edge.__main__).
    gc.collect()
    gc.disable()
    try:
        call = Call(2)
        assert _proxy_objects() == 4  # the INVITE's server, its fork, two branches
        call.phone_says(1, 486)
        call.phone_says(0, 200)
        call.router.answer_last(call.upstream(200))
        for _ in range(40):  # past Timer L (64*T1) and every safety net
            call.tick(10.0)
        assert call.sink.transactions == 0
        call.router.requests.clear()  # the fake bus keeps every reply callback
        assert _proxy_objects() == 0
    finally:
        gc.enable()


def _reachable_types(*roots: object) -> set[str]:
    """The type names of the data reachable from ``roots`` (gc referents).

    Not through classes, modules or functions: those lead to every module.
    """
    seen: set[int] = set()
    names: set[str] = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | types.ModuleType | Callable):
            continue
        seen.add(id(obj))
        names.add(type(obj).__name__)
        stack.extend(gc.get_referents(obj))
    return names


def test_an_answered_call_lingers_without_its_parsed_messages() -> None:
    # Timer L (server) and Timer M (client) keep an answered INVITE 64*T1:
    # what is kept that long is bytes, not parsed messages (dozens of objects
    # each, walked by every full collection).
    call = Call(1)
    call.phone_says(0, 180)
    ok = call.phone_says(0, 200)
    call.router.answer_last(call.upstream(200))
    assert call.statuses_to(CALLER) == [180, 200]
    call.tick(1.0)
    assert call.sink.transactions == 2  # the INVITE's server and client transactions
    kept = _reachable_types(call.sink._servers, call.sink.proxy.clients)
    parsed = {"Request", "Response", "Headers", "Candidate", "ClientInviteTransaction"}
    assert not kept & (parsed | {"InviteServer", "Flow"}), kept
    # A retransmitted INVITE is absorbed (RFC 6026 §8.7), a CANCEL gets its
    # 200 and changes nothing (§9.2: the final response was sent).
    asked = len(call.router.requests)
    call.receive(INVITE, CALLER)
    assert call.sent() == []
    call.receive(CANCEL, CALLER)
    assert call.statuses_to(CALLER) == [200]
    assert requests_of(call.sent(), b"CANCEL") == []
    assert len(call.router.requests) == asked
    # They still do their job: a retransmitted 200 replays what went upstream,
    call.receive(bytes(ok), PHONES[0])
    assert call.statuses_to(CALLER) == [200]
    assert [r.status for r in call.router.asked()] == [200]
    # a provisional or an error is absorbed (RFC 6026 §8.4),
    call.phone_says(0, 180)
    call.phone_says(0, 486)
    assert call.sent() == []
    # and the 2xx of another dialog (forked downstream) goes to the router and upstream.
    call.phone_says(0, 200, to_tag=b"other-dialog")
    assert [r.to_tag for r in call.router.asked()][1:] == [b"other-dialog"]
    call.router.answer_last(call.upstream(200))
    assert call.statuses_to(CALLER) == [200]
    call.tick(31.0)  # Timers L and M (64*T1 after the first 200): both gone
    assert call.sink.transactions == 1  # the CANCEL's, until its own Timer J
    call.phone_says(0, 200)
    assert call.sent() == []


def test_a_rejected_branch_lingers_as_its_ack_until_timer_d() -> None:
    # §17.1.1.2: Completed re-sends the ACK on each retransmitted final until
    # Timer D (32 s over UDP); kept as bytes and an address, not as objects.
    call = Call(1)
    busy = call.phone_says(0, 486)
    (ack,) = [m for m, a in call.sent() if isinstance(m, Request) and a == PHONES[0]]
    assert ack.method == b"ACK"
    (asked,) = call.router.asked()
    assert asked.status == 486
    assert schema.decode_envelope(call.router.requests[-1][1]).context == b"ctx"
    assert call.sink.proxy.clients == {}
    kept = _reachable_types(call.sink.proxy._absorbing, call.sink.proxy._acking)
    assert not kept & {"Branch", "Fork", "Server", "Flow"}, kept
    call.tick(31.0)
    call.receive(bytes(busy), PHONES[0])  # a retransmission: the ACK again, nothing else
    assert [(bytes(m), a) for m, a in call.sent()] == [(bytes(ack), PHONES[0])]
    assert len(call.router.asked()) == 1
    call.tick(1.0)  # Timer D fired
    call.receive(bytes(busy), PHONES[0])
    assert call.sent() == []
