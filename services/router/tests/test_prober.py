"""sipmesh_router.prober: thresholds, rounds against a real UDP SIP responder, the lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import pytest

from sipmesh_bus.routing import (
    Destination,
    DispatcherSet,
    Gateway,
    Health,
    RoutingSnapshot,
    decode_health,
    encode_record,
    gateway_key,
    health_key,
    set_key,
)
from sipmesh_router.prober import (
    Prober,
    ProberConfig,
    ProbeTarget,
    UdpProbeTransport,
    is_alive,
    next_health,
    probe_targets,
)
from sipmsg import Request, make_response, parse

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "alive"),
    [(200, True), (404, True), (405, True), (483, True), (408, False), (500, False),
     (503, False), (None, False), (180, False), (600, False)],
)  # fmt: skip
def test_is_alive(status: int | None, alive: bool) -> None:
    assert is_alive(status) is alive


def _run(results: list[bool], *, down_after: int = 3, up_after: int = 2) -> list[bool]:
    health: Health | None = None
    ups = []
    for i, ok in enumerate(results):
        health = next_health(
            health, alive=ok, status=200 if ok else None, now=NOW + i,
            down_after=down_after, up_after=up_after,
        )  # fmt: skip
        ups.append(health.up)
    return ups


@pytest.mark.parametrize(
    ("results", "ups"),
    [
        pytest.param([True], [True], id="fresh-up"),
        pytest.param([False], [True], id="one-loss-keeps-up"),
        pytest.param([False, False, False], [True, True, False], id="down-after-3"),
        pytest.param([False, False, True, False, False], [True] * 5, id="answer-resets-failures"),
        pytest.param(
            [False] * 3 + [True, True], [True, True, False, False, True], id="up-after-2"
        ),
        pytest.param(
            [False] * 3 + [True, False, True], [True, True, False, False, False, False],
            id="loss-resets-successes",
        ),
    ],
)  # fmt: skip
def test_next_health_thresholds(results: list[bool], ups: list[bool]) -> None:
    assert _run(results) == ups


def test_next_health_since_changes_only_on_a_flip() -> None:
    h = next_health(None, alive=False, status=None, now=NOW, down_after=1, up_after=1)
    assert (h.up, h.since, h.failures) == (False, NOW, 1)
    h2 = next_health(h, alive=False, status=503, now=NOW + 10, down_after=1, up_after=1)
    assert (h2.up, h2.since, h2.failures, h2.status, h2.checked_at) == (
        False, NOW, 2, 503, NOW + 10,
    )  # fmt: skip
    h3 = next_health(h2, alive=True, status=200, now=NOW + 20, down_after=1, up_after=1)
    assert (h3.up, h3.since, h3.failures, h3.successes) == (True, NOW + 20, 0, 1)


def test_probe_targets_deduplicates_and_honours_probe_flags() -> None:
    snap = RoutingSnapshot()
    a = Destination(uri="sip:10.0.0.1", host="10.0.0.1")
    quiet = Destination(uri="sip:10.0.0.2", host="10.0.0.2", probe=False)
    snap.apply(set_key("s1"), encode_record(DispatcherSet(id="s1", destinations=[a, quiet])))
    snap.apply(set_key("s2"), encode_record(DispatcherSet(id="s2", destinations=[a])))
    gws = [
        Gateway(id="g1", carrier="c", host="2001:db8::9", port=5080),
        Gateway(id="g2", carrier="c", host="10.0.0.3", probe=False),
    ]
    for g in gws:
        snap.apply(gateway_key(g.id), encode_record(g))
    targets = probe_targets(snap)
    assert sorted((t.key, t.uri) for t in targets) == [
        (health_key("udp", "10.0.0.1", 5060), "sip:10.0.0.1"),
        (health_key("udp", "2001:db8::9", 5080), "sip:[2001:db8::9]:5080"),
    ]


@dataclass
class Responder(asyncio.DatagramProtocol):
    """A tiny SIP UAS: answers each OPTIONS with ``status``, or ignores it when off."""

    status: int = 200
    on: bool = True
    seen: list[Request] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        req = parse(data)
        assert isinstance(req, Request)
        self.seen.append(req)
        if self.on and self.transport is not None:
            self.transport.sendto(bytes(make_response(req, 100)), addr)
            self.transport.sendto(bytes(make_response(req, self.status)), addr)


@dataclass
class Responding:
    responder: Responder
    target: ProbeTarget
    transport: UdpProbeTransport


@pytest.fixture
async def responding() -> AsyncIterator[Responding]:
    loop = asyncio.get_running_loop()
    sock, responder = await loop.create_datagram_endpoint(Responder, local_addr=("127.0.0.1", 0))
    port = sock.get_extra_info("sockname")[1]
    target = ProbeTarget(
        key=health_key("udp", "127.0.0.1", port),
        uri=f"sip:127.0.0.1:{port}",
        host="127.0.0.1",
        port=port,
        transport="udp",
    )
    transport = UdpProbeTransport()
    await transport.start()
    try:
        yield Responding(responder, target, transport)
    finally:
        transport.close()
        sock.close()


async def test_udp_transport_sends_a_valid_options_and_reads_the_final_status(
    responding: Responding,
) -> None:
    responding.responder.status = 404
    status = await responding.transport.options(responding.target, timeout=1.0)
    assert status == 404
    (req,) = responding.responder.seen
    assert req.method == b"OPTIONS"
    assert req.uri == responding.target.uri.encode()
    branch = req.via[0].branch
    assert branch is not None
    assert branch.startswith(b"z9hG4bK")
    assert req.max_forwards == 70
    assert req.cseq.method == b"OPTIONS"


async def test_udp_transport_retransmits_then_times_out(responding: Responding) -> None:
    responding.responder.on = False
    status = await responding.transport.options(responding.target, timeout=0.8)
    assert status is None
    # Timer E: sent at 0 and again at T1 = 0.5 s, within 0.8 s.
    assert len(responding.responder.seen) == 2
    assert len({bytes(r) for r in responding.responder.seen}) == 1


async def test_udp_transport_unreachable_name_is_none(responding: Responding) -> None:
    bad = ProbeTarget(key="k", uri="sip:x.invalid", host="x.invalid", port=5060, transport="udp")
    assert await responding.transport.options(bad, timeout=0.3) is None
    tcp = ProbeTarget(key="k", uri="sip:127.0.0.1", host="127.0.0.1", port=5060, transport="tcp")
    assert await responding.transport.options(tcp, timeout=0.3) is None


class MemoryStore:
    def __init__(self) -> None:
        self.puts: list[tuple[str, bytes]] = []

    async def put(self, key: str, value: bytes) -> int:
        self.puts.append((key, value))
        return len(self.puts)


async def test_prober_marks_down_after_n_failures_and_up_after_m(responding: Responding) -> None:
    store = MemoryStore()
    clock = iter(NOW + i for i in range(1000))
    prober = Prober(
        responding.transport,
        store,
        lambda: [responding.target],
        config=ProberConfig(timeout=0.3, down_after=2, up_after=3),
        prober_id="r1",
        clock=lambda: next(clock),
    )
    key = responding.target.key

    async def round_up() -> bool:
        before = len(store.puts)
        states = await prober.probe_once()
        assert [k for k, _ in store.puts[before:]] == [key]
        assert decode_health(store.puts[-1][1]) == states[key]
        return states[key].up

    assert await round_up() is True
    responding.responder.on = False
    assert [await round_up() for _ in range(2)] == [True, False]
    assert decode_health(store.puts[-1][1]).status is None
    responding.responder.on = True
    assert [await round_up() for _ in range(3)] == [False, False, True]
    last = decode_health(store.puts[-1][1])
    assert (last.status, last.prober, last.successes) == (200, "r1", 3)


async def test_prober_probes_only_what_its_transport_reaches(responding: Responding) -> None:
    tcp = ProbeTarget(key="tcp.x.5060", uri="sip:x", host="x", port=5060, transport="tcp")
    store = MemoryStore()
    prober = Prober(responding.transport, store, lambda: [tcp, responding.target])
    states = await prober.probe_once()
    assert list(states) == [responding.target.key]


class FakeLease:
    def __init__(self, held: bool) -> None:
        self.held = held
        self.asked: list[float] = []

    async def acquire(self, now: float) -> bool:
        self.asked.append(now)
        return self.held


async def test_prober_without_the_lease_probes_nothing(responding: Responding) -> None:
    store = MemoryStore()
    lease = FakeLease(held=False)
    prober = Prober(
        responding.transport, store, lambda: [responding.target], lease=lease, clock=lambda: NOW
    )
    assert await prober.probe_once() == {}
    assert (store.puts, responding.responder.seen, lease.asked) == ([], [], [NOW])
    lease.held = True
    assert list(await prober.probe_once()) == [responding.target.key]


async def test_prober_run_stops_on_the_event(responding: Responding) -> None:
    store = MemoryStore()
    prober = Prober(
        responding.transport,
        store,
        lambda: [responding.target],
        config=ProberConfig(interval=0.05, timeout=0.2),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(prober.run(stop))
    while len(store.puts) < 3:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 1.0)
    assert {k for k, _ in store.puts} == {responding.target.key}
