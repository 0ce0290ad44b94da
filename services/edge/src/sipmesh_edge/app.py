"""The edge service: sockets and NATS wired around :class:`~sipmesh_edge.sink.EdgeSink`.

Start order: UDP sockets first (they answer 503 while NATS is still out of
reach), then the stream listeners, then NATS (the bus runtime's ``Service``:
HTTP /metrics /healthz /readyz, reconnect forever), then the bus client and
``sip.edge.<edge-id>.send``. Shutdown: stop reading sockets, let pending bus
requests finish until the grace deadline, drain NATS, close the sockets.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import secrets
from typing import Annotated, Any, Final

import msgspec
from prometheus_client import CollectorRegistry

from sipmesh_bus import schema, subjects
from sipmesh_bus.config import PositiveFloat, ServiceConfig
from sipmesh_bus.runtime import Service
from sipmesh_bus.secrets import load_shared_secret
from sipmesh_edge.bus import BusClient
from sipmesh_edge.challenge import RegisterChallenger
from sipmesh_edge.core import EdgeIdentity
from sipmesh_edge.guard import Guard
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.ports import StreamListeners
from sipmesh_edge.protection import ProtectionConfig
from sipmesh_edge.sink import EdgeSink, SinkConfig
from sipmesh_edge.udp import (
    MAX_DATAGRAM,
    UDP_BUFFER_SIZE,
    UdpListener,
    open_udp,
    os_error_reason,
)
from sipmesh_registrar.config import RegistrarSettings

__all__ = ["Edge", "EdgeConfig", "advertised_listeners", "parse_listen"]

log = logging.getLogger(__name__)

_TICK: Final = 0.01


class EdgeConfig(ServiceConfig, frozen=True, kw_only=True):
    """The edge's settings (YAML, or ``SIPMESH_*`` environment variables)."""

    edge_id: str = ""
    #: This edge's id (letters, digits, ``_``, ``-``); empty picks a random one.
    udp: list[str] = msgspec.field(default_factory=lambda: ["0.0.0.0:5060"])
    #: UDP listen addresses, ``host:port`` or ``[v6]:port``; several allowed.
    reuse_port: bool = False
    #: Share the SIP ports with the other edge processes of this host that set it
    #: too (SO_REUSEPORT): the kernel spreads peers over them, so one host runs an
    #: edge per core. Each edge then opens, next to every shared UDP socket, a
    #: reply socket of its own on a free port of the same address: its Via and
    #: Record-Route name that one, so responses and in-dialog requests come back
    #: to the edge that holds the transaction (see :func:`open_reply_sockets`).
    siblings: list[str] = []  # noqa: RUF012
    #: Ids of the other edges sharing these ports (``reuse_port``): a phone's UDP
    #: NAT binding made through one of them is the same address and port here, so
    #: requests to it are sent from here instead of handed over on the bus.
    advertised_hosts: list[str] = []  # noqa: RUF012
    #: Names and addresses under which phones reach this edge (OPTIONS to self, loops).
    request_timeout: PositiveFloat = 2.0
    #: Seconds to wait for the registrar/router before answering 503.
    retry_after: int = 5
    #: Retry-After seconds of those 503s.
    max_datagram: int = MAX_DATAGRAM
    udp_buffer: Annotated[int, msgspec.Meta(ge=0)] = UDP_BUFFER_SIZE
    #: SO_RCVBUF/SO_SNDBUF bytes asked for each UDP socket (0: the system's default).
    shutdown_grace: PositiveFloat = 5.0
    #: On shutdown, how long pending requests may take.
    streams: dict[str, Any] = {}  # noqa: RUF012
    #: TCP/TLS/WS settings, converted to ``sipmesh_edge.streams.StreamConfig``.
    protection: ProtectionConfig = ProtectionConfig()
    #: Rate limits, bans, scanner blocking, allow/deny lists (docs/security.md).
    challenge_registers: bool = False
    #: Answer a REGISTER without credentials with the registrar's own 401 here
    #: (:mod:`sipmesh_edge.challenge`): one bus round trip less per registration.
    #: Needs ``registrar`` to be the registrars' settings and their nonce secret
    #: (``registrar.nonce_secret``, or the shared file in ``data_dir``).
    registrar: RegistrarSettings = RegistrarSettings()
    #: The registrar's section (``SIPMESH_REGISTRAR_*``), read for ``challenge_registers``.
    data_dir: str | None = None
    #: ``$SIPMESH_DATA_DIR``: where the registrars' nonce secret file is kept.


def parse_listen(entry: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port``.

    Raises:
        ValueError: not of that form.
    """
    host, sep, port = entry.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address {entry!r}: expected host:port")
    return host, int(port)


_WILDCARDS: Final = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - recognised, not bound


def advertised_listeners(
    bound: list[tuple[str, str, int]], advertised_hosts: list[str]
) -> dict[str, str]:
    """``Envelope.listeners``: transport -> the ``"host:port"`` peers reach it at.

    The host is the first advertised host (behind NAT or a load balancer the
    bound address is not what peers see), else the bound address; a wildcard
    bind without an advertised host names no address, so that transport is
    left out (the router then uses its ``router.listeners`` setting or the
    inbound address). The first listener of a transport wins.

    Args:
        bound: (transport, host, port) of every listener, in start order.
        advertised_hosts: ``EdgeConfig.advertised_hosts``.

    Returns:
        The dict, IPv6 hosts in brackets.
    """
    advertised = advertised_hosts[0].strip("[]") if advertised_hosts else ""
    listeners: dict[str, str] = {}
    for transport, host, port in bound:
        name = advertised or host
        if transport in listeners or name in _WILDCARDS:
            continue
        listeners[transport] = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
    return listeners


class Edge:
    """One running edge.

    Args:
        config: the settings.
        registry: Prometheus registry (a fresh one per test).
        install_signal_handlers: False when embedded (tests).
    """

    def __init__(
        self,
        config: EdgeConfig,
        *,
        registry: CollectorRegistry | None = None,
        install_signal_handlers: bool = True,
    ) -> None:
        self.config = config
        self.edge_id = config.edge_id or secrets.token_hex(4)
        self.service = Service(
            "edge", config, registry=registry, install_signal_handlers=install_signal_handlers
        )
        self.metrics = EdgeMetrics(self.service.registry)
        self.udp: list[UdpListener] = []
        #: The UDP listen sockets (shared with other edges under ``reuse_port``).
        self.replies: dict[tuple[str, int], UdpListener] = {}
        #: Under ``reuse_port``: shared socket's local address -> this edge's reply socket.
        self.streams: StreamListeners | None = None
        self.sink: EdgeSink | None = None
        self.bus: BusClient | None = None
        self.guard = Guard(config.protection, self.service.registry, edge_id=self.edge_id)
        self._ticker: asyncio.TimerHandle | None = None
        self._guard_due = 0.0

    async def start(self) -> None:
        """Open the sockets, then connect to NATS (waits until NATS answers).

        Raises:
            OSError: a listen address cannot be bound.
            ValueError: a listen address is malformed.
        """
        loop = asyncio.get_running_loop()
        addresses = [parse_listen(a) for a in self.config.udp]
        self.sink = sink = EdgeSink(self._sink_config([]), self.metrics, clock=loop.time)
        sink.guard = self.guard
        sink.challenger = self._challenger()
        try:
            for host, port in addresses:
                what = f"listen on UDP {host}:{port}"
                reuse = self.config.reuse_port
                self.udp.append(await self._open_udp(sink, host, port, what, reuse_port=reuse))
            if self.config.reuse_port:
                await self._open_reply_sockets(sink)
            for listener in [*self.udp, *self.replies.values()]:
                sink.udp[listener.local] = listener
            self.streams = await self._start_streams(sink)
        except BaseException:
            for listener in [*self.udp, *self.replies.values()]:
                listener.close()
            raise
        if self.streams is not None:
            sink.connections = self.streams.connections
            sink.connector = self.streams
        # Reply sockets first: advertised_listeners names the first of a transport.
        bound = [("udp", *u.local) for u in [*self.replies.values(), *self.udp]]
        if self.streams is not None:
            bound += self.streams.addresses
        sink.reconfigure(self._sink_config(bound))
        self._guard_due = loop.time()
        self._ticker = loop.call_later(_TICK, self._tick, loop)
        streams = [] if self.streams is None else self.streams.addresses
        log.info(
            "edge %s: SIP over UDP on %s; streams %s",
            self.edge_id,
            [u.local for u in self.udp] + [("reply", *r.local) for r in self.replies.values()],
            [f"{t}:{h}:{p}" for t, h, p in streams],
        )
        self.service.add_readiness_check("udp", self._udp_open)
        await self.service.start()
        self.bus = BusClient(
            self.service.wire, timeout=self.config.request_timeout, clock=loop.time
        )
        await self.bus.start()
        sink.bus = self.bus
        await self.guard.start(self.service.js)
        await self.service.serve(
            subjects.edge_send(self.edge_id),
            self._on_edge_send,
            queue=subjects.QUEUE_EDGE,
            decode=schema.decode_edge_send,
        )

    async def close(self) -> None:
        """Graceful shutdown: see the module docstring."""
        for listener in [*self.udp, *self.replies.values()]:
            listener.paused = True
        if self.streams is not None:
            await self.streams.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_grace
        while self.bus is not None and self.bus.pending and loop.time() < deadline:
            await asyncio.sleep(_TICK)
        if self.bus is not None:
            await self.bus.close()
        await self.guard.close()
        await self.service.close()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for listener in [*self.udp, *self.replies.values()]:
            listener.close()

    async def __aenter__(self) -> Edge:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- internals -----------------------------------------------------------

    def _sink_config(self, bound: list[tuple[str, str, int]]) -> SinkConfig:
        hosts = {h.strip("[]").lower() for h in self.config.advertised_hosts}
        hosts.update(u.local[0].lower() for u in self.udp)
        replies = {shared: reply.local for shared, reply in self.replies.items()}
        identity = EdgeIdentity(
            edge_id=self.edge_id,
            hosts=frozenset(h.encode() for h in hosts if h),
            ports=frozenset(port for _, _, port in bound),
        )
        return SinkConfig(
            identity=identity,
            retry_after=self.config.retry_after,
            listeners=advertised_listeners(bound, self.config.advertised_hosts),
            replies=replies,
            siblings=frozenset(self.config.siblings),
        )

    def _challenger(self) -> RegisterChallenger | None:
        config = self.config
        if not (config.challenge_registers and config.registrar.auth):
            return None
        secret = load_shared_secret(
            (config.registrar.nonce_secret,), data_dir=config.data_dir, owner="edge"
        )
        return RegisterChallenger(config.registrar, secret)

    async def _open_reply_sockets(self, sink: EdgeSink) -> None:
        """A socket of this edge alone next to each shared UDP socket, on a free port.

        Under SO_REUSEPORT the kernel picks the socket of a datagram by a hash
        of the address pair, so a response sent to the shared port may reach
        another edge (which hands it over on the bus: slower, but delivered).
        RFC 3261 §18.2.2 sends a response to the Via's sent-by port (or, with
        rport, RFC 3581 §4, to the source port), and §16.12 sends in-dialog
        requests to the Record-Route URI: naming the reply socket in both, and
        sending forwarded requests from it, brings them all back here.
        """
        for shared in self.udp:
            host = shared.local[0]
            what = f"open a UDP reply socket on {host}"
            self.replies[shared.local] = await self._open_udp(sink, host, 0, what, reuse_port=False)

    async def _open_udp(
        self, sink: EdgeSink, host: str, port: int, what: str, *, reuse_port: bool
    ) -> UdpListener:
        try:
            return await open_udp(
                host,
                port,
                sink,
                self.metrics,
                max_size=self.config.max_datagram,
                buffer_size=self.config.udp_buffer,
                reuse_port=reuse_port,
            )
        except OSError as exc:
            raise OSError(exc.errno, f"cannot {what}: {os_error_reason(exc)}") from exc

    async def _start_streams(self, sink: EdgeSink) -> StreamListeners | None:
        try:
            streams = importlib.import_module("sipmesh_edge.streams")
        except ImportError as exc:
            log.warning("edge: no TCP/TLS/WS listeners (sipmesh_edge.streams: %s)", exc)
            return None
        config = msgspec.convert(self.config.streams, streams.StreamConfig)
        listeners: StreamListeners = await streams.start_stream_listeners(
            config, sink, reuse_port=self.config.reuse_port
        )
        return listeners

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        # A timer callback, not a task looping on asyncio.sleep: no future, no
        # task step per tick. The next tick is armed first, so that a failing
        # tick (logged by the loop's exception handler) does not stop the timers.
        now = loop.time()
        self._ticker = loop.call_at(now + _TICK, self._tick, loop)
        if self.sink is not None:
            self.sink.tick()
        if self.bus is not None:
            self.bus.expire(now)
        if now >= self._guard_due:
            self._guard_due = now + 1.0
            self.guard.tick()

    async def _udp_open(self) -> bool:
        return bool(self.udp) and all(
            u.transport is not None and not u.transport.is_closing() for u in self.udp
        )

    async def _on_edge_send(self, msg: schema.EdgeSend) -> schema.EdgeSendResult:
        # ARCHITECTURE step 4: bytes for a connection (or a UDP peer) this edge
        # owns, or a response received elsewhere for one of our transactions.
        if self.sink is None:
            return schema.EdgeSendResult(ok=False, error="starting")
        return self.sink.on_handoff(msg)
