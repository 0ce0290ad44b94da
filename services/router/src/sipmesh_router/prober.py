"""Active OPTIONS probing of dispatcher destinations and gateways, results in KV ``health``.

Runs as a task inside the router process (:meth:`Prober.run`). Each round it
sends OPTIONS to every address that a dispatcher set or a gateway marks
``probe``, folds the answer into that address's :class:`Health` with up/down
thresholds (:func:`next_health`: ``down_after`` consecutive failures take it
down, ``up_after`` consecutive answers bring it back), and writes the record
to the ``health`` bucket under :func:`sipmesh_bus.routing.health_key`. Routers
watch that bucket and skip what is down.

One prober at a time: every replica runs the task, but a round only probes
while this replica holds the lease key ``lease.prober`` of the ``health``
bucket (:class:`KvLease`: compare-and-set on the key, the holder renews it each
round, another replica takes it over once its expiry time has passed). So a
pool of routers sends one OPTIONS per destination per interval, not one per
replica, and a dead prober is replaced within ``lease_ttl`` seconds.

Deviation from the design (ARCHITECTURE.md: only the edge touches SIP
sockets): the edge has no request/reply way yet for a service to originate a
request and hear its response (``sip.edge.<id>.send`` is fire-and-forget, and
a response to a request the edge did not send is dropped as stray). So the
transport is an injected :class:`ProbeTransport`, and :class:`UdpProbeTransport`
sends OPTIONS from the router process itself, on an ephemeral UDP port. That is
acceptable for health probes (no dialog, no NAT binding to keep); swap in an
edge-backed transport once the edge offers one. Only UDP destinations are
probed that way: the others are left unprobed (no health record: up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from sipmesh_bus.routing import (
    PROBER_LEASE_KEY,
    Health,
    RoutingSnapshot,
    encode_record,
)
from sipmesh_bus.schema import Transport
from sipmsg import ParseError, Response, parse

__all__ = [
    "HealthStore",
    "KvLease",
    "Lease",
    "ProbeTarget",
    "ProbeTransport",
    "Prober",
    "ProberConfig",
    "UdpProbeTransport",
    "is_alive",
    "next_health",
    "probe_targets",
]

log = logging.getLogger(__name__)

T1: Final = 0.5
#: RFC 3261 §17.1.2.2: "If timer E fires while still in this state, the timer is
#: reset, but this time with a value of MIN(2*T1, T2)".
T2: Final = 4.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeTarget:
    """One address to probe (several sets and gateways may share it)."""

    key: str
    #: Its health key.
    uri: str
    #: The Request-URI of the OPTIONS.
    host: str
    port: int
    transport: Transport


@dataclass(frozen=True, slots=True, kw_only=True)
class ProberConfig:
    """How often and how strictly to probe."""

    interval: float = 10.0
    #: Seconds between rounds.
    timeout: float = 2.0
    #: Seconds to wait for a final response (retransmitting on Timer E).
    down_after: int = 3
    #: Consecutive failures before an up address is marked down.
    up_after: int = 2
    #: Consecutive answers before a down address is marked up.
    concurrency: int = 64
    #: Probes in flight at once.
    lease_ttl: float = 30.0
    #: Seconds another replica waits before taking over a silent prober's lease.


class ProbeTransport(Protocol):
    """Sends one OPTIONS and reports the final status (None: no answer)."""

    transports: frozenset[str]
    #: The target transports it can reach.

    async def options(self, target: ProbeTarget, *, timeout: float) -> int | None:
        """The final response's status code, or None on timeout or transport error."""
        ...


class HealthStore(Protocol):
    """Where records go (a ``nats.js.kv.KeyValue`` of bucket ``health`` fits)."""

    async def put(self, key: str, value: bytes) -> int:
        """Store ``value`` under ``key``."""
        ...


class Lease(Protocol):
    """Tells whether this replica is the one that probes now."""

    async def acquire(self, now: float) -> bool:
        """Take or renew the lease; True while held."""
        ...


def probe_targets(snapshot: RoutingSnapshot) -> list[ProbeTarget]:
    """Every address with ``probe`` set, in any set or gateway, once, by key."""
    found: dict[str, ProbeTarget] = {}
    for ds in snapshot.sets.values():
        for d in ds.destinations:
            if d.probe:
                found.setdefault(
                    d.key,
                    ProbeTarget(
                        key=d.key, uri=d.uri, host=d.host, port=d.port, transport=d.transport
                    ),
                )
    for gw in snapshot.gateways.values():
        if gw.probe:
            host = f"[{gw.host}]" if ":" in gw.host else gw.host
            uri = f"sip:{host}:{gw.port}"
            found.setdefault(
                gw.key,
                ProbeTarget(
                    key=gw.key, uri=uri, host=gw.host, port=gw.port, transport=gw.transport
                ),
            )
    return [found[k] for k in sorted(found)]


def is_alive(status: int | None) -> bool:
    """Whether a final status proves the peer alive.

    Any final answer shows a working SIP stack (a PBX may well answer OPTIONS
    with 404 or 405), except 408 (a proxy on the way timed out) and 5xx (RFC
    3261 §21.5.4: 503 "the server is temporarily unable to process the request
    due to a temporary overloading or maintenance").
    """
    return status is not None and 200 <= status < 500 and status != 408


def next_health(
    previous: Health | None,
    *,
    alive: bool,
    status: int | None,
    now: float,
    down_after: int,
    up_after: int,
    prober: str = "",
) -> Health:
    """The record after one probe (pure; the thresholds' state machine).

    An address never probed before counts as up: one lost OPTIONS must not
    take a fresh destination out.
    """
    was = previous or Health(up=True, checked_at=now, since=now)
    failures = 0 if alive else was.failures + 1
    successes = was.successes + 1 if alive else 0
    up = was.up
    if up and failures >= down_after:
        up = False
    elif not up and successes >= up_after:
        up = True
    return Health(
        up=up,
        checked_at=now,
        since=was.since if up == was.up else now,
        failures=failures,
        successes=successes,
        status=status,
        prober=prober,
    )


class Prober:
    """Probes rounds of targets and writes their health; see the module doc."""

    def __init__(
        self,
        transport: ProbeTransport,
        store: HealthStore,
        targets: Callable[[], Iterable[ProbeTarget]],
        *,
        config: ProberConfig | None = None,
        prober_id: str = "",
        lease: Lease | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._transport = transport
        self._store = store
        self._targets = targets
        self._config = config or ProberConfig()
        self._id = prober_id
        self._lease = lease
        self._clock = clock
        self.states: dict[str, Health] = {}
        #: The last record of each address this replica probed.

    async def probe_once(self) -> dict[str, Health]:
        """One round: probe every target (if this replica holds the lease), store the results.

        Returns:
            The new records by key (empty when another replica holds the lease).
        """
        if self._lease is not None and not await self._lease.acquire(self._clock()):
            self.states.clear()  # the holder's view is newer than ours
            return {}
        cfg = self._config
        targets = [t for t in self._targets() if t.transport in self._transport.transports]
        limit = asyncio.Semaphore(cfg.concurrency)

        async def one(target: ProbeTarget) -> tuple[ProbeTarget, int | None]:
            async with limit:
                return target, await self._transport.options(target, timeout=cfg.timeout)

        results = await asyncio.gather(*(one(t) for t in targets))
        now = self._clock()
        fresh: dict[str, Health] = {}
        for target, status in results:
            record = next_health(
                self.states.get(target.key),
                alive=is_alive(status),
                status=status,
                now=now,
                down_after=cfg.down_after,
                up_after=cfg.up_after,
                prober=self._id,
            )
            if record.up != self.states.get(target.key, record).up:
                log.warning(
                    "%s is %s (status %s)", target.uri, "up" if record.up else "down", status
                )
            fresh[target.key] = record
        self.states = fresh  # forget targets no longer configured
        await asyncio.gather(*(self._store.put(k, encode_record(h)) for k, h in fresh.items()))
        return fresh

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every ``interval`` seconds until ``stop`` is set.

        A failing round (NATS down ...) is logged and the next one runs on time.
        """
        while not stop.is_set():
            try:
                await self.probe_once()
            except Exception:
                log.exception("probe round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._config.interval)


class _LeaseValue(msgspec.Struct, frozen=True, kw_only=True):
    owner: str
    expires_at: float


_lease_decoder: Final = msgspec.msgpack.Decoder(_LeaseValue)


class KvLease:
    """The prober lease as a compare-and-set key in the ``health`` bucket.

    The value names the holder and when its hold ends (wall clock: replicas
    need clocks within a few seconds, as NTP gives). The holder renews each
    round; anyone may take an expired lease. Two replicas racing for it both
    write with the revision they read, and NATS accepts only one.
    """

    def __init__(self, bucket: KeyValue, owner: str, *, ttl: float = 30.0) -> None:
        self._bucket = bucket
        self._owner = owner
        self._ttl = ttl

    async def acquire(self, now: float) -> bool:
        """Take or renew the lease at ``now``; False while another replica holds it."""
        value = msgspec.msgpack.encode(_LeaseValue(owner=self._owner, expires_at=now + self._ttl))
        try:
            entry = await self._bucket.get(PROBER_LEASE_KEY)
        except KeyNotFoundError:
            entry = None
        try:
            if entry is None or not entry.value:
                await self._bucket.create(PROBER_LEASE_KEY, value)
                return True
            try:
                held = _lease_decoder.decode(entry.value)
            except ValueError:
                held = _LeaseValue(owner="", expires_at=0.0)
            if held.owner != self._owner and held.expires_at > now:
                return False
            await self._bucket.update(PROBER_LEASE_KEY, value, last=entry.revision)
        except KeyWrongLastSequenceError:
            return False  # another replica won the race
        return True


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, waiting: dict[str, asyncio.Future[int]]) -> None:
        self._waiting = waiting

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        try:
            msg = parse(data)
        except ParseError:
            return
        if not isinstance(msg, Response) or msg.status < 200:
            return  # §17.1.2.2: a provisional response only stops retransmission timing
        branch = msg.via_branch
        future = self._waiting.get(branch.decode("ascii", "replace")) if branch else None
        if future is not None and not future.done():
            future.set_result(msg.status)


class UdpProbeTransport:
    """Sends OPTIONS over UDP from its own socket (see the module doc).

    Call :meth:`start` first and :meth:`close` at the end. ``local_host`` is
    the address to bind (``0.0.0.0`` to reach destinations off this host).
    """

    transports: frozenset[str] = frozenset({"udp"})

    def __init__(self, *, local_host: str = "127.0.0.1") -> None:
        self._local_host = local_host
        self._sock: asyncio.DatagramTransport | None = None
        self._local: tuple[str, int] = (local_host, 0)
        self._waiting: dict[str, asyncio.Future[int]] = {}

    async def start(self) -> None:
        """Bind the ephemeral UDP port."""
        loop = asyncio.get_running_loop()
        sock, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self._waiting), local_addr=(self._local_host, 0)
        )
        self._sock = sock
        self._local = sock.get_extra_info("sockname")[:2]

    def close(self) -> None:
        """Close the socket; pending probes time out."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def request(self, target: ProbeTarget, branch: str) -> bytes:
        """The OPTIONS for ``target`` with Via branch ``branch`` (RFC 3261 §11)."""
        host, port = self._local
        via_host = f"[{host}]" if ":" in host else host
        tag, call_id = secrets.token_hex(6), secrets.token_hex(10)
        lines = [
            f"OPTIONS {target.uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {via_host}:{port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:sipmesh-prober@{via_host}>;tag={tag}",
            f"To: <{target.uri}>",
            f"Call-ID: {call_id}@{via_host}",
            "CSeq: 1 OPTIONS",
            "Accept: application/sdp",
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    async def options(self, target: ProbeTarget, *, timeout: float) -> int | None:
        """Send OPTIONS, retransmitting on Timer E (T1 doubling to T2), until a final answer."""
        sock = self._sock
        if sock is None or target.transport != "udp":
            return None
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                target.host, target.port, family=sock.get_extra_info("socket").family,
                type=socket.SOCK_DGRAM,
            )  # fmt: skip
        except OSError:
            return None
        addr = infos[0][4][:2]
        # RFC 3261 §8.1.1.7: the branch "MUST always begin with the characters z9hG4bK".
        branch = "z9hG4bK" + secrets.token_hex(10)
        data = self.request(target, branch)
        future: asyncio.Future[int] = loop.create_future()
        self._waiting[branch] = future
        deadline = loop.time() + timeout
        interval = T1
        try:
            while True:
                sock.sendto(data, addr)
                wait = min(interval, deadline - loop.time())
                if wait <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), wait)
                interval = min(interval * 2, T2)
        except OSError:
            return None
        finally:
            self._waiting.pop(branch, None)
            future.cancel()
