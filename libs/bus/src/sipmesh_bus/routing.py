"""Routing data in the ``routing`` KV bucket, health in ``health``, and the router's live snapshot.

The command line writes these records; every router replica watches the bucket
and folds each entry into a :class:`RoutingSnapshot` (``apply(key, value)``), so
a lookup never leaves memory and a change is live without a restart.

Key layout of the ``routing`` bucket (ids are subject tokens, ``[A-Za-z0-9_-]+``;
free text such as a domain is escaped with :func:`key_token`)::

    ds.<set>                      DispatcherSet (its destinations inline: sets are small)
    sel.prefix.<digits>           SetSelector: numbers starting with <digits> -> a set
    sel.range.<lo>-<hi>           SetSelector: numbers lo..hi (same length) -> a set
    sel.domain.<escaped domain>   SetSelector: Request-URI host -> a set
    gw.<id>                       Gateway
    lcr.<carrier>.<nn>            RouteChunk: the routes of one carrier whose prefix
                                  hashes to chunk nn (two hex digits, 64 chunks)
    peer.<name>                   Peer (trusted CIDRs)
    cfg.numbers                   NumberSettings (E.164 normalisation)

Why LCR routes are chunked by hash: a rate deck has about 100,000 prefixes.
One key per prefix would make every router replay 100,000 KV messages on start
(seconds in nats.py) and an import 100,000 puts; one key per carrier would hit
NATS's 1 MB message limit. A stable hash (CRC-32 of the prefix, modulo
:data:`LCR_CHUNKS`) spreads a carrier over at most 64 keys of even size whatever
the shape of its deck (a chunk by leading digits would put all of North
America under ``1``), and a writer finds a prefix's chunk without reading the
others. Routes inside a chunk are msgpack arrays (about 35 bytes each), so one
chunk holds some 25,000 routes and a carrier about 1.6 million.

The ``health`` bucket holds one :class:`Health` per probed address, keyed by
:func:`health_key` (``<transport>.<escaped host>.<port>``), plus the prober's
lease key :data:`PROBER_LEASE_KEY`.

Evolution rules are those of :mod:`sipmesh_bus.schema`: new fields last, with defaults.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Annotated, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta, Struct

from sipmesh_bus.schema import Port, Transport

__all__ = [
    "ALGORITHMS",
    "HEALTH_STALE_AFTER",
    "LCR_CHUNKS",
    "NUMBERS_KEY",
    "PROBER_LEASE_KEY",
    "Algorithm",
    "Destination",
    "DispatcherSet",
    "Gateway",
    "Health",
    "HealthSnapshot",
    "Increments",
    "NumberSettings",
    "Peer",
    "Route",
    "RouteChunk",
    "RoutingRecord",
    "RoutingSnapshot",
    "SelectorKind",
    "SetSelector",
    "decode_health",
    "decode_routing",
    "encode_record",
    "gateway_key",
    "health_key",
    "is_down",
    "is_id",
    "key_token",
    "lcr_chunk",
    "lcr_key",
    "peer_key",
    "selector_key",
    "set_key",
]

Algorithm: TypeAlias = Literal[
    "round_robin", "weighted", "hash_callid", "hash_from_user", "least_calls", "priority"
]
ALGORITHMS: Final[tuple[Algorithm, ...]] = (
    "round_robin",
    "weighted",
    "hash_callid",
    "hash_from_user",
    "least_calls",
    "priority",
)
SelectorKind: TypeAlias = Literal["prefix", "range", "domain"]
Increments: TypeAlias = tuple[Annotated[int, Meta(ge=1)], Annotated[int, Meta(ge=1)]]
#: Billing increments ``(first, next)`` in seconds: ``(60, 60)``, ``(1, 1)``, ``(30, 6)``.
Weight: TypeAlias = Annotated[int, Meta(ge=0)]

LCR_CHUNKS: Final = 64
#: Chunks per carrier; part of the key format: never change it on a live bucket.
NUMBERS_KEY: Final = "cfg.numbers"
PROBER_LEASE_KEY: Final = "lease.prober"
#: In the ``health`` bucket: which router replica probes (see sipmesh_router.prober).
HEALTH_STALE_AFTER: Final = 90.0
#: Seconds after which a health record no longer counts (its prober is gone):
#: a stale "down" must not black-hole a destination forever.

_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_DIGITS_RE: Final = re.compile(r"[0-9]+")
_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Destination(Struct, frozen=True, kw_only=True):
    """One member of a dispatcher set (a PBX of the pool)."""

    uri: str
    #: The Request-URI to send to, e.g. ``sip:10.0.0.5:5060``.
    host: str
    port: Port = 5060
    transport: Transport = "udp"
    weight: Weight = 1
    #: Relative share for ``weighted`` (and the hash algorithms); 0 takes no new calls.
    priority: int = 0
    #: Lower is tried first (``priority`` algorithm), as in DNS SRV (RFC 2782).
    probe: bool = True
    #: Send OPTIONS to it and skip it while it is down.

    @property
    def key(self) -> str:
        """Its :func:`health_key` (also the key of active-call counts)."""
        return health_key(self.transport, self.host, self.port)


class DispatcherSet(Struct, frozen=True, kw_only=True):
    """A pool of destinations and how to pick among them (key ``ds.<id>``)."""

    id: str
    algorithm: Algorithm = "round_robin"
    destinations: list[Destination] = []


class SetSelector(Struct, frozen=True, kw_only=True):
    """Which calls go to a set (key :func:`selector_key`).

    ``prefix``: ``match`` is leading digits of the dialled user part (as dialled,
    not normalised: PBX extensions are local numbers). ``range``: ``match`` is
    ``lo-hi``, two digit strings of one length; numbers of that length in the
    range match. ``domain``: ``match`` is the Request-URI host, lower-case.
    """

    kind: SelectorKind
    match: str
    set_id: str


class Gateway(Struct, frozen=True, kw_only=True):
    """A carrier's SIP entry point (key ``gw.<id>``)."""

    id: str
    carrier: str
    host: str
    port: Port = 5060
    transport: Transport = "udp"
    strip: Annotated[int, Meta(ge=0)] = 0
    #: Leading digits of the E.164 number to remove ...
    prefix: str = ""
    #: ... and what to put in front (a tech prefix such as ``"0049#"``).
    priority: int = 0
    #: Among the gateways of one carrier, lower first.
    probe: bool = True

    @property
    def key(self) -> str:
        """Its :func:`health_key`."""
        return health_key(self.transport, self.host, self.port)

    def dial(self, e164: str) -> str:
        """The number as this gateway wants it: ``prefix + e164[strip:]``."""
        return self.prefix + e164[self.strip :]


class Route(Struct, frozen=True, kw_only=True, array_like=True):
    """One rate-deck row: a prefix a carrier terminates, at a price.

    Stored as a msgpack array inside a :class:`RouteChunk` (field order is the
    format: append only).
    """

    prefix: str
    #: E.164 digits, without ``+``.
    carrier: str
    gateway: str | None = None
    #: Only this gateway of the carrier; None: all of its gateways.
    priority: int = 0
    #: Lower first; overrides price (0 for all leaves cheapest first).
    weight: Weight = 1
    #: Higher first among routes of equal priority and price.
    rate_per_minute: Annotated[float, Meta(ge=0)] = 0.0
    increments: Increments = (60, 60)
    currency: str = ""


class RouteChunk(Struct, frozen=True, kw_only=True):
    """The routes of one carrier in one hash chunk (key ``lcr.<carrier>.<nn>``)."""

    carrier: str
    chunk: Annotated[int, Meta(ge=0)]
    routes: list[Route] = []


class Peer(Struct, frozen=True, kw_only=True):
    """A trusted source (a PBX, a carrier) recognised by address (key ``peer.<name>``)."""

    name: str
    cidrs: list[str]
    #: Networks such as ``192.0.2.0/24`` or ``2001:db8::1/128``.
    topology_hiding: bool = False
    #: Hide internal addresses in calls to and from this peer.


class NumberSettings(Struct, frozen=True, kw_only=True):
    """How dialled numbers become E.164 (key ``cfg.numbers``)."""

    country_code: str = ""
    #: Digits, e.g. ``"49"``; empty: national numbers are refused.
    national_prefix: str = "0"
    international_prefix: str = "00"


class Health(Struct, frozen=True, kw_only=True):
    """A probed address's state (bucket ``health``, key :func:`health_key`)."""

    up: bool
    checked_at: float
    #: Wall-clock time of the last probe; readers ignore stale records.
    since: float
    #: When it last changed between up and down.
    failures: Annotated[int, Meta(ge=0)] = 0
    #: Consecutive failed probes.
    successes: Annotated[int, Meta(ge=0)] = 0
    #: Consecutive answered probes.
    status: int | None = None
    #: The last final status code; None for a timeout or a transport error.
    prober: str = ""
    #: The replica that wrote it.


RoutingRecord: TypeAlias = (
    DispatcherSet | SetSelector | Gateway | RouteChunk | Peer | NumberSettings
)

_encoder: Final = msgspec.msgpack.Encoder()
_decoders: Final[dict[str, msgspec.msgpack.Decoder[RoutingRecord]]] = {
    "ds": msgspec.msgpack.Decoder(DispatcherSet),
    "sel": msgspec.msgpack.Decoder(SetSelector),
    "gw": msgspec.msgpack.Decoder(Gateway),
    "lcr": msgspec.msgpack.Decoder(RouteChunk),
    "peer": msgspec.msgpack.Decoder(Peer),
    "cfg": msgspec.msgpack.Decoder(NumberSettings),
}
_health: Final = msgspec.msgpack.Decoder(Health)


def encode_record(record: RoutingRecord | Health) -> bytes:
    """Encode a routing or health record to msgpack, the stored value."""
    return _encoder.encode(record)


def decode_routing(key: str, value: bytes) -> RoutingRecord:
    """Decode the value of a ``routing`` key; the key's first token names the type.

    Raises:
        ValueError: an unknown key family, or a value that does not decode
            (``msgspec.DecodeError``/``ValidationError`` are ValueErrors).
    """
    family = key.partition(".")[0]
    decoder = _decoders.get(family)
    if decoder is None:
        raise ValueError(f"not a routing key: {key!r}")
    return decoder.decode(value)


def decode_health(value: bytes) -> Health:
    """Decode a ``health`` value. Raises ``msgspec.DecodeError``/``ValidationError``."""
    return _health.decode(value)


# --- keys -------------------------------------------------------------------


def is_id(text: str) -> bool:
    """True for a valid set, gateway, carrier or peer id (``[A-Za-z0-9_-]+``)."""
    return _ID_RE.fullmatch(text) is not None


def _checked_id(text: str, what: str) -> str:
    if not is_id(text):
        raise ValueError(f"bad {what} {text!r}: use letters, digits, '-' and '_'")
    return text


def key_token(text: str) -> str:
    """``text`` as one KV key token: octets other than ``[A-Za-z0-9_-]`` become ``=XX``.

    Raises:
        ValueError: ``text`` is empty.
    """
    if not text:
        raise ValueError("an empty key token")
    return "".join(chr(o) if o in _SAFE else f"={o:02X}" for o in text.encode("utf-8"))


def set_key(set_id: str) -> str:
    """``ds.<set_id>``. Raises ValueError for a bad id."""
    return f"ds.{_checked_id(set_id, 'set id')}"


def gateway_key(gateway_id: str) -> str:
    """``gw.<gateway_id>``. Raises ValueError for a bad id."""
    return f"gw.{_checked_id(gateway_id, 'gateway id')}"


def peer_key(name: str) -> str:
    """``peer.<name>``. Raises ValueError for a bad name."""
    return f"peer.{_checked_id(name, 'peer name')}"


def selector_key(kind: SelectorKind, match: str) -> str:
    """The key of a set selector; ``match`` is checked for its kind.

    Raises:
        ValueError: not digits (prefix), not ``lo-hi`` of one length with
            lo <= hi (range), or an empty domain.
    """
    if kind == "prefix":
        if not _DIGITS_RE.fullmatch(match):
            raise ValueError(f"bad number prefix {match!r}: digits only")
        return f"sel.prefix.{match}"
    if kind == "range":
        lo, dash, hi = match.partition("-")
        if not (dash and _DIGITS_RE.fullmatch(lo) and _DIGITS_RE.fullmatch(hi)):
            raise ValueError(f"bad number range {match!r}: expected LO-HI, e.g. 2000-2999")
        if len(lo) != len(hi) or lo > hi:
            raise ValueError(f"bad number range {match!r}: LO and HI need one length, LO <= HI")
        return f"sel.range.{lo}-{hi}"
    return f"sel.domain.{key_token(match.lower())}"


def lcr_chunk(prefix: str) -> int:
    """The chunk (0..63) a prefix's routes live in, the same for every carrier."""
    return zlib.crc32(prefix.encode("ascii")) % LCR_CHUNKS


def lcr_key(carrier: str, chunk: int) -> str:
    """``lcr.<carrier>.<nn>`` (``nn`` two hex digits). Raises ValueError for a bad id."""
    return f"lcr.{_checked_id(carrier, 'carrier id')}.{chunk:02x}"


def health_key(transport: str, host: str, port: int) -> str:
    """The ``health`` key of an address: ``<transport>.<escaped host>.<port>``."""
    return f"{transport}.{key_token(host.lower())}.{port}"


def is_down(
    health: Mapping[str, Health], key: str, now: float, *, stale_after: float = HEALTH_STALE_AFTER
) -> bool:
    """True when a fresh health record says the address ``key`` is down.

    No record, or one older than ``stale_after`` seconds, counts as up: only a
    live prober's verdict takes a destination out of service.
    """
    record = health.get(key)
    return record is not None and not record.up and now - record.checked_at <= stale_after


# --- the live snapshot --------------------------------------------------------


class RoutingSnapshot:
    """Everything in the ``routing`` bucket, indexed for lookups in memory.

    Feed it every entry of a KV watch, in order: ``apply(key, value)`` for a put
    and ``apply(key, None)`` for a delete or purge. Values that do not decode
    are ignored (and reported by the return value) so that one bad record never
    stops a router. Not thread-safe; one event loop owns it.

    The LCR index maps each prefix to ``{carrier: routes}``: a longest-prefix
    match tries the number's leading 15, 14, ... 1 digits, one dict look-up each.
    """

    def __init__(self) -> None:
        self.sets: dict[str, DispatcherSet] = {}
        self.gateways: dict[str, Gateway] = {}
        self.peers: dict[str, Peer] = {}
        self.numbers: NumberSettings = NumberSettings()
        self.selectors: dict[str, SetSelector] = {}
        #: By key.
        self.lcr: dict[str, dict[str, tuple[Route, ...]]] = {}
        #: Prefix -> carrier -> its routes with exactly that prefix.
        self.route_count = 0
        self._chunks: dict[str, RouteChunk] = {}
        self._by_prefix: dict[str, str] = {}
        self._by_range: dict[int, list[tuple[str, str, str]]] = {}
        self._by_domain: dict[str, str] = {}
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Peer]] = []
        self._gateways_by_carrier: dict[str, list[Gateway]] = {}

    def apply(self, key: str, value: bytes | None) -> bool:
        """Fold one watched entry in.

        Args:
            key: the KV key.
            value: the stored bytes; None (or empty) for a delete or purge.

        Returns:
            False when the entry was ignored: an unknown key or a value that
            does not decode (the previous record under that key is dropped).
        """
        if key.partition(".")[0] not in _decoders:
            return False
        record: RoutingRecord | None = None
        ok = True
        if value:
            try:
                record = decode_routing(key, value)
            except ValueError:
                ok = False
        self._remove(key)
        if record is not None:
            self._add(key, record)
        return ok

    def load(self, entries: Iterable[tuple[str, bytes | None]]) -> None:
        """:meth:`apply` each ``(key, value)`` in order."""
        for key, value in entries:
            self.apply(key, value)

    # -- lookups --

    def gateways_of(self, carrier: str) -> list[Gateway]:
        """The carrier's gateways, lower priority first, then by id."""
        return self._gateways_by_carrier.get(carrier, [])

    def set_for(self, number: str | None, domain: str | None) -> DispatcherSet | None:
        """The dispatcher set a call goes to, or None.

        The longest matching number prefix wins, then a range (the narrowest),
        then the Request-URI domain.

        Args:
            number: the dialled user part (None when there is none).
            domain: the Request-URI host.
        """
        set_id = self._number_set(number) if number else None
        if set_id is None and domain:
            set_id = self._by_domain.get(domain.lower())
        return self.sets.get(set_id) if set_id is not None else None

    def _number_set(self, number: str) -> str | None:
        for length in range(len(number), 0, -1):
            found = self._by_prefix.get(number[:length])
            if found is not None:
                return found
        best: tuple[int, str] | None = None
        if number.isdigit():
            for lo, hi, set_id in self._by_range.get(len(number), ()):
                if lo <= number <= hi:
                    width = int(hi) - int(lo)
                    if best is None or width < best[0]:
                        best = (width, set_id)
        return best[1] if best else None

    def peer_for(self, address: str) -> Peer | None:
        """The trusted peer whose most specific network holds ``address``, or None."""
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return None
        for network, peer in self._networks:
            if ip.version == network.version and ip in network:
                return peer
        return None

    # -- maintenance --

    def _remove(self, key: str) -> None:
        family = key.partition(".")[0]
        name = key.partition(".")[2]
        if family == "ds":
            self.sets.pop(name, None)
        elif family == "gw":
            if self.gateways.pop(name, None) is not None:
                self._index_gateways()
        elif family == "peer":
            if self.peers.pop(name, None) is not None:
                self._index_peers()
        elif family == "cfg" and key == NUMBERS_KEY:
            self.numbers = NumberSettings()
        elif family == "sel":
            if self.selectors.pop(key, None) is not None:
                self._index_selectors()
        elif family == "lcr":
            self._remove_chunk(key)

    def _add(self, key: str, record: RoutingRecord) -> None:
        match record:
            case DispatcherSet():
                self.sets[record.id] = record
            case Gateway():
                self.gateways[record.id] = record
                self._index_gateways()
            case Peer():
                self.peers[record.name] = record
                self._index_peers()
            case NumberSettings():
                if key == NUMBERS_KEY:
                    self.numbers = record
            case SetSelector():
                self.selectors[key] = record
                self._index_selectors()
            case RouteChunk():
                self._add_chunk(key, record)

    def _remove_chunk(self, key: str) -> None:
        old = self._chunks.pop(key, None)
        if old is None:
            return
        for route in old.routes:
            by_carrier = self.lcr.get(route.prefix)
            if by_carrier is None:
                continue
            by_carrier.pop(old.carrier, None)
            if not by_carrier:
                del self.lcr[route.prefix]
        self.route_count -= len(old.routes)

    def _add_chunk(self, key: str, chunk: RouteChunk) -> None:
        self._chunks[key] = chunk
        lcr = self.lcr
        carrier = chunk.carrier
        for route in chunk.routes:
            by_carrier = lcr.get(route.prefix)
            if by_carrier is None:
                lcr[route.prefix] = {carrier: (route,)}
            else:
                # The chunk's own earlier route with this prefix (another
                # gateway), never a stale one: _remove_chunk ran first.
                held = by_carrier.get(carrier)
                by_carrier[carrier] = (*held, route) if held else (route,)
        self.route_count += len(chunk.routes)

    def _index_gateways(self) -> None:
        by_carrier: dict[str, list[Gateway]] = {}
        for gw in sorted(self.gateways.values(), key=lambda g: (g.priority, g.id)):
            by_carrier.setdefault(gw.carrier, []).append(gw)
        self._gateways_by_carrier = by_carrier

    def _index_peers(self) -> None:
        networks = []
        for peer in self.peers.values():
            for cidr in peer.cidrs:
                try:
                    networks.append((ipaddress.ip_network(cidr, strict=False), peer))
                except ValueError:
                    continue
        networks.sort(key=lambda item: (-item[0].prefixlen, item[1].name))
        self._networks = networks

    def _index_selectors(self) -> None:
        self._by_prefix, self._by_range, self._by_domain = {}, {}, {}
        for sel in self.selectors.values():
            if sel.kind == "prefix":
                self._by_prefix[sel.match] = sel.set_id
            elif sel.kind == "range":
                lo, _, hi = sel.match.partition("-")
                self._by_range.setdefault(len(lo), []).append((lo, hi, sel.set_id))
            else:
                self._by_domain[sel.match.lower()] = sel.set_id


class HealthSnapshot:
    """The ``health`` bucket in memory: ``apply(key, value)`` from a KV watch.

    ``records`` maps :func:`health_key` to the last :class:`Health`; pass it as
    ``health`` to the dispatcher and to LCR.
    """

    def __init__(self) -> None:
        self.records: dict[str, Health] = {}

    def apply(self, key: str, value: bytes | None) -> bool:
        """Fold one watched entry in; False when ignored (the lease, a bad value)."""
        if key == PROBER_LEASE_KEY:
            return False
        if not value:
            self.records.pop(key, None)
            return True
        try:
            self.records[key] = decode_health(value)
        except ValueError:
            self.records.pop(key, None)
            return False
        return True

    def view(self) -> Mapping[str, Health]:
        """The records (a live mapping, not a copy)."""
        return self.records
