"""Edge micro-benchmark: one whole call through the edge's proxy path, no sockets, no NATS.

Run with ``.venv/bin/python bench/edge/call.py`` (``--profile`` for cProfile).

The call is the CALL scenario of ``bench/call`` (``bench/call/sipp``): the
caller (SIPp UAC, a trusted peer) sends INVITE (SDP), the callee (SIPp UAS,
a registered phone) answers 180 then 200 (SDP), the caller sends ACK and BYE
through the Record-Route, the callee answers the BYE 200. The edge receives
6 SIP messages and sends 7 (100 Trying, INVITE, 180, 200, ACK, BYE, 200).

Everything the edge does runs for real (:meth:`EdgeSink.on_message`, the
server and client transactions, :class:`~sipmesh_edge.proxy.Proxy`, the
envelope encodes and reply decodes, the timer heap through
:meth:`EdgeSink.tick`). Left out: the UDP socket (a list), NATS (a fake bus
that answers each request, on the next "loop iteration", with the reply the
router gives for it, prepared before timing: a ``Forward`` of the INVITE with
the router's Via, Record-Route and context (``--all-responses``: with
``Forward.all_responses``, as the router set it for every initial INVITE
before 6e65a69, so the 180 goes to the router too), a
``SendResponse`` of each response with our Via removed, a ``Forward`` of the
ACK and of the BYE), and the router itself. The callee's responses are
templates: only the edge's branch is spliced in while timing.

Calls run in batches of ``--batch``, step by step (all INVITEs of a batch,
then all 180s, ...), with the clock advancing at ``--rate`` calls per second,
so transactions accumulate and expire as in a steady run (Timer J/L keep
server transactions 32 s). A warm-up of ``--warmup`` calls runs first (not
timed) to reach that steady state. Timed on process CPU time, best of
``--repeat`` rounds of ``--count`` calls, as ``bench/edge/run.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
from collections import Counter
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from sipmesh_bus import schema, subjects
from sipmesh_edge.bus import BusFailure
from sipmesh_edge.core import EdgeIdentity
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.sink import EdgeSink, SinkConfig

EDGE = ("192.0.2.10", 5060)
CALLER = ("198.51.100.7", 5061)
CALLEE = ("203.0.113.5", 5080)
EDGE_ID = "bench"
TOKEN = b"sm=AZ3kq0Yx" + b"Q" * 96  # the router's sealed DialogToken, as long as a real one
RR = b"Record-Route: <sip:192.0.2.10:5060;lr;" + TOKEN + b">\r\n"
ROUTE = RR.replace(b"Record-Route", b"Route")
ROUTER_VIA = b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKsm%024x\r\n"
CONTEXT = b"\x9f" + b"c" * 420  # opaque to the edge; about the size of a RouteContext
PLACEHOLDER = b"z9hG4bK.PLACEHOLDER"
SDP_OFFER = (
    b"v=0\r\no=caller 53655765 2353687637 IN IP4 198.51.100.7\r\ns=-\r\n"
    b"c=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 16000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)
SDP_ANSWER = (
    b"v=0\r\no=uas 53655765 2353687637 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\n"
    b"t=0 0\r\nm=audio 17000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)


class Call:
    """One call's messages (from SIPp's templates) and the router's replies, built untimed."""

    all_responses = False
    #: ``Forward.all_responses`` of the INVITE (``--all-responses``).
    ack_route = True
    #: The 200's ``SendResponse.ack_route``, as the router gives it for this
    #: call (no topology hiding, no media anchor): the edge forwards the ACK
    #: itself (``--no-ack-route``: the ACK goes to the router, as before it did).

    def __init__(self, n: int) -> None:
        caller_via = b"Via: SIP/2.0/UDP 198.51.100.7:5061;branch=z9hG4bK-%d-1-0;rport\r\n" % n
        ack_via = caller_via.replace(b"-1-0;", b"-1-5;")
        bye_via = caller_via.replace(b"-1-0;", b"-1-7;")
        from_ = b"From: <sip:caller%d@198.51.100.7:5061>;tag=1234SIPpTag00%d\r\n" % (n, n)
        to = b"To: <sip:uas@192.0.2.10:5060>"
        tagged = to + b";tag=5678SIPpTag01%d\r\n" % n
        call_id = b"Call-ID: %d-1234@198.51.100.7\r\n" % n
        self.call_id = call_id
        caller_contact = b"Contact: <sip:caller@198.51.100.7:5061;transport=UDP>\r\n"
        callee_contact = b"Contact: <sip:uas@203.0.113.5:5080;transport=UDP>\r\n"
        self.invite = (
            b"INVITE sip:uas@192.0.2.10:5060 SIP/2.0\r\n"
            + caller_via + from_ + to + b"\r\n" + call_id + b"CSeq: 1 INVITE\r\n"
            + caller_contact + b"Max-Forwards: 70\r\nUser-Agent: sipp-bench\r\n"
            + b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n" % len(SDP_OFFER)
            + SDP_OFFER
        )  # fmt: skip
        router_via = ROUTER_VIA % (n * 7 + 1)
        # The router: Max-Forwards 69, its Record-Route and Via, target the binding.
        forwarded = (
            self.invite.replace(b"Max-Forwards: 70", b"Max-Forwards: 69")
            .replace(b"\r\nVia: ", b"\r\n" + RR + router_via + b"Via: ", 1)
        )  # fmt: skip
        callee = schema.Target(
            uri="sip:uas@203.0.113.5:5080;transport=UDP",
            host=CALLEE[0],
            port=CALLEE[1],
            edge_id=EDGE_ID,
        )
        invite_fwd = schema.Forward(
            data=forwarded, targets=[callee], context=CONTEXT, all_responses=self.all_responses
        )
        # The callee's answers echo Via and Record-Route; our branch goes in at run time.
        edge_via = b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=" + PLACEHOLDER + b"\r\n"
        head = edge_via + caller_via + RR + from_ + tagged + call_id + b"CSeq: 1 INVITE\r\n"
        self.ringing = (
            b"SIP/2.0 180 Ringing\r\n" + head + callee_contact + b"Content-Length: 0\r\n\r\n"
        )
        self.ok = (
            b"SIP/2.0 200 OK\r\n" + head + callee_contact + b"Content-Type: application/sdp\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(SDP_ANSWER) + SDP_ANSWER
        )  # fmt: skip
        up_head = caller_via + RR + from_ + tagged + call_id + b"CSeq: 1 INVITE\r\n"
        ringing_up = (
            b"SIP/2.0 180 Ringing\r\n" + up_head + callee_contact + b"Content-Length: 0\r\n\r\n"
        )
        ok_up = (
            b"SIP/2.0 200 OK\r\n" + up_head + callee_contact + b"Content-Type: application/sdp\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(SDP_ANSWER) + SDP_ANSWER
        )  # fmt: skip
        in_dialog = from_ + tagged + call_id
        self.ack = (
            b"ACK sip:uas@203.0.113.5:5080;transport=UDP SIP/2.0\r\n" + ack_via + ROUTE
            + in_dialog + b"CSeq: 1 ACK\r\n" + caller_contact
            + b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )  # fmt: skip
        self.bye = (
            self.ack.replace(b"ACK sip:", b"BYE sip:", 1)
            .replace(b"CSeq: 1 ACK", b"CSeq: 2 BYE")
            .replace(ack_via, bye_via)
        )
        in_dialog_target = schema.Target(
            uri="sip:uas@203.0.113.5:5080;transport=UDP",
            host=CALLEE[0],
            port=CALLEE[1],
            edge_id=EDGE_ID,
        )

        def routed(req: bytes, via: bytes, branch: int) -> bytes:
            # The router pops its Route, decrements Max-Forwards, adds its Via.
            return (
                req.replace(ROUTE, b"")
                .replace(b"Max-Forwards: 70", b"Max-Forwards: 69")
                .replace(via, (ROUTER_VIA % branch) + via)
            )

        ack_fwd = schema.Forward(
            data=routed(self.ack, ack_via, n * 7 + 2), targets=[in_dialog_target]
        )
        bye_fwd = schema.Forward(
            data=routed(self.bye, bye_via, n * 7 + 3),
            targets=[in_dialog_target],
            context=CONTEXT[:200],
        )
        self.bye_ok = (
            b"SIP/2.0 200 OK\r\n" + edge_via + bye_via + in_dialog + b"CSeq: 2 BYE\r\n"
            + callee_contact + b"Content-Length: 0\r\n\r\n"
        )  # fmt: skip
        bye_ok_up = (
            b"SIP/2.0 200 OK\r\n" + bye_via + in_dialog + b"CSeq: 2 BYE\r\n"
            + callee_contact + b"Content-Length: 0\r\n\r\n"
        )  # fmt: skip

        def answer(data: bytes, hint: schema.AckRoute | None = None) -> bytes:
            return schema.encode(schema.SendResponse(data=data, ack_route=hint))

        hint = schema.AckRoute(
            call_id=call_id[9:-2],
            cseq=1,
            from_tag=b"1234SIPpTag00%d" % n,
            to_tag=b"5678SIPpTag01%d" % n,
            uri=b"sip:uas@203.0.113.5:5080;transport=UDP",
            routes=[RR[14:-2]],
            inbound="udp",
            via=b"SIP/2.0/UDP 192.0.2.10:5060;branch=",
            target=in_dialog_target,
        )

        self.replies: dict[tuple[str, bytes], bytes] = {
            (subjects.SIP_ROUTE, b"INVITE"): schema.encode(invite_fwd),
            (subjects.SIP_ROUTE_RESPONSE, b"180"): answer(ringing_up),
            (subjects.SIP_ROUTE_RESPONSE, b"200 INVITE"): answer(
                ok_up, hint if self.ack_route else None
            ),
            (subjects.SIP_ROUTE, b"ACK"): schema.encode(ack_fwd),
            (subjects.SIP_ROUTE, b"BYE"): schema.encode(bye_fwd),
            (subjects.SIP_ROUTE_RESPONSE, b"200 BYE"): answer(bye_ok_up),
        }


class RouterBus:
    """A fake bus: answers each request with the prepared router reply, on :meth:`run`."""

    def __init__(self) -> None:
        self.calls: dict[bytes, Call] = {}
        self.pending: list[tuple[Callable[[bytes | BusFailure], None], bytes]] = []
        self.asked: Counter[str] = Counter()

    def request(
        self, subject: str, payload: bytes, callback: Callable[[bytes | BusFailure], None]
    ) -> bool:
        # The envelope's data is the SIP message; what it is: its first line and CSeq.
        start = payload.find(b"Call-ID: ")
        call = self.calls[payload[start : payload.find(b"\r\n", start) + 2]]
        if subject == subjects.SIP_ROUTE:
            what = (
                b"INVITE"
                if b"INVITE sip:" in payload
                else b"ACK"
                if b"ACK sip:" in payload
                else b"BYE"
            )
        elif b"SIP/2.0 180 " in payload:
            what = b"180"
        else:
            what = b"200 BYE" if b" 2 BYE\r\n" in payload else b"200 INVITE"
        self.asked[f"{subject} {what.decode()}"] += 1
        self.pending.append((callback, call.replies[subject, what]))
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        return True

    def run(self) -> None:
        """Deliver the replies (what the next loop iterations would)."""
        pending, self.pending = self.pending, []
        for callback, reply in pending:
            callback(reply)


class Wire:
    """The UDP socket: what the edge sent, to the caller and to the callee."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


class Bench:
    def __init__(self, rate: float, batch: int) -> None:
        me = EdgeIdentity(
            edge_id=EDGE_ID, hosts=frozenset({EDGE[0].encode()}), ports=frozenset({EDGE[1]})
        )
        self.now = 1000.0
        self.sink = EdgeSink(
            SinkConfig(identity=me),
            EdgeMetrics(CollectorRegistry()),
            clock=lambda: self.now,
            wallclock=time.time,
        )
        self.bus = RouterBus()
        self.wire = Wire()
        self.sink.bus = self.bus
        self.sink.udp[EDGE] = self.wire
        self.batch = batch
        self.step_time = batch / rate / 7
        self.branch: dict[bytes, bytes] = {}
        #: The edge's branch of each call's INVITE (what the callee echoes), by Call-ID line.

    def calls(self, first: int, count: int) -> list[Call]:
        calls = [Call(n) for n in range(first, first + count)]
        for call in calls:
            self.bus.calls[call.call_id] = call
        return calls

    def run(self, calls: list[Call]) -> None:
        for at in range(0, len(calls), self.batch):
            self._batch(calls[at : at + self.batch])

    def _batch(self, batch: list[Call]) -> None:
        on_message = self.sink.on_message
        for step in ("invite", "ringing", "ok", "ack", "bye", "bye_ok"):
            for call in batch:
                data: bytes = getattr(call, step)
                if step in ("ringing", "ok", "bye_ok"):
                    source = CALLEE
                    data = data.replace(PLACEHOLDER, self.branch[call.call_id], 1)
                else:
                    source = CALLER
                on_message(data, transport="udp", source=source, local=EDGE, connection=None)
                self.bus.run()
            if step in ("invite", "bye"):
                self._learn_branches()
            self.wire.sent.clear()
            self.now += self.step_time
            self.sink.tick()

    def _learn_branches(self) -> None:
        for data, addr in self.wire.sent:
            if addr == CALLEE and not data.startswith(b"ACK "):
                at = data.find(b";branch=") + 8
                branch = data[at : data.find(b"\r\n", at)]
                start = data.find(b"Call-ID: ")
                self.branch[data[start : data.find(b"\r\n", start) + 2]] = branch


def check() -> None:
    """One batch, every message looked at: the edge sends what the call needs."""
    bench = Bench(rate=100.0, batch=10)
    calls = bench.calls(0, 10)
    seen: list[tuple[bytes, tuple[str, int]]] = []
    original = bench.wire.sendto

    def sendto(data: bytes, addr: tuple[str, int]) -> None:
        seen.append((data.split(b"\r\n", 1)[0], addr))
        original(data, addr)

    bench.wire.sendto = sendto  # type: ignore[method-assign]
    bench.run(calls)
    kinds = Counter(
        (line.split(b" ")[0] if not line.startswith(b"SIP/") else line[:11], addr)
        for line, addr in seen
    )
    expected = {
        (b"SIP/2.0 100", CALLER): 10,
        (b"INVITE", CALLEE): 10,
        (b"SIP/2.0 180", CALLER): 10,
        (b"SIP/2.0 200", CALLER): 20,
        (b"ACK", CALLEE): 10,
        (b"BYE", CALLEE): 10,
    }
    assert dict(kinds) == expected, kinds
    print("check: per call the edge sent", sum(kinds.values()) // 10, "messages; bus requests:")
    for what, n in sorted(bench.bus.asked.items()):
        print(f"  {what}: {n // 10} per call")


def bench(
    count: int,
    warmup: int,
    repeat: int,
    *,
    rate: float,
    batch: int,
    profile: bool,
    gc_report: bool = False,
) -> None:
    b = Bench(rate, batch)
    b.run(b.calls(0, warmup))
    best = float("inf")
    first = warmup
    for _ in range(repeat):
        calls = b.calls(first, count)
        first += count
        gc.collect()
        gc.freeze()
        profiler = cProfile.Profile() if profile else None
        started = time.process_time()
        if profiler is not None:
            profiler.enable()
        b.run(calls)
        if profiler is not None:
            profiler.disable()
        elapsed = time.process_time() - started
        gc.unfreeze()
        best = min(best, elapsed)
        for call in calls:
            del b.bus.calls[call.call_id]
            del b.branch[call.call_id]
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    alive = b.sink.transactions
    print(
        f"call: {count} calls in {best:.3f} s CPU (best of {repeat}): "
        f"{best / count * 1e6:.0f} us per call; {alive} transactions alive at the end"
    )
    if gc_report:
        pauses = collections_during(b, b.calls(first, count))
        b.bus.calls.clear()  # the bench's own state, not the edge's
        b.branch.clear()
        report_gc(b.sink.transactions)
        print(f"  while {count} more calls ran (nothing frozen): {pauses}")


def collections_during(b: Bench, calls: list[Call]) -> str:
    """Run ``calls`` with the collector as configured; its collections by generation."""
    started: dict[str, float] = {}
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started["at"] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - started["at"])

    gc.callbacks.append(timed)
    try:
        b.run(calls)
    finally:
        gc.callbacks.remove(timed)
    return "; ".join(
        f"gen{g} {len(p)} collections, {sum(p) * 1000:.0f} ms (max {max(p, default=0) * 1000:.0f})"
        for g, p in pauses.items()
    )


def report_gc(alive: int) -> None:
    """What the cyclic collector walks for the edge's live transactions, and how long it takes."""
    # Tuples of atomics are untracked once a collection saw them (one holding
    # a tuple, once a collection saw that one first): two collections.
    gc.collect()
    gc.collect()
    tracked = Counter(type(o).__name__ for o in gc.get_objects())
    total = sum(tracked.values())
    full = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        gc.collect()
        full = min(full, time.perf_counter() - started)
    print(
        f"gc: {total} tracked objects, {total / max(alive, 1):.2f} per alive transaction; "
        f"a full collection {full * 1000:.0f} ms (best of 3)"
    )
    print("  most:", ", ".join(f"{name} {n}" for name, n in tracked.most_common(10)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rate", type=float, default=150.0, help="calls per second of clock")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--gc", choices=("edge", "default"), default="edge")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--gc-report",
        action="store_true",
        help="at the end: GC-tracked objects per alive transaction, a full collection's time",
    )
    parser.add_argument("--all-responses", action="store_true", help="the router before 6e65a69")
    parser.add_argument(
        "--no-ack-route", action="store_true", help="no SendResponse.ack_route: ACK to the router"
    )
    args = parser.parse_args()
    Call.all_responses = args.all_responses
    Call.ack_route = not args.no_ack_route
    if args.gc == "edge":
        gc.set_threshold(50_000, 20, 100)  # as sipmesh_edge.__main__
    check()
    bench(
        args.count,
        args.warmup,
        args.repeat,
        rate=args.rate,
        batch=args.batch,
        profile=args.profile,
        gc_report=args.gc_report,
    )


if __name__ == "__main__":
    main()
