"""The router's CPU per call without NATS: what Python costs in one process.

    python bench/call/router_bench.py [--number 2000] [--repeat 5] [--profile]
                                      [--against OTHER/services/router/src]

Replays the CALL scenario's router side (bench/call/sipp/call_uac.xml through
the bench stack: 127.0.0.1/32 a trusted peer, callee ``uas`` registered from
the SIPp UAS) against one :class:`sipmesh_router.app.Router` whose caches are
filled by hand. Per call, as ``Service.serve`` would: envelope decode,
:meth:`Router.handle`, reply encode, for the INVITE, its 200 (with the echoed
context and ``ringing_at``: the edge relays the 180 itself and reports it with
the final, which the router puts on the answered event; ``--ask-180`` asks
about the 180 too, as before the router stopped setting ``all_responses`` for
every initial INVITE), the ACK (skipped when the
200's reply holds an ``ack_route``: the edge forwards it itself; ``--ask-ack``
sends it anyway) and the BYE (with the Route set of the 200's Record-Route);
then the background writes the outbox runs after the replies (events and dialog
put/delete, published to a fake wire connection that acks at once; with
``--nats`` to a real nats-server on a wire connection, as in production). It
prints the CPU time per call (best of ``--repeat``; with ``--nats`` the
nats-server's too, from /proc), and with ``--profile`` the
top functions under cProfile. ``--against`` compares with another checkout's
Python shell (app, outbox, metrics, wiring: what stays uncompiled) in the same
process, batches of calls interleaved: on a shared box two processes run
minutes apart differ by more than most shell changes save.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Final

import nats
from prometheus_client import CollectorRegistry

from sipmesh_bus import kv, routing, schema
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.records import Binding, BindingSet, aor_key
from sipmesh_bus.schema import Envelope, Forward, SendResponse
from sipmesh_bus.wire import WireClient
from sipmesh_router.app import Router
from sipmesh_router.config import DialogsMode, RouterConfig, RouterSettings
from sipmsg import Request, Response, make_response, parse

# The repository root, so that bench.lib (a namespace package) imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.lib.procstat import cpu_of

DOMAIN = "127.0.0.1"
UAC = ("127.0.0.1", 5061)
UAS = ("127.0.0.1", 5062)
EDGE = ("127.0.0.1", 5060)
SDP = (
    "v=0\r\no=caller 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 16000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


class FakeNats:
    """The nats-py connection the outbox only names its inbox with."""

    def new_inbox(self) -> str:
        return "_INBOX.bench"


class FakeJetStream:
    def __init__(self) -> None:
        self._nc = FakeNats()


class FakeWire:
    """Acks every publish with a reply subject on the next loop iteration; counts them.

    As ``WireClient``: publish appends and returns, the acks come to a plain
    callback (inside ``data_received`` there).
    """

    def __init__(self) -> None:
        self.published = 0
        self._cb: Any = None
        self._acks: list[bytes] = []

    def subscribe(self, subject: str, callback: Any, queue: str | None = None) -> int:
        self._cb = callback
        return 1

    def publish(
        self, subject: str | bytes, payload: bytes, reply: Any = None, *, headers: Any = None
    ) -> bool:
        self.published += 1
        if reply:
            if not self._acks:
                asyncio.get_running_loop().call_soon(self._deliver)
            self._acks.append(reply.encode() if isinstance(reply, str) else reply)
        return True

    def _deliver(self) -> None:
        acks, self._acks = self._acks, []
        for subject in acks:
            self._cb(subject, b"", b'{"stream":"X","seq":1}', None)


def sip(lines: list[str], body: str = "") -> bytes:
    return ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n" + body).encode()


def invite(n: int) -> bytes:
    return sip(
        [
            f"INVITE sip:uas@{DOMAIN}:5060 SIP/2.0",
            f"Via: SIP/2.0/UDP {UAC[0]}:{UAC[1]};branch=z9hG4bK-9-{n}-0;rport",
            f"From: <sip:caller{n}@{UAC[0]}:{UAC[1]}>;tag=9SIPpTag00{n}",
            f"To: <sip:uas@{DOMAIN}:5060>",
            f"Call-ID: {n}-9@127.0.0.1",
            "CSeq: 1 INVITE",
            f"Contact: <sip:caller@{UAC[0]}:{UAC[1]};transport=UDP>",
            "Max-Forwards: 70",
            "User-Agent: sipp-bench",
            "Content-Type: application/sdp",
        ],
        SDP,
    )


def in_dialog(method: str, n: int, cseq: int, ok: Response) -> bytes:
    routes = ok.headers.get_all(b"record-route")
    return sip(
        [
            f"{method} sip:uas@{UAS[0]}:{UAS[1]};transport=UDP SIP/2.0",
            f"Via: SIP/2.0/UDP {UAC[0]}:{UAC[1]};branch=z9hG4bK-9-{n}-{cseq}{method};rport",
            *(f"Route: {r.decode()}" for r in routes),
            f"From: <sip:caller{n}@{UAC[0]}:{UAC[1]}>;tag=9SIPpTag00{n}",
            f"To: <sip:uas@{DOMAIN}:5060>;tag={n}uas",
            f"Call-ID: {n}-9@127.0.0.1",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:caller@{UAC[0]}:{UAC[1]};transport=UDP>",
            "Max-Forwards: 70",
        ]
    )


def wrap(
    data: bytes,
    source: tuple[str, int],
    context: bytes | None = None,
    ringing_at: float | None = None,
) -> bytes:
    return schema.encode(
        Envelope(
            edge_id="bench-edge",
            transport="udp",
            source_host=source[0],
            source_port=source[1],
            local_host=EDGE[0],
            local_port=EDGE[1],
            received_at=time.time(),
            data=data,
            context=context,
            ringing_at=ringing_at,
        )
    )


def uas_binding(now: float, ttl: float = 3600) -> Binding:
    """The callee's binding, as the SIPp UAS registers it."""
    return Binding(
        contact=f"sip:uas@{UAS[0]}:{UAS[1]};transport=UDP",
        expires_at=now + ttl,
        call_id="reg@x",
        cseq=1,
        registered_at=now,
        source_host=UAS[0],
        source_port=UAS[1],
        transport="udp",
        edge_id="bench-edge",
    )


def make_router(js: Any, wire: Any = None, router_class: type[Router] = Router) -> Router:
    settings = RouterSettings(domain=DOMAIN, probe=False, media="never", dialogs=DIALOGS[0])
    config = RouterConfig(nats=NatsConfig(), router=settings)
    secret = b"bench-secret-bench-secret-bench!"
    router = router_class(config, js, secret=secret, registry=CollectorRegistry(), wire=wire)
    peer = routing.Peer(name="loopback", cidrs=["127.0.0.1/32"])
    router.snapshot.apply(routing.peer_key("loopback"), routing.encode_record(peer))
    binding = uas_binding(time.time())
    bindings = BindingSet(aor=f"sip:uas@{DOMAIN}", bindings=[binding])
    router._locations[aor_key("uas", DOMAIN)] = (bindings, 1)
    # The bench waits for each call's writes: publish them at once instead of
    # lingering (which saves socket writes, which this bench does not see).
    router.outbox._linger = 0.0
    return router


ASK_180 = [False]
#: ``--ask-180``: the 180 goes to the router (the flow before ``Envelope.ringing_at``).


DIALOGS: list[DialogsMode] = ["always"]
#: ``--dialogs``: ``router.dialogs`` (``auto``: no dialog record, as nothing counts them here).


def writes() -> int:
    """Background writes per call: the events attempt, answered (with the ring
    time, ``CallEvent.ringing_at``) and ended, the dialog put and delete (not
    with ``--dialogs auto``); with ``--ask-180`` a ringing event of its own too."""
    return 3 + (1 if ASK_180[0] else 0) + (2 if DIALOGS[0] == "always" else 0)


NATS_PID = [0]
#: With ``--nats``: the nats-server's pid (its CPU per call is printed too:
#: the background writes and their acks, each call's waited for on its own).
ASK_ACK = [False]
#: ``--ask-ack``: the ACK goes to the router even with an ``ack_route``.


async def one_call(router: Router, n: int) -> None:
    """The five messages of call ``n`` the router decides, as the edge would send them."""
    fwd = await ask(router, wrap(invite(n), UAC))
    assert isinstance(fwd, Forward), fwd
    req = parse(fwd.data)
    assert isinstance(req, Request)
    rang = time.time()
    if ASK_180[0]:
        ringing = make_response(req, 180, to_tag=b"%duas" % n)
        assert isinstance(await ask(router, wrap(bytes(ringing), UAS, fwd.context)), SendResponse)
    contact = (b"Contact", b"<sip:uas@%s:%d;transport=UDP>" % (UAS[0].encode(), UAS[1]))
    ok = make_response(req, 200, to_tag=b"%duas" % n, headers=[contact])
    ok = ok.with_body(SDP.encode(), b"application/sdp")
    up = await ask(router, wrap(bytes(ok), UAS, fwd.context, None if ASK_180[0] else rang))
    assert isinstance(up, SendResponse), up
    answer = parse(up.data)
    assert isinstance(answer, Response)
    assert up.ack_route is not None  # no hiding, no media: the edge may forward the ACK
    if ASK_ACK[0]:
        assert isinstance(await ask(router, wrap(in_dialog("ACK", n, 1, answer), UAC)), Forward)
    assert isinstance(await ask(router, wrap(in_dialog("BYE", n, 2, answer), UAC)), Forward)


_spent = [0.0]
#: CPU seconds inside the router (the timed part; building the edge's side is not).


async def ask(router: Router, raw: bytes) -> schema.ReplyType:
    t0 = time.process_time()
    out = schema.encode(await router.handle(schema.decode_envelope(raw)))
    _spent[0] += time.process_time() - t0
    return schema.decode_reply(out)


async def calls(router: Router, first: int, number: int) -> float:
    """CPU seconds the router spent on ``number`` calls, background writes included."""
    _spent[0] = 0.0
    for n in range(first, first + number):
        await one_call(router, n)
        t0 = time.process_time()
        await router.flush()
        _spent[0] += time.process_time() - t0
    return _spent[0]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--number", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="tottime", help="pstats order with --profile")
    ap.add_argument("--nats", action="store_true", help="publish to a real nats-server")
    ap.add_argument("--ask-180", action="store_true", help="the 180 goes to the router too")
    ap.add_argument("--ask-ack", action="store_true", help="the ACK goes to the router too")
    ap.add_argument("--dialogs", choices=["always", "auto"], default="always")
    ap.add_argument(
        "--against",
        metavar="SRC",
        help="another checkout's services/router/src: its Python shell (app, outbox, "
        "metrics, wiring) in this process, interleaved with this one",
    )
    a = ap.parse_args()
    ASK_180[0] = a.ask_180
    ASK_ACK[0] = a.ask_ack
    DIALOGS[0] = a.dialogs
    async with contextlib.AsyncExitStack() as stack:
        if a.nats:
            server = NatsServer(store_dir=Path(stack.enter_context(tempfile.TemporaryDirectory())))
            server.start()
            stack.callback(server.stop)
            nc = await nats.connect(server.url)
            stack.push_async_callback(nc.close)
            js = nc.jetstream()
            await kv.ensure_jetstream(js)
            wire = WireClient(NatsConfig(url=server.url), name="bench")
            await wire.connect()
            stack.push_async_callback(wire.close)
            router = make_router(js, wire)  # writes and acks on the wire, as __main__ does
            assert server._proc is not None  # private: the bench reads its CPU time
            NATS_PID[0] = server._proc.pid
            await calls(router, 0, 50)
            stream = await js.stream_info("CALLS")
            events = writes() - (2 if DIALOGS[0] == "always" else 0)
            assert stream.state.messages == 50 * events, stream.state
        else:
            fake = FakeWire()
            router = make_router(FakeJetStream(), fake)
            await calls(router, 0, 50)
            assert fake.published == 50 * writes(), fake.published
        await measure(router, a)


_SHELL: Final = ("metrics", "outbox", "wiring", "app")
#: The router's modules that stay Python (scripts/compile.py), loaded again
#: from ``--against``; the compiled ones (core and the rest) are shared.


def router_class_of(src: Path) -> type[Router]:
    """``Router`` of the shell modules under ``src`` (a ``services/router/src``).

    Each is run as ``sipmesh_router._against_<name>``, its imports of the
    other shell modules pointed at the copies loaded before it: both routers
    then run in this process on the same compiled modules.
    """
    names = {f"from .{m} import": f"from ._against_{m} import" for m in _SHELL}
    module = None
    for name in _SHELL:
        path = src / "sipmesh_router" / f"{name}.py"
        text = path.read_text()
        for old, new in names.items():
            text = text.replace(old, new)
        module = types.ModuleType(f"sipmesh_router._against_{name}")
        module.__package__ = "sipmesh_router"
        module.__file__ = str(path)
        sys.modules[module.__name__] = module
        exec(compile(text, str(path), "exec"), module.__dict__)
    assert module is not None
    router_class: type[Router] = module.Router
    return router_class


async def against(router: Router, a: argparse.Namespace) -> None:
    """``--against``: this router and the other shell's, call batches interleaved."""
    fake = FakeWire()
    other = make_router(FakeJetStream(), fake, router_class_of(Path(a.against)))
    await calls(other, 0, 50)
    assert fake.published == 50 * writes(), fake.published
    pair = {"this": router, "against": other}
    spent: dict[str, list[float]] = {name: [] for name in pair}
    for r in range(2 * a.repeat):
        order = list(pair) if r % 2 == 0 else list(pair)[::-1]
        for name in order:
            first = (r + 1) * 10**6 + (5 * 10**5 if name == "against" else 0)
            spent[name].append(await calls(pair[name], first, a.number) / a.number * 1e6)
    for name, values in spent.items():
        values.sort()
        print(
            f"router, one call, {name}: best {values[0]:.1f} µs, "
            f"median {values[len(values) // 2]:.1f} µs CPU ({len(values)} rounds)"
        )


async def measure(router: Router, a: argparse.Namespace) -> None:
    if a.against:
        await against(router, a)
        return
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        await calls(router, 10**6, a.number)
        prof.disable()
        pstats.Stats(prof).sort_stats(a.sort).print_stats(30)
        return
    best = nats_best = float("inf")
    for r in range(a.repeat):
        nats0 = sum(cpu_of(NATS_PID[0])) if NATS_PID[0] else 0.0
        best = min(best, await calls(router, (r + 1) * 10**6, a.number) / a.number)
        if NATS_PID[0]:
            nats_best = min(nats_best, (sum(cpu_of(NATS_PID[0])) - nats0) / a.number)
    ringing = "180 " if a.ask_180 else ""
    ack = "ACK " if a.ask_ack else ""
    what = f"INVITE {ringing}200 {ack}BYE + {writes()} background writes"
    nats = f"; nats-server {nats_best * 1e6:.0f} µs" if NATS_PID[0] else ""
    print(f"router, one call ({what}): {best * 1e6:.0f} µs CPU{nats}")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
