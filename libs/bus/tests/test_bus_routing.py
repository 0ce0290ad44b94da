"""sipmesh_bus.routing: keys, record round trips, and the snapshot's indexes."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.js.kv import VALID_KEY_RE

from sipmesh_bus.routing import (
    LCR_CHUNKS,
    NUMBERS_KEY,
    PROBER_LEASE_KEY,
    DispatcherSet,
    Gateway,
    Health,
    HealthSnapshot,
    NumberSettings,
    Peer,
    Route,
    RouteChunk,
    RoutingSnapshot,
    SelectorKind,
    SetSelector,
    decode_routing,
    encode_record,
    gateway_key,
    health_key,
    is_down,
    lcr_chunk,
    lcr_key,
    peer_key,
    selector_key,
    set_key,
)


@given(st.text(min_size=1))
def test_health_key_is_a_valid_kv_key(host: str) -> None:
    try:
        host.lower().encode("utf-8")
    except UnicodeEncodeError:
        return
    assert VALID_KEY_RE.match(health_key("udp", host, 5060))


@pytest.mark.parametrize(
    ("kind", "match", "key"),
    [
        ("prefix", "4930", "sel.prefix.4930"),
        ("range", "2000-2999", "sel.range.2000-2999"),
        ("domain", "PBX.example.com", "sel.domain.pbx=2Eexample=2Ecom"),
    ],
)
def test_selector_key(kind: SelectorKind, match: str, key: str) -> None:
    assert selector_key(kind, match) == key


@pytest.mark.parametrize(
    ("kind", "match"),
    [("prefix", "49a"), ("prefix", ""), ("range", "2000"), ("range", "300-20"),
     ("range", "3000-2000"), ("range", "a-b"), ("domain", "")],
)  # fmt: skip
def test_selector_key_rejects(kind: SelectorKind, match: str) -> None:
    with pytest.raises(ValueError, match=r"bad|empty"):
        selector_key(kind, match)


@pytest.mark.parametrize("make", [set_key, gateway_key, peer_key, lambda i: lcr_key(i, 1)])
@pytest.mark.parametrize("bad", ["", "a.b", "a b", "*", ">", "ü"])
def test_id_keys_reject_what_is_not_a_token(make: object, bad: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match="bad"):
        make(bad)


def test_lcr_chunk_is_stable_and_in_range() -> None:
    assert lcr_key("acme", lcr_chunk("4930")) == "lcr.acme.%02x" % lcr_chunk("4930")  # noqa: UP031
    chunks = {lcr_chunk(str(n)) for n in range(10_000)}
    assert chunks == set(range(LCR_CHUNKS))
    assert lcr_chunk("4930") == lcr_chunk("4930")


RECORDS = [
    (set_key("s"), DispatcherSet(id="s", algorithm="least_calls")),
    (selector_key("prefix", "49"), SetSelector(kind="prefix", match="49", set_id="s")),
    (gateway_key("g"), Gateway(id="g", carrier="c", host="h", strip=1)),
    (lcr_key("c", 3), RouteChunk(carrier="c", chunk=3, routes=[Route(prefix="1", carrier="c")])),
    (peer_key("p"), Peer(name="p", cidrs=["10.0.0.0/8"])),
    (NUMBERS_KEY, NumberSettings(country_code="44")),
]


@pytest.mark.parametrize(("key", "record"), RECORDS, ids=[k for k, _ in RECORDS])
def test_records_round_trip_by_key(key: str, record: msgspec.Struct) -> None:
    assert decode_routing(key, encode_record(record)) == record  # type: ignore[arg-type]


def test_route_is_a_compact_array() -> None:
    route = Route(prefix="4930", carrier="acme", rate_per_minute=0.01, increments=(30, 6))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(route)) == [
        "4930", "acme", None, 0, 1, 0.01, [30, 6], "",
    ]  # fmt: skip


def test_decode_routing_unknown_family() -> None:
    with pytest.raises(ValueError, match="not a routing key"):
        decode_routing("zz.top", b"\x80")


def test_snapshot_ignores_unknown_and_bad_values_and_drops_replaced() -> None:
    snap = RoutingSnapshot()
    assert snap.apply("zz.top", b"x") is False
    assert snap.apply(gateway_key("g"), msgspec.msgpack.encode(RECORDS[2][1])) is True
    assert snap.apply(gateway_key("g"), b"\xc1garbage") is False
    assert snap.gateways == {}


def test_snapshot_selectors_longest_prefix_then_narrowest_range_then_domain() -> None:
    snap = RoutingSnapshot()
    for sid in ("a", "b", "c", "d", "e"):
        snap.apply(set_key(sid), encode_record(DispatcherSet(id=sid)))
    for kind, match, sid in [
        ("prefix", "49", "a"), ("prefix", "4930", "b"), ("range", "1000-1999", "c"),
        ("range", "1500-1599", "d"), ("domain", "pbx.example.com", "e"),
    ]:  # fmt: skip
        sel = SetSelector(kind=kind, match=match, set_id=sid)  # type: ignore[arg-type]
        snap.apply(selector_key(kind, match), encode_record(sel))  # type: ignore[arg-type]

    def got(number: str | None, domain: str | None = None) -> str | None:
        ds = snap.set_for(number, domain)
        return ds.id if ds else None

    assert [got("4930111"), got("4940"), got("1200"), got("1550"), got("10000")] == [
        "b", "a", "c", "d", None,
    ]  # fmt: skip
    assert got("alice", "PBX.Example.com") == "e"
    assert got("4930", "pbx.example.com") == "b"
    snap.apply(selector_key("prefix", "4930"), None)
    assert got("4930111") == "a"


def test_snapshot_peer_for_most_specific_network() -> None:
    snap = RoutingSnapshot()
    snap.apply(peer_key("wide"), encode_record(Peer(name="wide", cidrs=["10.0.0.0/8"])))
    narrow = Peer(name="narrow", cidrs=["10.1.0.0/16", "2001:db8::/32"], topology_hiding=True)
    snap.apply(peer_key("narrow"), encode_record(narrow))
    snap.apply(peer_key("odd"), encode_record(Peer(name="odd", cidrs=["not-a-net"])))
    assert [
        getattr(snap.peer_for(a), "name", None)
        for a in ("10.1.2.3", "10.2.0.1", "[2001:db8::5]", "192.0.2.1", "junk")
    ] == ["narrow", "wide", "narrow", None, None]


def test_snapshot_gateways_of_carrier_by_priority() -> None:
    snap = RoutingSnapshot()
    for gid, prio in (("z", 0), ("a", 1), ("m", 0)):
        gw = Gateway(id=gid, carrier="c", host="h", priority=prio)
        snap.apply(gateway_key(gid), encode_record(gw))
    assert [g.id for g in snap.gateways_of("c")] == ["m", "z", "a"]
    assert snap.gateways_of("none") == []


def test_health_snapshot_and_is_down() -> None:
    health = HealthSnapshot()
    down = Health(up=False, checked_at=100.0, since=90.0)
    assert health.apply("udp.h.5060", encode_record(down))
    assert not health.apply(PROBER_LEASE_KEY, b"x")
    assert not health.apply("udp.bad.5060", b"\xc1")
    assert list(health.view()) == ["udp.h.5060"]
    assert is_down(health.view(), "udp.h.5060", 150.0)
    assert not is_down(health.view(), "udp.h.5060", 1000.0)  # stale
    assert not is_down(health.view(), "udp.other.5060", 150.0)
    health.apply("udp.h.5060", None)
    assert not is_down(health.view(), "udp.h.5060", 150.0)
