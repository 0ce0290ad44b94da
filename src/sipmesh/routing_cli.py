"""``sipmesh dispatcher|gateway|route|peer``: provisioning of the ``routing`` bucket.

Each command reads and writes records of :mod:`sipmesh_bus.routing` with
compare-and-set (a concurrent change is re-read and re-applied), so two
operators or an import and an ``add`` never lose each other's writes. Routers
watch the bucket: every change is live at once, without restarts.

``cli.py`` registers the parsers (:func:`add_parsers`) and runs each command
with the bucket open; input problems raise ``users.InputError`` (exit 2), and
anything missing raises :class:`RoutingError` (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import ipaddress
import re
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from sipmesh._console import format_table
from sipmesh.users import InputError, canonical_domain
from sipmesh_bus.kvlist import live_entries
from sipmesh_bus.routing import (
    ALGORITHMS,
    NUMBERS_KEY,
    Destination,
    DispatcherSet,
    Gateway,
    Increments,
    NumberSettings,
    Peer,
    Route,
    RouteChunk,
    RoutingRecord,
    SelectorKind,
    SetSelector,
    decode_routing,
    encode_record,
    gateway_key,
    is_id,
    lcr_chunk,
    lcr_key,
    peer_key,
    selector_key,
    set_key,
)

__all__ = [
    "Command",
    "RoutingError",
    "add_parsers",
    "parse_destination",
    "parse_increments",
    "parse_rate_deck",
]

Command = Callable[[argparse.Namespace, KeyValue], Coroutine[Any, Any, None]]
Runner = Callable[[Command], Callable[[argparse.Namespace], None]]
R = TypeVar("R", bound=msgspec.Struct)

_CAS_TRIES: Final = 20
_TRANSPORTS: Final = ("udp", "tcp", "tls", "ws", "wss")
_INCREMENTS_RE: Final = re.compile(r"([0-9]+)/([0-9]+)")
_PREFIX_RE: Final = re.compile(r"\+?([0-9]{1,15})")


class RoutingError(Exception):
    """Something named on the command line is not there (exit ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --- pure parsing -----------------------------------------------------------


def _id(text: str, what: str) -> str:
    if not is_id(text):
        raise InputError(f"bad {what} {text!r}: use letters, digits, '-' and '_'")
    return text


def _prefix(text: str) -> str:
    m = _PREFIX_RE.fullmatch(text.strip())
    if m is None:
        raise InputError(f"bad prefix {text!r}: 1 to 15 digits, optionally after '+'")
    return m.group(1)


def parse_increments(text: str) -> Increments:
    """``"60/60"`` -> ``(60, 60)``; a single ``"1"`` means ``1/1``.

    Raises:
        InputError: not ``FIRST/NEXT`` in whole seconds of at least 1.
    """
    m = _INCREMENTS_RE.fullmatch(text.strip())
    first, step = (m.group(1), m.group(2)) if m else (text.strip(), text.strip())
    if not (first.isdigit() and step.isdigit()) or int(first) < 1 or int(step) < 1:
        raise InputError(f"bad billing increments {text!r}: expected FIRST/NEXT such as 60/60")
    return int(first), int(step)


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not rate >= 0 or rate == float("inf"):
        raise InputError(f"bad rate {text!r}: a price per minute such as 0.012")
    return rate


def parse_destination(
    text: str, *, weight: int = 1, priority: int = 0, probe: bool = True
) -> Destination:
    """``sip:host[:port][;transport=t]``, ``host[:port]`` or ``[v6][:port]`` as a Destination.

    Raises:
        InputError: no host, a bad port or an unknown transport.
    """
    rest = text.strip().removeprefix("sip:")
    transport = "udp"
    rest, _, params = rest.partition(";")
    for param in params.split(";") if params else ():
        name, _, value = param.partition("=")
        if name.lower() == "transport":
            transport = value.lower()
    if transport not in _TRANSPORTS:
        raise InputError(f"bad transport in {text!r}: one of {', '.join(_TRANSPORTS)}")
    if rest.startswith("["):
        host, _, port_text = rest[1:].partition("]")
        port_text = port_text.removeprefix(":")
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host, port_text = rest, ""
    if not host or "@" in host:
        raise InputError(f"bad destination {text!r}: expected sip:HOST[:PORT][;transport=T]")
    if port_text and not (port_text.isdigit() and 0 < int(port_text) <= 65535):
        raise InputError(f"bad port in {text!r}")
    port = int(port_text) if port_text else 5060
    shown = f"[{host}]" if ":" in host else host
    uri = f"sip:{shown}:{port}" + ("" if transport == "udp" else f";transport={transport}")
    return Destination(
        uri=uri,
        host=host.lower(),
        port=port,
        transport=transport,  # type: ignore[arg-type]
        weight=weight,
        priority=priority,
        probe=probe,
    )


def parse_rate_deck(text: str, *, source: str, currency: str = "") -> list[Route]:
    """Parse a whole rate deck CSV; nothing is returned unless every line is good.

    Lines: ``prefix,carrier,rate[,increments][,priority]`` (increments such as
    ``60/60``, default 60/60; priority default 0), after an optional header line
    starting with ``prefix``. Blank lines and ``#`` comments are skipped.

    Raises:
        InputError: ``<source>:<line>: <problem>`` for the first bad line, or a
            carrier's prefix that appears twice.
    """
    rows: list[Route] = []
    seen: dict[tuple[str, str], int] = {}
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    for number, fields in enumerate(csv.reader(lines), 1):
        if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
            continue
        if number == 1 and fields[0].strip().lower() == "prefix":
            continue
        try:
            route = _deck_row([f.strip() for f in fields], currency)
        except InputError as exc:
            raise InputError(f"{source}:{number}: {exc}") from None
        key = (route.carrier, route.prefix)
        if key in seen:
            raise InputError(
                f"{source}:{number}: prefix {route.prefix} of {route.carrier} "
                f"is already on line {seen[key]}"
            )
        seen[key] = number
        rows.append(route)
    return rows


def _deck_row(fields: list[str], currency: str) -> Route:
    if not 3 <= len(fields) <= 5:
        raise InputError("expected prefix,carrier,rate[,increments][,priority]")
    increments = parse_increments(fields[3]) if len(fields) > 3 and fields[3] else (60, 60)
    priority = 0
    if len(fields) > 4 and fields[4]:
        try:
            priority = int(fields[4])
        except ValueError:
            raise InputError(f"bad priority {fields[4]!r}: a whole number") from None
    return Route(
        prefix=_prefix(fields[0]),
        carrier=_id(fields[1], "carrier id"),
        rate_per_minute=_rate(fields[2]),
        increments=increments,
        priority=priority,
        currency=currency,
    )


# --- the bucket -------------------------------------------------------------


async def _read(bucket: KeyValue, pattern: str) -> list[tuple[str, RoutingRecord]]:
    """Every record under ``pattern`` (``ds.*``, ``lcr.>`` ...); bad values skipped."""
    found: list[tuple[str, RoutingRecord]] = []
    for key, entry in (await live_entries(bucket, pattern)).items():
        if entry.value:
            try:
                found.append((key, decode_routing(key, entry.value)))
            except ValueError:
                continue
    return sorted(found, key=lambda kv: kv[0])


async def _modify(
    bucket: KeyValue,
    key: str,
    kind: type[R],
    change: Callable[[R | None], R | None],
) -> tuple[R | None, R | None]:
    """Compare-and-set ``key``: ``change(old) -> new`` (None deletes), retried on a race.

    Returns:
        ``(old, new)``.
    """
    for _ in range(_CAS_TRIES):
        try:
            entry = await bucket.get(key)
        except KeyNotFoundError:
            old, revision = None, None
        else:
            old = msgspec.msgpack.decode(entry.value, type=kind) if entry.value else None
            revision = entry.revision
        new = change(old)
        try:
            if new is None:
                if old is not None:
                    await bucket.delete(key, last=revision)
            elif revision is None:
                await bucket.create(key, encode_record(new))  # type: ignore[arg-type]
            else:
                await bucket.update(key, encode_record(new), last=revision)  # type: ignore[arg-type]
        except KeyWrongLastSequenceError:
            continue
        return old, new
    raise RoutingError(f"{key} keeps changing under us; try again")


# --- dispatcher ---------------------------------------------------------------


def _selectors_of(args: argparse.Namespace) -> list[tuple[SelectorKind, str]]:
    chosen: list[tuple[SelectorKind, str]] = []
    for kind in ("prefix", "range", "domain"):
        for match in getattr(args, kind) or ():
            value = canonical_domain(match) if kind == "domain" else match
            try:
                selector_key(kind, value)
            except ValueError as exc:
                raise InputError(str(exc)) from None
            chosen.append((kind, value))
    return chosen


async def _dispatcher_add(args: argparse.Namespace, bucket: KeyValue) -> None:
    set_id = _id(args.set, "set id")
    dest = (
        parse_destination(args.dest, weight=args.weight, priority=args.priority, probe=args.probe)
        if args.dest
        else None
    )

    def change(old: DispatcherSet | None) -> DispatcherSet:
        algorithm = args.algorithm or (old.algorithm if old else "round_robin")
        dests = [d for d in (old.destinations if old else []) if dest is None or d.key != dest.key]
        return DispatcherSet(
            id=set_id, algorithm=algorithm, destinations=dests + ([dest] if dest else [])
        )

    old, new = await _modify(bucket, set_key(set_id), DispatcherSet, change)
    assert new is not None
    said = [f"{'updated' if old else 'added'} set {set_id} ({new.algorithm})"]
    if dest is not None:
        said.append(f"destination {dest.uri}")
    for kind, match in _selectors_of(args):
        sel = SetSelector(kind=kind, match=match, set_id=set_id)
        await bucket.put(selector_key(kind, match), encode_record(sel))
        said.append(f"{kind} {match}")
    print(", ".join(said))


async def _dispatcher_del(args: argparse.Namespace, bucket: KeyValue) -> None:
    set_id = _id(args.set, "set id")
    selectors = _selectors_of(args)
    if args.dest:
        gone = parse_destination(args.dest)

        def drop(old: DispatcherSet | None) -> DispatcherSet | None:
            if old is None or all(d.key != gone.key for d in old.destinations):
                raise RoutingError(f"set {set_id} has no destination {gone.uri}")
            kept = [d for d in old.destinations if d.key != gone.key]
            return DispatcherSet(id=set_id, algorithm=old.algorithm, destinations=kept)

        await _modify(bucket, set_key(set_id), DispatcherSet, drop)
        print(f"deleted destination {gone.uri} from set {set_id}")
        return
    if selectors:
        for kind, match in selectors:
            await _delete_selector(bucket, kind, match, set_id)
        print(f"deleted {', '.join(f'{k} {m}' for k, m in selectors)} of set {set_id}")
        return
    old, _ = await _modify(bucket, set_key(set_id), DispatcherSet, lambda _old: None)
    if old is None:
        raise RoutingError(f"no dispatcher set {set_id}")
    for key, record in await _read(bucket, "sel.>"):
        if isinstance(record, SetSelector) and record.set_id == set_id:
            await bucket.delete(key)
    print(f"deleted set {set_id}")


async def _delete_selector(bucket: KeyValue, kind: SelectorKind, match: str, set_id: str) -> None:
    def drop(old: SetSelector | None) -> None:
        if old is None or old.set_id != set_id:
            raise RoutingError(f"set {set_id} has no {kind} {match}")

    await _modify(bucket, selector_key(kind, match), SetSelector, drop)


async def _dispatcher_list(args: argparse.Namespace, bucket: KeyValue) -> None:
    sets = [r for _, r in await _read(bucket, "ds.*") if isinstance(r, DispatcherSet)]
    selectors = [r for _, r in await _read(bucket, "sel.>") if isinstance(r, SetSelector)]
    if not sets:
        print("no dispatcher sets", file=sys.stderr)
        return
    rows = [
        (ds.id, ds.algorithm, d.uri, str(d.weight), str(d.priority), "yes" if d.probe else "no")
        for ds in sets
        for d in ds.destinations or [Destination(uri="-", host="-", weight=0, probe=False)]
    ]
    print(format_table(("SET", "ALGORITHM", "DESTINATION", "WEIGHT", "PRIORITY", "PROBE"), rows))
    if selectors:
        print()
        sel_rows = [(s.kind, s.match, s.set_id) for s in selectors]
        print(format_table(("MATCH", "VALUE", "SET"), sel_rows))


# --- gateways ---------------------------------------------------------------


async def _gateway_add(args: argparse.Namespace, bucket: KeyValue) -> None:
    dest = parse_destination(args.host if args.port is None else f"{args.host}:{args.port}")
    gw = Gateway(
        id=_id(args.id, "gateway id"),
        carrier=_id(args.carrier, "carrier id"),
        host=dest.host,
        port=dest.port,
        transport=args.transport or dest.transport,
        strip=args.strip,
        prefix=args.add_prefix,
        priority=args.priority,
        probe=args.probe,
    )
    old, _ = await _modify(bucket, gateway_key(gw.id), Gateway, lambda _old: gw)
    print(f"{'updated' if old else 'added'} gateway {gw.id} ({gw.carrier}, {gw.host}:{gw.port})")


async def _gateway_del(args: argparse.Namespace, bucket: KeyValue) -> None:
    old, _ = await _modify(bucket, gateway_key(_id(args.id, "gateway id")), Gateway, lambda _: None)
    if old is None:
        raise RoutingError(f"no gateway {args.id}")
    print(f"deleted gateway {args.id}")


async def _gateway_list(args: argparse.Namespace, bucket: KeyValue) -> None:
    gws = [r for _, r in await _read(bucket, "gw.*") if isinstance(r, Gateway)]
    if not gws:
        print("no gateways", file=sys.stderr)
        return
    rows = [
        (g.id, g.carrier, f"{g.host}:{g.port}", g.transport, str(g.strip), g.prefix or "-",
         str(g.priority), "yes" if g.probe else "no")
        for g in gws
    ]  # fmt: skip
    headers = ("GATEWAY", "CARRIER", "ADDRESS", "TRANSPORT", "STRIP", "ADD", "PRIORITY", "PROBE")
    print(format_table(headers, rows))


# --- routes -----------------------------------------------------------------


def _merged(old: RouteChunk | None, carrier: str, n: int, routes: list[Route]) -> RouteChunk:
    """``old``'s routes with ``routes`` added (a route of the same prefix and gateway replaced)."""
    mine = {(r.prefix, r.gateway): r for r in (old.routes if old else [])}
    mine.update(((r.prefix, r.gateway), r) for r in routes)
    return RouteChunk(carrier=carrier, chunk=n, routes=sorted(mine.values(), key=_route_order))


def _route_order(route: Route) -> tuple[str, str]:
    return route.prefix, route.gateway or ""


async def _put_routes(bucket: KeyValue, routes: list[Route]) -> int:
    """Merge routes into their chunks, all chunks at once. Returns the chunks written."""
    grouped: dict[tuple[str, int], list[Route]] = {}
    for route in routes:
        grouped.setdefault((route.carrier, lcr_chunk(route.prefix)), []).append(route)

    async def one(carrier: str, n: int, rs: list[Route]) -> None:
        await _modify(
            bucket, lcr_key(carrier, n), RouteChunk, lambda old: _merged(old, carrier, n, rs)
        )

    await asyncio.gather(*(one(c, n, rs) for (c, n), rs in grouped.items()))
    return len(grouped)


async def _route_add(args: argparse.Namespace, bucket: KeyValue) -> None:
    route = Route(
        prefix=_prefix(args.prefix),
        carrier=_id(args.carrier, "carrier id"),
        gateway=_id(args.gateway, "gateway id") if args.gateway else None,
        priority=args.priority,
        weight=args.weight,
        rate_per_minute=_rate(args.rate),
        increments=parse_increments(args.increments),
        currency=args.currency,
    )
    await _put_routes(bucket, [route])
    via = f" via {route.gateway}" if route.gateway else ""
    print(f"route {route.prefix} -> {route.carrier}{via} at {args.rate}/min")


async def _route_del(args: argparse.Namespace, bucket: KeyValue) -> None:
    prefix, carrier = _prefix(args.prefix), _id(args.carrier, "carrier id")
    n = lcr_chunk(prefix)

    def drop(old: RouteChunk | None) -> RouteChunk | None:
        routes = old.routes if old else []
        kept = [
            r
            for r in routes
            if r.prefix != prefix or (args.gateway is not None and r.gateway != args.gateway)
        ]
        if len(kept) == len(routes):
            raise RoutingError(f"no route {prefix} of carrier {carrier}")
        return RouteChunk(carrier=carrier, chunk=n, routes=kept) if kept else None

    await _modify(bucket, lcr_key(carrier, n), RouteChunk, drop)
    print(f"deleted route {prefix} of carrier {carrier}")


async def _route_list(args: argparse.Namespace, bucket: KeyValue) -> None:
    carrier = _id(args.carrier, "carrier id") if args.carrier else None
    prefix = _prefix(args.prefix) if args.prefix else ""
    chunks = await _read(bucket, f"lcr.{carrier}.*" if carrier else "lcr.>")
    routes = sorted(
        (r for _, c in chunks if isinstance(c, RouteChunk) for r in c.routes
         if r.prefix.startswith(prefix)),
        key=lambda r: (r.prefix, r.priority, r.rate_per_minute, r.carrier),
    )  # fmt: skip
    if not routes:
        print("no routes", file=sys.stderr)
        return
    rows = [
        (r.prefix, r.carrier, r.gateway or "*", f"{r.rate_per_minute:g}", r.currency or "-",
         f"{r.increments[0]}/{r.increments[1]}", str(r.priority), str(r.weight))
        for r in routes[: args.limit or None]
    ]  # fmt: skip
    headers = ("PREFIX", "CARRIER", "GATEWAY", "RATE", "CURRENCY", "BILLING", "PRIORITY", "WEIGHT")
    print(format_table(headers, rows))
    if args.limit and len(routes) > args.limit:
        print(f"... {len(routes) - args.limit} more (--limit 0 shows all)", file=sys.stderr)


async def _route_import(args: argparse.Namespace, bucket: KeyValue) -> None:
    path: Path = args.file
    source = "stdin" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if source == "stdin" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutingError(f"cannot read {path}: {exc.strerror or exc}", code=2) from None
    except UnicodeDecodeError:
        raise RoutingError(f"{path}: not UTF-8 text", code=2) from None
    routes = parse_rate_deck(text, source=source, currency=args.currency)
    if not routes:
        raise RoutingError(f"{source}: no routes in it", code=2)
    started = time.monotonic()
    chunks = await _put_routes(bucket, routes)
    took = time.monotonic() - started
    carriers = len({r.carrier for r in routes})
    print(
        f"imported {len(routes)} routes of {carriers} carriers from {source} "
        f"({chunks} chunks) in {took:.1f} s"
    )


async def _route_numbering(args: argparse.Namespace, bucket: KeyValue) -> None:
    def change(old: NumberSettings | None) -> NumberSettings:
        base = old or NumberSettings()
        values = {
            "country_code": args.country_code,
            "national_prefix": args.national_prefix,
            "international_prefix": args.international_prefix,
        }
        for name, value in values.items():
            if value is not None and value and not value.isdigit():
                raise InputError(f"bad {name.replace('_', ' ')} {value!r}: digits only")
        return msgspec.structs.replace(base, **{k: v for k, v in values.items() if v is not None})

    _, new = await _modify(bucket, NUMBERS_KEY, NumberSettings, change)
    assert new is not None
    print(
        f"country code {new.country_code or '-'}, national prefix {new.national_prefix or '-'}, "
        f"international prefix {new.international_prefix or '-'}"
    )


# --- peers ------------------------------------------------------------------


async def _peer_add(args: argparse.Namespace, bucket: KeyValue) -> None:
    cidrs = []
    for cidr in args.cidr:
        try:
            cidrs.append(str(ipaddress.ip_network(cidr, strict=False)))
        except ValueError:
            raise InputError(f"bad network {cidr!r}: expected an address or CIDR") from None
    peer = Peer(name=_id(args.name, "peer name"), cidrs=cidrs, topology_hiding=args.hide)
    old, _ = await _modify(bucket, peer_key(peer.name), Peer, lambda _old: peer)
    print(f"{'updated' if old else 'added'} peer {peer.name} ({', '.join(cidrs)})")


async def _peer_del(args: argparse.Namespace, bucket: KeyValue) -> None:
    old, _ = await _modify(bucket, peer_key(_id(args.name, "peer name")), Peer, lambda _: None)
    if old is None:
        raise RoutingError(f"no peer {args.name}")
    print(f"deleted peer {args.name}")


async def _peer_list(args: argparse.Namespace, bucket: KeyValue) -> None:
    peers = [r for _, r in await _read(bucket, "peer.*") if isinstance(r, Peer)]
    if not peers:
        print("no peers", file=sys.stderr)
        return
    rows = [(p.name, ", ".join(p.cidrs), "yes" if p.topology_hiding else "no") for p in peers]
    print(format_table(("PEER", "NETWORKS", "TOPOLOGY HIDING"), rows))


# --- parsers ----------------------------------------------------------------


def _int(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}: {value}")
        return value

    return parse


def _selector_options(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "--prefix", action="append", metavar="DIGITS", help=f"{verb} numbers starting with DIGITS"
    )
    parser.add_argument(
        "--range", action="append", metavar="LO-HI", help=f"{verb} numbers LO..HI (one length)"
    )
    parser.add_argument(
        "--domain", action="append", metavar="DOMAIN", help=f"{verb} calls to this domain"
    )


def add_parsers(sub: Any, common: argparse.ArgumentParser, run: Runner) -> None:
    """Add ``dispatcher``, ``gateway``, ``route`` and ``peer`` to the ``sipmesh`` parser.

    Args:
        sub: the top-level subparsers action.
        common: the parent parser with ``--data-dir`` and ``--nats-url``.
        run: wraps a :data:`Command` into an argparse handler (opens the bucket).
    """
    _add_dispatcher(sub, common, run)
    _add_gateway(sub, common, run)
    _add_route(sub, common, run)
    _add_peer(sub, common, run)


def _add_dispatcher(sub: Any, common: argparse.ArgumentParser, run: Runner) -> None:
    ds = sub.add_parser("dispatcher", help="dispatcher sets: PBX pools and what goes to them")
    ds_sub = ds.add_subparsers(dest="dispatcher_command", required=True, metavar="ACTION")
    add = ds_sub.add_parser(
        "add",
        parents=[common],
        help="create a set, set its algorithm, add a destination, map numbers or domains",
        description="Create or change dispatcher set SET. With --dest, add (or replace) a "
        "destination; with --prefix/--range/--domain, send those calls to the set.",
    )
    add.add_argument("set", metavar="SET", help="the set id")
    add.add_argument("--algorithm", choices=ALGORITHMS, help="default: round_robin")
    add.add_argument("--dest", metavar="URI", help="sip:HOST[:PORT][;transport=T] or HOST[:PORT]")
    add.add_argument("--weight", type=_int(0), default=1, help="share of calls (default 1)")
    add.add_argument("--priority", type=_int(0), default=0, help="lower first (default 0)")
    add.add_argument("--no-probe", dest="probe", action="store_false", help="no OPTIONS probing")
    _selector_options(add, "send")
    add.set_defaults(run=run(_dispatcher_add))

    rm = ds_sub.add_parser(
        "del",
        parents=[common],
        help="delete a set (with its mappings), one destination, or some mappings",
    )
    rm.add_argument("set", metavar="SET", help="the set id")
    rm.add_argument("--dest", metavar="URI", help="only this destination")
    _selector_options(rm, "stop sending")
    rm.set_defaults(run=run(_dispatcher_del))

    ls = ds_sub.add_parser("list", parents=[common], help="list sets and their mappings")
    ls.set_defaults(run=run(_dispatcher_list))


def _add_gateway(sub: Any, common: argparse.ArgumentParser, run: Runner) -> None:
    gw = sub.add_parser("gateway", help="carrier gateways for least cost routing")
    gw_sub = gw.add_subparsers(dest="gateway_command", required=True, metavar="ACTION")
    add = gw_sub.add_parser("add", parents=[common], help="add or replace a gateway")
    add.add_argument("id", metavar="ID", help="the gateway id")
    add.add_argument("--carrier", required=True, help="the carrier it belongs to")
    add.add_argument("--host", required=True, help="HOST or HOST:PORT")
    add.add_argument("--port", type=_int(1), help="default 5060")
    add.add_argument("--transport", choices=_TRANSPORTS, help="default udp")
    add.add_argument("--strip", type=_int(0), default=0, help="leading digits to remove")
    add.add_argument("--add-prefix", default="", metavar="DIGITS", help="digits to put in front")
    add.add_argument("--priority", type=int, default=0, help="among the carrier's, lower first")
    add.add_argument("--no-probe", dest="probe", action="store_false", help="no OPTIONS probing")
    add.set_defaults(run=run(_gateway_add))
    rm = gw_sub.add_parser("del", parents=[common], help="delete a gateway")
    rm.add_argument("id", metavar="ID")
    rm.set_defaults(run=run(_gateway_del))
    gw_sub.add_parser("list", parents=[common], help="list gateways").set_defaults(
        run=run(_gateway_list)
    )


def _add_route(sub: Any, common: argparse.ArgumentParser, run: Runner) -> None:
    route = sub.add_parser("route", help="least cost routing: prefixes, carriers, rates")
    r_sub = route.add_subparsers(dest="route_command", required=True, metavar="ACTION")
    add = r_sub.add_parser("add", parents=[common], help="add or replace a carrier's prefix")
    add.add_argument("prefix", metavar="PREFIX", help="E.164 digits, e.g. 4930 or +4930")
    add.add_argument("--carrier", required=True)
    add.add_argument("--gateway", help="only this gateway of the carrier (default: all)")
    add.add_argument("--rate", required=True, help="price per minute, e.g. 0.012")
    add.add_argument("--increments", default="60/60", help="billing FIRST/NEXT (default 60/60)")
    add.add_argument("--priority", type=int, default=0, help="lower first; 0: by price")
    add.add_argument("--weight", type=_int(0), default=1, help="higher first among equals")
    add.add_argument("--currency", default="", help="e.g. EUR")
    add.set_defaults(run=run(_route_add))

    rm = r_sub.add_parser("del", parents=[common], help="delete a carrier's prefix")
    rm.add_argument("prefix", metavar="PREFIX")
    rm.add_argument("--carrier", required=True)
    rm.add_argument("--gateway", help="only the route pinned to this gateway")
    rm.set_defaults(run=run(_route_del))

    ls = r_sub.add_parser("list", parents=[common], help="list routes")
    ls.add_argument("--carrier", help="only this carrier")
    ls.add_argument("--prefix", help="only prefixes starting with these digits")
    ls.add_argument("--limit", type=_int(0), default=1000, help="rows shown (0: all)")
    ls.set_defaults(run=run(_route_list))

    imp = r_sub.add_parser(
        "import",
        parents=[common],
        help="add or update routes from a rate deck CSV",
        description="Lines: prefix,carrier,rate[,increments][,priority], after an optional "
        "header line starting with 'prefix'. The whole file is checked first: one bad line "
        "imports nothing and is named with its line number (exit 2). Importing again "
        "replaces each carrier's rate for each prefix.",
    )
    imp.add_argument("file", metavar="FILE", type=Path, help="the CSV ('-': stdin)")
    imp.add_argument("--currency", default="", help="the deck's currency, e.g. USD")
    imp.set_defaults(run=run(_route_import))

    num = r_sub.add_parser("numbering", parents=[common], help="how dialled numbers become E.164")
    num.add_argument("--country-code", help="e.g. 49")
    num.add_argument("--national-prefix", help="default 0")
    num.add_argument("--international-prefix", help="default 00")
    num.set_defaults(run=run(_route_numbering))


def _add_peer(sub: Any, common: argparse.ArgumentParser, run: Runner) -> None:
    peer = sub.add_parser("peer", help="trusted peers (PBXes, carriers) by source network")
    p_sub = peer.add_subparsers(dest="peer_command", required=True, metavar="ACTION")
    add = p_sub.add_parser("add", parents=[common], help="add or replace a trusted peer")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--cidr", action="append", required=True, help="ADDRESS[/BITS], repeatable")
    add.add_argument("--topology-hiding", dest="hide", action="store_true")
    add.set_defaults(run=run(_peer_add))
    rm = p_sub.add_parser("del", parents=[common], help="delete a peer")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(run=run(_peer_del))
    p_sub.add_parser("list", parents=[common], help="list peers").set_defaults(run=run(_peer_list))
