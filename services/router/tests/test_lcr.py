"""sipmesh_router.lcr: E.164 normalisation, longest-prefix LCR over the snapshot, billing."""

from __future__ import annotations

import random
import time
from decimal import Decimal

import pytest

from sipmesh_bus.routing import (
    LCR_CHUNKS,
    Gateway,
    Health,
    Increments,
    NumberSettings,
    Route,
    RouteChunk,
    RoutingSnapshot,
    encode_record,
    gateway_key,
    lcr_chunk,
    lcr_key,
)
from sipmesh_router.lcr import (
    GatewayChoice,
    billable_seconds,
    cost,
    lookup,
    normalize_e164,
)

NOW = 1_700_000_000.0
DE = NumberSettings(country_code="49")


@pytest.mark.parametrize(
    ("number", "settings", "expected"),
    [
        pytest.param("+4930123456", DE, "4930123456", id="plus"),
        pytest.param("004930123456", DE, "4930123456", id="international-prefix"),
        pytest.param("030123456", DE, "4930123456", id="national-prefix"),
        pytest.param("4930123456", DE, "4930123456", id="already-e164"),
        pytest.param("+49 (30) 123-45.6", DE, "4930123456", id="visual-separators"),
        pytest.param(
            "01144201234",
            NumberSettings(country_code="1", national_prefix="1", international_prefix="011"),
            "44201234",
            id="nanp-international",
        ),
        pytest.param(
            "12125550100",
            NumberSettings(country_code="1", national_prefix="1", international_prefix="011"),
            "12125550100",
            id="nanp-national",
        ),
        pytest.param("030123", NumberSettings(), None, id="national-without-country"),
        pytest.param("+49abc", DE, None, id="letters"),
        pytest.param("alice", DE, None, id="user-name"),
        pytest.param("", DE, None, id="empty"),
        pytest.param("+", DE, None, id="plus-only"),
        pytest.param("00", DE, None, id="prefix-only"),
        pytest.param("+1234567890123456", DE, None, id="sixteen-digits"),
        pytest.param("+123456789012345", DE, "123456789012345", id="fifteen-digits"),
        pytest.param("+4930*1", DE, None, id="star"),
        pytest.param("+٤٩٣٠", DE, None, id="non-ascii-digits"),
    ],
)
def test_normalize_e164(number: str, settings: NumberSettings, expected: str | None) -> None:
    assert normalize_e164(number, settings) == expected


def gw(gid: str, carrier: str, **kw: object) -> Gateway:
    return Gateway(id=gid, carrier=carrier, host=f"{gid}.example.net", **kw)  # type: ignore[arg-type]


def route(prefix: str, carrier: str, rate: float, **kw: object) -> Route:
    return Route(prefix=prefix, carrier=carrier, rate_per_minute=rate, **kw)  # type: ignore[arg-type]


def snapshot(gateways: list[Gateway], routes: list[Route]) -> RoutingSnapshot:
    snap = RoutingSnapshot()
    for g in gateways:
        snap.apply(gateway_key(g.id), encode_record(g))
    chunks: dict[tuple[str, int], list[Route]] = {}
    for r in routes:
        chunks.setdefault((r.carrier, lcr_chunk(r.prefix)), []).append(r)
    for (carrier, n), rs in chunks.items():
        snap.apply(
            lcr_key(carrier, n), encode_record(RouteChunk(carrier=carrier, chunk=n, routes=rs))
        )
    return snap


GATEWAYS = [gw("a1", "acme"), gw("b1", "bolt"), gw("c1", "cheap"), gw("c2", "cheap", priority=1)]


def ids(choices: list[GatewayChoice]) -> list[tuple[str, str, float]]:
    return [(c.gateway.id, c.prefix, c.rate_per_minute) for c in choices]


@pytest.mark.parametrize(
    ("routes", "number", "expected"),
    [
        pytest.param(
            [route("49", "acme", 0.02), route("49", "bolt", 0.01)],
            "4930123",
            [("b1", "49", 0.01), ("a1", "49", 0.02)],
            id="cheapest-first",
        ),
        pytest.param(
            [route("49", "acme", 0.02), route("4917", "acme", 0.10), route("49", "bolt", 0.05)],
            "4917012345",
            [("bolt", "49", 0.05), ("acme", "4917", 0.10)],
            id="carrier-rate-is-its-longest-prefix",
        ),
        pytest.param(
            [route("4", "acme", 0.5), route("49", "acme", 0.2), route("493", "acme", 0.1)],
            "4940",
            [("a1", "49", 0.2)],
            id="longest-match-within-a-carrier",
        ),
        pytest.param(
            [route("1", "acme", 0.01)],
            "4930",
            [],
            id="no-match",
        ),
        pytest.param(
            [route("49", "acme", 0.02, priority=0), route("49", "bolt", 0.01, priority=1)],
            "4930",
            [("a1", "49", 0.02), ("b1", "49", 0.01)],
            id="priority-overrides-price",
        ),
        pytest.param(
            [route("49", "acme", 0.01, weight=1), route("49", "bolt", 0.01, weight=5)],
            "4930",
            [("b1", "49", 0.01), ("a1", "49", 0.01)],
            id="weight-breaks-ties",
        ),
        pytest.param(
            [route("49", "cheap", 0.001), route("49", "acme", 0.02)],
            "4930",
            [("c1", "49", 0.001), ("c2", "49", 0.001), ("a1", "49", 0.02)],
            id="all-gateways-of-a-carrier-by-priority",
        ),
        pytest.param(
            [route("49", "cheap", 0.001, gateway="c2"), route("49", "cheap", 0.003, gateway="c1")],
            "4930",
            [("c2", "49", 0.001), ("c1", "49", 0.003)],
            id="pinned-gateways",
        ),
        pytest.param(
            [route("49", "cheap", 0.001, gateway="nope"), route("49", "acme", 0.02)],
            "4930",
            [("a1", "49", 0.02)],
            id="unknown-gateway-skipped",
        ),
        pytest.param(
            [route("49", "ghost", 0.0001), route("49", "acme", 0.02)],
            "4930",
            [("a1", "49", 0.02)],
            id="carrier-without-gateways",
        ),
        pytest.param(
            [route("49", "acme", 0.02)],
            "49",
            [("a1", "49", 0.02)],
            id="number-equals-prefix",
        ),
        pytest.param([route("49", "acme", 0.02)], "+49", [], id="not-digits"),
    ],
)
def test_lookup(routes: list[Route], number: str, expected: list[tuple[str, str, float]]) -> None:
    got = lookup(number, snapshot(GATEWAYS, routes))
    if expected and expected[0][0] in {"bolt", "acme"}:  # carrier-level expectation
        assert [(c.carrier, c.prefix, c.rate_per_minute) for c in got] == expected
    else:
        assert ids(got) == expected


def test_lookup_skips_gateways_that_are_down() -> None:
    snap = snapshot(GATEWAYS, [route("49", "cheap", 0.001), route("49", "acme", 0.02)])
    dead = {GATEWAYS[2].key: Health(up=False, checked_at=NOW, since=NOW)}
    assert [c.gateway.id for c in lookup("4930", snap, health=dead, now=NOW)] == ["c2", "a1"]
    stale = {GATEWAYS[2].key: Health(up=False, checked_at=NOW - 3600, since=NOW - 3600)}
    assert [c.gateway.id for c in lookup("4930", snap, health=stale, now=NOW)] == ["c1", "c2", "a1"]


def test_lookup_choice_carries_price_and_dial_string() -> None:
    strip = Gateway(
        id="s1", carrier="acme", host="2001:db8::1", strip=2, prefix="0", transport="tcp"
    )
    snap = snapshot([strip], [route("4930", "acme", 0.015, increments=(30, 6), currency="EUR")])
    (choice,) = lookup("4930123456", snap)
    assert choice == GatewayChoice(
        carrier="acme",
        gateway=strip,
        prefix="4930",
        rate_per_minute=0.015,
        increments=(30, 6),
        currency="EUR",
        dial="030123456",
    )
    assert choice.request_uri() == "sip:030123456@[2001:db8::1]:5060;transport=tcp"
    plain = snapshot(GATEWAYS[:1], [route("49", "acme", 0.1)])
    assert lookup("4930", plain)[0].request_uri() == "sip:4930@a1.example.net:5060"


def test_lookup_follows_live_changes() -> None:
    snap = snapshot(GATEWAYS, [route("49", "acme", 0.02), route("49", "bolt", 0.01)])
    key = lcr_key("bolt", lcr_chunk("49"))
    snap.apply(key, None)  # bolt's chunk deleted
    assert [c.carrier for c in lookup("4930", snap)] == ["acme"]
    snap.apply(gateway_key("a1"), None)
    assert lookup("4930", snap) == []
    snap.apply(gateway_key("a1"), encode_record(GATEWAYS[0]))
    cheaper = RouteChunk(carrier="acme", chunk=lcr_chunk("49"), routes=[route("49", "acme", 0.005)])
    snap.apply(lcr_key("acme", lcr_chunk("49")), encode_record(cheaper))
    assert ids(lookup("4930", snap)) == [("a1", "49", 0.005)]
    assert snap.route_count == 1


def _deck(size: int, seed: int) -> list[Route]:
    rng = random.Random(seed)
    prefixes: set[str] = set()
    while len(prefixes) < size:
        prefixes.add(
            str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=rng.randint(1, 7)))
        )
    carriers = ("acme", "bolt", "cheap")
    return [
        route(p, carriers[i % 3], round(rng.uniform(0.001, 0.5), 4))
        for i, p in enumerate(sorted(prefixes))
    ]


def _brute_force(number: str, routes: list[Route]) -> dict[str, tuple[str, float]]:
    best: dict[str, tuple[str, float]] = {}
    for r in routes:
        if number.startswith(r.prefix):
            held = best.get(r.carrier)
            if held is None or len(r.prefix) > len(held[0]):
                best[r.carrier] = (r.prefix, r.rate_per_minute)
    return best


def test_lookup_100k_prefixes_loads_fast_and_matches_brute_force() -> None:
    routes = _deck(100_000, seed=7)
    chunks: dict[tuple[str, int], list[Route]] = {}
    for r in routes:
        chunks.setdefault((r.carrier, lcr_chunk(r.prefix)), []).append(r)
    values = [
        (lcr_key(c, n), encode_record(RouteChunk(carrier=c, chunk=n, routes=rs)))
        for (c, n), rs in chunks.items()
    ]
    assert len(values) <= 3 * LCR_CHUNKS
    assert max(len(v) for _, v in values) < 1_000_000  # NATS max_payload

    started = time.perf_counter()
    snap = RoutingSnapshot()
    snap.load(values)
    for g in GATEWAYS:
        snap.apply(gateway_key(g.id), encode_record(g))
    loaded = time.perf_counter() - started
    assert snap.route_count == 100_000

    rng = random.Random(3)
    numbers = [r.prefix + "".join(rng.choices("0123456789", k=4)) for r in rng.sample(routes, 150)]
    numbers += ["".join(rng.choices("0123456789", k=11)) for _ in range(150)]
    for number in numbers:
        expected = _brute_force(number, routes)
        got = lookup(number, snap)
        assert {c.carrier: (c.prefix, c.rate_per_minute) for c in got} == expected
        rates = [c.rate_per_minute for c in got]
        assert rates == sorted(rates)

    started = time.perf_counter()
    for number in numbers * 10:
        lookup(number, snap)
    per_lookup = (time.perf_counter() - started) / (len(numbers) * 10)
    print(f"\n100k prefixes: load {loaded * 1000:.0f} ms, lookup {per_lookup * 1e6:.1f} us")


@pytest.mark.parametrize(
    ("duration", "increments", "billed"),
    [
        pytest.param(0, (60, 60), 0, id="unanswered"),
        pytest.param(-1, (1, 1), 0, id="negative"),
        pytest.param(1, (60, 60), 60, id="60/60-first-second"),
        pytest.param(60, (60, 60), 60, id="60/60-exact-minute"),
        pytest.param(61, (60, 60), 120, id="60/60-next-minute"),
        pytest.param(0.2, (1, 1), 1, id="1/1-fraction"),
        pytest.param(61.5, (1, 1), 62, id="1/1-rounds-up"),
        pytest.param(29, (30, 6), 30, id="30/6-inside-first"),
        pytest.param(30, (30, 6), 30, id="30/6-first-exact"),
        pytest.param(31, (30, 6), 36, id="30/6-one-step"),
        pytest.param(61, (30, 6), 66, id="30/6-six-steps"),
        pytest.param(66, (30, 6), 66, id="30/6-exact-step"),
        pytest.param(3600, (60, 1), 3600, id="60/1-hour"),
    ],
)
def test_billable_seconds(duration: float, increments: Increments, billed: int) -> None:
    assert billable_seconds(duration, increments) == billed


@pytest.mark.parametrize(
    ("duration", "rate", "increments", "price"),
    [
        pytest.param(61, 0.06, (60, 60), Decimal("0.12"), id="two-minutes"),
        pytest.param(31, 0.06, (30, 6), Decimal("0.036"), id="30/6"),
        pytest.param(90, 0.012, (1, 1), Decimal("0.018"), id="per-second"),
        pytest.param(0, 0.5, (60, 60), Decimal(0), id="unanswered"),
        pytest.param(60, Decimal("0.1"), (60, 60), Decimal("0.1"), id="decimal-rate"),
    ],
)
def test_cost(duration: float, rate: float, increments: Increments, price: Decimal) -> None:
    assert cost(duration, rate, increments) == price
