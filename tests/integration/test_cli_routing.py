"""``sipmesh dispatcher|gateway|route|peer`` as real subprocesses on a real NATS, and a
RoutingSnapshot fed from a KV watch that sees their changes live."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js.kv import KeyValue

from sipmesh_bus import kv
from sipmesh_bus.kvlist import live_entries
from sipmesh_bus.routing import (
    Health,
    RouteChunk,
    RoutingSnapshot,
    decode_routing,
    encode_record,
)
from sipmesh_router.dispatcher import select_destinations
from sipmesh_router.lcr import lookup, normalize_e164
from sipmesh_router.prober import KvLease

pytestmark = pytest.mark.integration


def _sipmesh(*args: str, data_dir: Path, nats_url: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sipmesh",
            *args,
            "--data-dir",
            str(data_dir),
            "--nats-url",
            nats_url,
        ],
        input="",
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
        check=False,
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout


def _error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
async def bucket(nats_url: str) -> AsyncIterator[KeyValue]:
    """A fresh ``routing`` bucket (the tests of this module own it)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await kv.ensure_jetstream(js)
    routing = await js.key_value(kv.BUCKET_ROUTING)
    await routing.purge_deletes(olderthan=-1)
    for key in await _keys(routing):
        await routing.purge(key)
    try:
        yield routing
    finally:
        await nc.close()


async def _keys(bucket: KeyValue) -> list[str]:
    """The bucket's live keys, from :func:`sipmesh_bus.kvlist.live_entries`.

    Not a KV watch read until it yields None: nats-py's watch can end its
    initial values before it has delivered them (an empty list once in CI,
    after the 100k import).
    """
    return list(await live_entries(bucket))


class Follower:
    """A RoutingSnapshot kept live by a KV watch, as a router keeps it."""

    def __init__(self) -> None:
        self.snapshot = RoutingSnapshot()
        self.updates = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, bucket: KeyValue) -> None:
        watcher = await bucket.watch(">")

        async def follow() -> None:
            async for entry in watcher:
                if entry is None:
                    continue
                deleted = entry.operation in {"DEL", "PURGE"}
                self.snapshot.apply(entry.key, None if deleted else entry.value)
                self.updates += 1

        self._task = asyncio.create_task(follow())

    async def until(self, check: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(check) and check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the snapshot never saw the change")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def _run(*args: str, data_dir: Path, nats_url: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_sipmesh, *args, data_dir=data_dir, nats_url=nats_url)


async def test_dispatcher_add_list_del_live_in_a_snapshot(
    bucket: KeyValue, nats_url: str, tmp_path: Path
) -> None:
    follower = Follower()
    await follower.start(bucket)
    snap = follower.snapshot

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await _run(*args, data_dir=tmp_path, nats_url=nats_url)

    try:
        out = _ok(await run("dispatcher", "add", "pbx", "--algorithm", "hash_callid",
                            "--dest", "10.0.0.5", "--prefix", "49301",
                            "--domain", "PBX.Example.com"))  # fmt: skip
        assert out.strip() == (
            "added set pbx (hash_callid), destination sip:10.0.0.5:5060, "
            "prefix 49301, domain pbx.example.com"
        )
        _ok(await run("dispatcher", "add", "pbx", "--dest", "sip:10.0.0.6:5080;transport=tcp",
                      "--weight", "2", "--range", "2000-2999"))  # fmt: skip
        await follower.until(lambda: len(getattr(snap.sets.get("pbx"), "destinations", [])) == 2)
        ds = snap.set_for("4930123", None)
        assert ds is not None
        assert ds.algorithm == "hash_callid"
        assert [(d.host, d.port, d.transport, d.weight) for d in ds.destinations] == [
            ("10.0.0.5", 5060, "udp", 1),
            ("10.0.0.6", 5080, "tcp", 2),
        ]
        assert snap.set_for("2500", None) is ds
        assert snap.set_for("alice", "pbx.example.com") is ds
        assert snap.set_for("3000", "other.org") is None
        dead = {ds.destinations[0].key: Health(up=False, checked_at=time.time(), since=0.0)}
        chosen = select_destinations(
            ds, snap, call_id="c1", from_user="a", now=time.time(), health=dead,
            active_calls={}, rr_counter=0,
        )  # fmt: skip
        assert [d.host for d in chosen] == ["10.0.0.6"]

        listed = _ok(await run("dispatcher", "list")).splitlines()
        assert listed[0].split() == [
            "SET",
            "ALGORITHM",
            "DESTINATION",
            "WEIGHT",
            "PRIORITY",
            "PROBE",
        ]
        assert listed[1].split() == ["pbx", "hash_callid", "sip:10.0.0.5:5060", "1", "0", "yes"]
        assert ["domain", "pbx.example.com", "pbx"] in [line.split() for line in listed]

        _ok(await run("dispatcher", "del", "pbx", "--dest", "10.0.0.5:5060"))
        await follower.until(lambda: len(snap.sets["pbx"].destinations) == 1)
        missing = await run("dispatcher", "del", "pbx", "--dest", "10.0.0.5")
        assert _error(missing, 1) == "sipmesh: error: set pbx has no destination sip:10.0.0.5:5060"

        _ok(await run("dispatcher", "del", "pbx"))
        await follower.until(lambda: not snap.sets and not snap.selectors)
        assert snap.set_for("4930123", "pbx.example.com") is None
        gone = await run("dispatcher", "del", "pbx")
        assert _error(gone, 1) == "sipmesh: error: no dispatcher set pbx"
        bad = await run("dispatcher", "add", "pbx", "--range", "300-20")
        assert "LO and HI need one length" in _error(bad, 2)
    finally:
        follower.stop()


async def test_gateway_route_peer_round_trip_live_in_a_snapshot(
    bucket: KeyValue, nats_url: str, tmp_path: Path
) -> None:
    follower = Follower()
    await follower.start(bucket)
    snap = follower.snapshot

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await _run(*args, data_dir=tmp_path, nats_url=nats_url)

    try:
        _ok(await run("gateway", "add", "gw-a", "--carrier", "acme", "--host", "192.0.2.10"))
        _ok(await run("gateway", "add", "gw-b", "--carrier", "bolt", "--host", "192.0.2.20:5080",
                      "--strip", "2", "--add-prefix", "0"))  # fmt: skip
        _ok(await run("route", "add", "+49", "--carrier", "acme", "--rate", "0.02"))
        _ok(await run("route", "add", "4930", "--carrier", "bolt", "--rate", "0.01",
                      "--increments", "30/6", "--currency", "EUR"))  # fmt: skip
        _ok(await run("route", "numbering", "--country-code", "49"))
        _ok(await run("peer", "add", "pbx1", "--cidr", "198.51.100.0/24", "--topology-hiding"))

        await follower.until(lambda: snap.route_count == 2 and len(snap.gateways) == 2)
        await follower.until(lambda: snap.numbers.country_code == "49" and bool(snap.peers))
        number = normalize_e164("030 1234", snap.numbers)
        assert number == "49301234"
        choices = lookup(number, snap)
        assert [(c.gateway.id, c.prefix, c.rate_per_minute, c.dial) for c in choices] == [
            ("gw-b", "4930", 0.01, "0301234"),
            ("gw-a", "49", 0.02, "49301234"),
        ]
        assert choices[0].increments == (30, 6)
        peer = snap.peer_for("198.51.100.7")
        assert peer is not None
        assert peer.topology_hiding
        assert snap.peer_for("203.0.113.1") is None

        routes = _ok(await run("route", "list")).splitlines()
        assert [line.split()[:4] for line in routes[1:]] == [
            ["49", "acme", "*", "0.02"],
            ["4930", "bolt", "*", "0.01"],
        ]
        gws = _ok(await run("gateway", "list")).splitlines()
        assert [line.split()[:3] for line in gws[1:]] == [
            ["gw-a", "acme", "192.0.2.10:5060"],
            ["gw-b", "bolt", "192.0.2.20:5080"],
        ]
        assert "pbx1" in _ok(await run("peer", "list"))

        _ok(await run("route", "del", "4930", "--carrier", "bolt"))
        await follower.until(lambda: snap.route_count == 1)
        assert [c.gateway.id for c in lookup("49301234", snap)] == ["gw-a"]
        nope = await run("route", "del", "4930", "--carrier", "bolt")
        assert _error(nope, 1) == "sipmesh: error: no route 4930 of carrier bolt"
        _ok(await run("gateway", "del", "gw-a"))
        _ok(await run("peer", "del", "pbx1"))
        await follower.until(lambda: "gw-a" not in snap.gateways and not snap.peers)
        assert lookup("49301234", snap) == []
        assert _error(await run("gateway", "del", "gw-a"), 1) == "sipmesh: error: no gateway gw-a"
        bad = await run("route", "add", "49x", "--carrier", "acme", "--rate", "1")
        assert _error(bad, 2).startswith("sipmesh: error: bad prefix '49x'")
    finally:
        follower.stop()


async def test_route_import_100k_rows(bucket: KeyValue, nats_url: str, tmp_path: Path) -> None:
    rng = random.Random(11)
    prefixes: set[str] = set()
    while len(prefixes) < 100_000:
        prefixes.add(
            str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=rng.randint(2, 8)))
        )
    carriers = ("acme", "bolt", "cheap", "dial")
    lines = ["prefix,carrier,rate,increments,priority"]
    billing = ("60/60", "1/1", "30/6")
    lines += [
        f"{p},{carriers[i % 4]},{rng.randint(1, 5000) / 10000},{rng.choice(billing)},"
        for i, p in enumerate(sorted(prefixes))
    ]
    deck = tmp_path / "deck.csv"
    deck.write_text("\n".join(lines) + "\n")

    started = time.monotonic()
    out = _ok(await _run("route", "import", str(deck), "--currency", "USD",
                         data_dir=tmp_path, nats_url=nats_url))  # fmt: skip
    took = time.monotonic() - started
    assert out.startswith(f"imported 100000 routes of 4 carriers from {deck}")
    print(f"\nimport of 100k rows: {took:.1f} s (process included)")

    follower = Follower()
    started = time.monotonic()
    await follower.start(bucket)
    try:
        await follower.until(lambda: follower.snapshot.route_count == 100_000, timeout=30)
        print(f"snapshot from a KV watch: {time.monotonic() - started:.2f} s")
        stored = 0
        for key, entry in (await live_entries(bucket)).items():
            record = decode_routing(key, entry.value)
            assert isinstance(record, RouteChunk)
            stored += len(record.routes)
        assert stored == 100_000
        by_prefix = {line.split(",")[0]: line.split(",")[1] for line in lines[1:]}
        for prefix in rng.sample(sorted(prefixes), 200):
            assert list(follower.snapshot.lcr[prefix]) == [by_prefix[prefix]]

        # Again, with one bad line: nothing changes, and the line is named.
        bad = tmp_path / "bad.csv"
        bad.write_text("\n".join([*lines[:5000], "4930,acme,cheap", *lines[5000:]]))
        updates = follower.updates
        proc = await _run("route", "import", str(bad), data_dir=tmp_path, nats_url=nats_url)
        assert (
            _error(proc, 2)
            == f"sipmesh: error: {bad}:5001: bad rate 'cheap': a price per minute such as 0.012"
        )
        await asyncio.sleep(0.2)
        assert follower.updates == updates
    finally:
        follower.stop()


async def test_kv_lease_one_holder_until_it_expires(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await kv.ensure_jetstream(js)
        health = await js.key_value(kv.BUCKET_HEALTH)
        await health.purge("lease.prober")
        a, b = KvLease(health, "a", ttl=30.0), KvLease(health, "b", ttl=30.0)
        now = 1_700_000_000.0
        assert await a.acquire(now)
        assert not await b.acquire(now + 1)
        assert await a.acquire(now + 10)  # renewed: holds until now + 40
        assert not await b.acquire(now + 35)
        assert await b.acquire(now + 41)
        assert not await a.acquire(now + 42)
        results = await asyncio.gather(
            *(KvLease(health, f"r{i}", ttl=30.0).acquire(now + 100) for i in range(5))
        )
        assert sum(results) == 1
        await health.put("x", encode_record(Health(up=True, checked_at=now, since=now)))
    finally:
        await nc.close()
