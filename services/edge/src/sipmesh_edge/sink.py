"""The edge's message handling: transactions, the bus round trip, sending.

:class:`EdgeSink` is the :class:`~sipmesh_edge.ports.MessageSink` every listener
feeds. Per message it does one parse and the checks the transaction key needs
(:func:`core.triage`), and one dict lookup in the transaction table; a
retransmission stops there. A new request gets the rest of the checks
(:func:`core.admit`), then one msgpack encode and one queued publish; the reply
comes back through a callback, never a task per message.

Server transactions are keyed by :func:`sipmsg.transaction.server_key`
(:func:`core.transaction_key`, which reads a ``sipmsg.peek`` Summary when
:func:`core.peek_triage` made it); the
client side (the branches of a ``Forward``: forking, the best final response,
CANCEL fan-out, Timer C) is :class:`sipmesh_edge.proxy.Proxy`. All timers of
both run from one :meth:`EdgeSink.tick` (the app calls it every few ms): a
:class:`~sipmesh_edge.wheel.Deadlines`, lazily invalidated.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, cast

import msgspec

from sipmesh_bus import schema, subjects
from sipmesh_edge import core
from sipmesh_edge.ackroute import AckRoutes
from sipmesh_edge.bus import BusFailure
from sipmesh_edge.challenge import RegisterChallenger
from sipmesh_edge.faults import log_exception
from sipmesh_edge.flow import Flow
from sipmesh_edge.guard import Guard
from sipmesh_edge.invite_server import InviteServer
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.outbound import Bus, Connector, Outbound, UdpSender
from sipmesh_edge.ports import Connection, ConnectionRegistry
from sipmesh_edge.protection import carries_credentials
from sipmesh_edge.proxy import Branch, Proxy, Server
from sipmesh_edge.transaction import LeanServerTransaction, NonInviteServer, status_of
from sipmesh_edge.wheel import Deadlines, Expiring
from sipmsg import (
    LocalProtocolError,
    ParseError,
    ParserConfig,
    Request,
    Response,
    make_response,
    parse,
)
from sipmsg.transaction import (
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    Terminated,
    TransactionConfig,
)

__all__ = ["Bus", "Connector", "EdgeSink", "Flow", "SinkConfig", "UdpSender"]

_ServerTx = ServerInviteTransaction | ServerNonInviteTransaction
_ERROR_LOG_INTERVAL: Final = 10.0
_DEFAULT_PARSER: Final = ParserConfig()
_DEFAULT_TIMERS: Final = TransactionConfig()
_DEFAULT_PORTS: Final = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}

_Linger = tuple[bytes, str, int, tuple[str, int]]
"""A finished non-INVITE server transaction over UDP, as kept until Timer J:
its final response, and the host, port and local socket that response went to.

§17.2.2: in Completed "the server transaction MUST pass the final response to
the transport layer for retransmission whenever a retransmission of the
request is received", and that is all it does until Timer J (64*T1) fires. A
tuple of bytes, strings and numbers: the garbage collector stops tracking it
once it has seen it, where the Server, its transaction and its Flow were three
objects walked by every collection, for each REGISTER and BYE of the last 32 s.
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkConfig:
    """The sink's settings (from the app config)."""

    identity: core.EdgeIdentity
    retry_after: int = 5
    #: Seconds in the Retry-After of a 503.
    parser: ParserConfig = _DEFAULT_PARSER
    timers: TransactionConfig = _DEFAULT_TIMERS
    linger: float = 32.0
    #: How long a request the bus answered with Drop stays absorbed.
    listeners: dict[str, str] = field(default_factory=dict)
    #: Transport -> advertised ``"host:port"`` (``Envelope.listeners``); built
    #: once by the app, the same dict goes into every envelope.
    replies: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    #: Shared UDP socket -> this edge's reply socket (``EdgeConfig.reuse_port``):
    #: envelopes name the reply socket, which the router writes in Via and Record-Route.
    siblings: frozenset[str] = frozenset()
    #: Ids of the edges sharing these UDP sockets (``EdgeConfig.siblings``).
    peek: bool = False
    #: Classify by :func:`core.peek_triage` (``sipmsg.peek``: a request is parsed
    #: in full only when it is not absorbed) instead of :func:`core.triage`.


class EdgeSink:
    """Handles every SIP message of the edge; see the module docstring.

    Args:
        config: identity, timers, limits.
        metrics: where to count.
        clock: monotonic time (``loop.time``) for transactions and deadlines.
        wallclock: epoch time for ``Envelope.received_at``.
    """

    def __init__(
        self,
        config: SinkConfig,
        metrics: EdgeMetrics,
        *,
        clock: Callable[[], float],
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._me = config.identity
        self._metrics = metrics
        self._clock = clock
        self._wallclock = wallclock
        self._invite_timers = _with_trying(config.timers)
        self.out = Outbound(config.identity.edge_id, metrics)
        #: The sending half: UDP sockets, connections, the bus for handoffs.
        self.guard: Guard | None = None
        #: Protection (sipmesh_edge.guard): asked about every message first.
        self.challenger: RegisterChallenger | None = None
        #: Answers REGISTERs without credentials (``EdgeConfig.challenge_registers``).
        self.proxy = Proxy(
            edge_id=config.identity.edge_id,
            out=self.out,
            metrics=metrics,
            timers=config.timers,
            clock=clock,
            arm=self._arm,
            respond=self._respond,
            replay=self._replay,
            ask=self._ask_router,
            internal_error=self._internal_error,
        )
        #: The client side: the branches of Forwards.
        self.acks = AckRoutes()
        #: ACKs of recent 2xx the edge forwards without the router (schema.AckRoute).
        self._servers: dict[tuple[bytes, ...], Server] = {}
        self._lingering: Expiring[tuple[bytes, ...], _Linger] = Expiring()
        #: Finished non-INVITE UDP server transactions until Timer J, by key
        #: (see ``_Linger``). §17.2.2: "When this timer fires, the server
        #: transaction MUST transition to the "Terminated" state".
        self._deadlines: Deadlines[Server | Branch] = Deadlines()
        self._last_error_log = -_ERROR_LOG_INTERVAL

    # -- the MessageSink port ----------------------------------------------

    def on_message(
        self,
        data: bytes,
        *,
        transport: str,
        source: tuple[str, int],
        local: tuple[str, int],
        connection: Connection | None,
    ) -> None:
        """Handle one message; a failure is logged (rate-limited) and counted, never raised."""
        try:
            guard = self.guard
            if guard is not None and not guard.check(source[0], data):
                # Dropped silently (docs/security.md); a banned peer keeps no connection.
                if connection is not None:
                    connection.close()
                return
            self._receive(
                data,
                transport,  # type: ignore[arg-type]  # listeners pass a Transport
                source[0],
                source[1],
                local=local,
                connection=connection,
            )
        except Exception:
            self._internal_error("message from %s:%s", source[0], source[1])

    def on_parse_error(
        self, error: ParseError, *, connection: Connection, data: bytes = b""
    ) -> None:
        """A stream framer gave up: answer what can be answered, the listener closes.

        RFC 3261 §18.3: a stream message without a usable Content-Length
        cannot be delimited, so the connection is lost to framing; the request
        it started is answered first if its headers are readable ("the server
        ... MUST respond with a 400 (Bad Request)"; 513 for one too large).
        """
        self._metrics.parse_errors.inc()
        try:
            resp = core.error_response(data, error) if data else None
            if resp is not None:
                self._metrics.response(resp.status)
                with contextlib.suppress(ConnectionError):
                    connection.send(bytes(resp))
        except Exception:
            self._internal_error("framing error on %s", connection.id)

    # -- open state, for the app and tests ---------------------------------

    @property
    def bus(self) -> Bus | None:
        """The NATS client; None (not connected yet) answers 503."""
        return self.out.bus

    @bus.setter
    def bus(self, bus: Bus | None) -> None:
        self.out.bus = bus

    @property
    def udp(self) -> dict[tuple[str, int], UdpSender]:
        """The UDP sockets by local (host, port)."""
        return self.out.udp

    @property
    def connections(self) -> ConnectionRegistry | None:
        """The stream connections of this edge, by id."""
        return self.out.connections

    @connections.setter
    def connections(self, registry: ConnectionRegistry | None) -> None:
        self.out.connections = registry

    @property
    def connector(self) -> Connector | None:
        """Opens outbound TCP/TLS connections."""
        return self.out.connector

    @connector.setter
    def connector(self, connector: Connector | None) -> None:
        self.out.connector = connector

    def udp_local_for(self, host: str) -> tuple[str, int]:
        """The local address of a UDP socket of ``host``'s address family."""
        return self.out.udp_local_for(host)

    def reconfigure(self, config: SinkConfig) -> None:
        """Replace the settings (the app learns its bound ports after binding)."""
        self.proxy.reconfigure(config.identity.edge_id, config.timers)
        self.out.edge_id = config.identity.edge_id
        self.out.replies = config.replies
        self.acks.replies = config.replies
        self.out.siblings = config.siblings
        self._config = config
        self._me = config.identity
        self._invite_timers = _with_trying(config.timers)

    def send_raw(self, flow: Flow, data: bytes) -> bool:
        """Send bytes statelessly. False when there is no socket or the connection is gone."""
        return self.out.send(flow, data)

    def on_handoff(self, msg: schema.EdgeSend) -> schema.EdgeSendResult:
        """Serve ``sip.edge.<id>.send``: send over UDP or a held connection, or take a message.

        Args:
            msg: what another edge (or any service) hands over.

        Returns:
            ok, or why not (the connection is gone, no socket).
        """
        if msg.received:
            # A response for one of our client transactions that reached the
            # replica holding the connection it came over.
            self._receive(
                msg.data, msg.transport, msg.host, msg.port, local=("", 0), connection=None
            )
            return schema.EdgeSendResult(ok=True)
        return self.out.serve_handoff(msg)

    @property
    def transactions(self) -> int:
        """Server plus client transactions alive."""
        return len(self._servers) + len(self._lingering) + self.proxy.alive

    def tick(self) -> None:
        """Fire every transaction timer that is due (call every few ms)."""
        now = self._clock()
        self._deadlines.fire_due(now, self._find, self._fire_safely)
        self.proxy.tick(now)
        self._lingering.expire(now)

    # -- receiving ---------------------------------------------------------

    def _receive(
        self,
        data: bytes,
        transport: schema.Transport,
        host: str,
        port: int,
        *,
        local: tuple[str, int],
        connection: Connection | None,
    ) -> None:
        config = self._config
        if config.peek:
            incoming = core.peek_triage(data, config.parser)
        else:
            incoming = core.triage(data, config.parser)
        if isinstance(incoming, core.Peeked):
            now = self._clock()
            key = core.transaction_key(incoming)
            server = self._servers.get(key)
            if server is not None:
                # §17.2: a retransmission (or the ACK of a non-2xx) goes to its
                # transaction, which re-sends the last response; never to the bus.
                self._absorb(server, incoming, now)
                return
            lingering = self._lingering.get(key, now)
            if lingering is not None:
                self._absorb_finished(lingering, incoming)
                return
            flow = Flow(
                transport=transport, host=host, port=port, local=local, connection=connection
            )
            self._on_request(incoming, key, flow, now)
            return
        flow = Flow(transport=transport, host=host, port=port, local=local, connection=connection)
        if isinstance(incoming, Response):
            self.proxy.on_response(incoming, flow)
        elif isinstance(incoming, core.Garbage):
            self._on_garbage(incoming, flow)

    def _on_garbage(self, garbage: core.Garbage, flow: Flow) -> None:
        self._metrics.parse_errors.inc()
        if garbage.response is not None:
            self._send_stateless(garbage.response, flow)

    def _on_request(
        self, peeked: core.Peeked, key: tuple[bytes, ...], flow: Flow, now: float
    ) -> None:
        req = core.admit(peeked)
        if isinstance(req, core.Garbage):
            self._on_garbage(req, flow)
            return
        if req.method == b"ACK":
            self._forward_ack(req, flow)
            return
        self._metrics.request(req.method)
        if req.method == b"CANCEL" and self._cancel(req, key, peeked, flow, now):
            return
        server = self._new_server(key, req, flow, now)
        local = core.answer_locally(req, self._me)
        if local is not None:
            server.kind = "local"
            self._respond(server, local)
            return
        challenger = self.challenger
        if challenger is not None and req.method == b"REGISTER":
            challenge = challenger.challenge(req, (flow.host, flow.port), self._wallclock())
            if challenge is not None:  # the registrar's 401, without asking it
                server.kind = "local"
                self._send_response(server, challenge)
                return
        self._ask(server, req, core.bus_subject_for(req), None)

    def _absorb(self, server: Server, peeked: core.Peeked, now: float) -> None:
        tx = server.tx
        if tx is None:
            # An INVITE in Accepted (RFC 6026 §8.7): a retransmitted INVITE is
            # absorbed, an ACK is the TU's, which acts on none here.
            if peeked.method != b"ACK":
                self._metrics.retransmission()
            elif isinstance(core.admit(peeked), core.Garbage):
                self._metrics.parse_errors.inc()
            return
        if peeked.method != b"ACK":
            self._metrics.retransmission()
            # §17.2.3 matched it to the request that made the transaction; a
            # server transaction only re-sends its last response on it (§17.2.1,
            # §17.2.2), so it is fed that request: this copy needs no more
            # checks, and after core.peek_triage no full parse either.
            if isinstance(tx, NonInviteServer | InviteServer):
                tx.retransmitted(now)  # without the request it no longer holds parsed
            else:
                tx.receive(tx.request, now)
        else:
            ack = core.admit(peeked)
            if isinstance(ack, core.Garbage):
                self._metrics.parse_errors.inc()  # an ACK is never answered
                return
            tx.receive(ack, now)
        self._flush_server(server)

    def _absorb_finished(self, lingering: _Linger, peeked: core.Peeked) -> None:
        """A retransmission for a finished non-INVITE transaction: its final again (§17.2.2)."""
        data, host, port, local = lingering
        if peeked.method != b"ACK":
            self._metrics.retransmission()
        self.out.send(Flow(transport="udp", host=host, port=port, local=local), data)

    def _linger(self, server: Server) -> bool:
        """Keep a finished non-INVITE UDP server transaction as a ``_Linger`` tuple.

        Only once it has sent its final response (Completed, Timer J running)
        to a plain UDP destination: what is left to do is re-send those bytes
        there. Anything else stays a Server.
        """
        tx = server.tx
        if not isinstance(tx, NonInviteServer) or tx.state is not State.COMPLETED:
            return False
        end = tx.get_timer()
        last = tx.last_response
        dest = self._server_destination(server)
        if (
            end is None
            or last is None
            or dest.transport != "udp"
            or dest.owner is not None
            or dest.connection is not None
            or dest.connection_id is not None
        ):
            return False
        del self._servers[server.key]
        self._lingering.put(
            server.key, min(end, server.expires), (last, dest.host, dest.port, dest.local)
        )
        return True

    def _new_server(self, key: tuple[bytes, ...], req: Request, flow: Flow, now: float) -> Server:
        tx: _ServerTx
        if req.method == b"INVITE":
            # §16.2 / §17.2.1: 100 Trying at once, the router may take a while.
            # The edge's lean §17.2.1 machine (sipmesh_edge.invite_server), in
            # place of sipmsg's ServerInviteTransaction, whose interface it has.
            tx = cast(
                ServerInviteTransaction,
                InviteServer(
                    req,
                    now=now,
                    reliable=flow.reliable,
                    config=self._invite_timers,
                    parser=self._config.parser,
                ),
            )
            expires = now + 300.0
        else:
            # The edge's lean §17.2.2 machine (sipmesh_edge.transaction): it
            # passes a service's response on as bytes, unparsed. It stands in
            # for sipmsg's ServerNonInviteTransaction, whose interface it has.
            tx = cast(
                ServerNonInviteTransaction,
                NonInviteServer(
                    req,
                    now=now,
                    reliable=flow.reliable,
                    config=self._config.timers,
                    parser=self._config.parser,
                ),
            )
            expires = now + self._config.timers.timeout + self._config.linger
            server = Server(key=key, tx=tx, flow=flow, expires=expires, started=now)
            self._servers[key] = server
            if flow.connection is None:
                # Read from the top Via now: the final response drops the parse.
                self._server_destination(server)
            self._arm(server)  # nothing to send yet, no event: only the expiry
            return server
        server = Server(key=key, tx=tx, flow=flow, expires=expires, started=now)
        self._servers[key] = server
        self._flush_server(server)
        return server

    def _ask(self, server: Server, req: Request, subject: str, context: bytes | None) -> None:
        """Send a request (or a response, with context) to a service; handle its reply."""
        flow = server.flow
        envelope = self._envelope(core.stamp_via(req, flow.host, flow.port), flow, context)
        sent_at = self._clock()

        def on_reply(value: bytes | BusFailure) -> None:
            self._metrics.bus_round_trip(self._clock() - sent_at)
            self._on_reply(server, value)

        bus = self.bus
        if bus is None or not bus.request(subject, schema.encode(envelope), on_reply):
            self._unavailable(server, "disconnected")

    def _on_reply(self, server: Server, value: bytes | BusFailure) -> None:
        if isinstance(value, BusFailure):
            self._unavailable(server, value.value)
            return
        try:
            reply = schema.decode_reply(value)
        except (msgspec.MsgspecError, ParseError):
            self._metrics.dropped.labels("bad_reply").inc()
            self._unavailable(server, "bad_reply")
            return
        match reply:
            case schema.SendResponse(data=data, target=target, ack_route=hint):
                if hint is not None:
                    ttl = self._config.timers.timeout  # 64*T1: the 2xx's retransmissions
                    self.acks.remember(hint, server.flow, now=self._clock(), ttl=ttl)
                if target is not None:
                    server.dest = self.out.target_flow(target)
                self._send_response(server, data)
            case schema.Forward():
                self.proxy.forward(server, reply)
            case schema.Drop():
                server.expires = min(server.expires, self._clock() + self._config.linger)
                self._arm(server)

    def _send_response(self, server: Server, data: bytes) -> None:
        """Send a service's response through the server transaction.

        A non-INVITE transaction sends it as the bytes came (the status read
        from the status line): the edge does not parse what it only passes
        on. The rest is parsed, as the INVITE machine and the proxy's 2xx
        replay need the Response.
        """
        tx = server.tx
        status = status_of(data)
        if isinstance(tx, NonInviteServer) and status is not None and server.fork is None:
            if tx.terminated:
                return
            if status in (401, 407) and self.guard is not None and carries_credentials(tx.request):
                resp = _parse_response(data)
                if resp is None:
                    self._bad_reply(server)
                    return
                self._respond(server, resp)  # the guard reads the challenge
                return
            method = tx.request.method  # read before the final response drops the parse
            try:
                tx.send_bytes(status, data, self._clock())
            except LocalProtocolError:
                return  # already answered (a late reply)
            self._sent(server, status, method)
            self._flush_server(server)
            return
        resp = _parse_response(data) if status is not None else None
        if resp is None:
            self._bad_reply(server)
        else:
            self._respond(server, resp)

    def _bad_reply(self, server: Server) -> None:
        self._metrics.dropped.labels("bad_reply").inc()
        self._unavailable(server, "bad_reply")

    def _unavailable(self, server: Server, reason: str) -> None:
        # ARCHITECTURE step 5: "the caller gets 503 with Retry-After, never silence".
        self._metrics.unavailable.labels(reason).inc()
        tx = server.tx
        if tx is None or tx.terminated or tx.state is State.ACCEPTED:
            return  # a 2xx went upstream: nothing else can (RFC 6026 §8.7)
        resp = core.retry_later(tx.request, self._config.retry_after)
        if resp is not None:
            self._respond(server, resp)

    def _respond(self, server: Server, resp: Response) -> None:
        tx = server.tx
        if tx is None:
            if 200 <= resp.status <= 299:
                self._send_accepted(server, resp.to_tag or b"", bytes(resp))
            return  # RFC 6026 §8.7: only 2xx leave an INVITE in Accepted
        if tx.terminated:
            return
        req = tx.request  # before sending: a NonInviteServer drops its parse with the final
        try:
            tx.send(resp, self._clock())
        except LocalProtocolError:
            return  # already answered (a 487 after CANCEL, a late reply)
        self._sent(server, resp.status, req.method)
        if resp.status in (401, 407) and self.guard is not None:
            self.guard.on_response(req, resp, server.flow.host)
        if 200 <= resp.status < 300 and req.method == b"INVITE":
            # A retransmission of this 2xx from downstream replays it (proxy.py);
            # a non-INVITE client transaction absorbs them itself (§17.1.2.2).
            server.sent_2xx += ((resp.to_tag or b"", bytes(resp)),)
        self._flush_server(server)

    def _send_accepted(self, server: Server, tag: bytes | None, data: bytes) -> None:
        """Send a 2xx of an INVITE in Accepted whose transaction was let go (``Server.tx``).

        RFC 6026 §8.7: "Any retransmission of the 2xx response passed from the
        TU to the transaction while in the "Accepted" state MUST be passed to
        the transport layer for transmission." ``tag`` is the To tag of a new
        2xx (kept for its replays), None for a replay.
        """
        dest = server.dest
        if dest is None or self._servers.get(server.key) is not server:
            return  # Timer L fired: Terminated
        self._sent(server, status_of(data) or 200, b"INVITE")
        if tag is not None:
            server.sent_2xx += ((tag, data),)
        if not self.out.send(dest, data):
            self._retire(server)  # §17.2.4: the transport failed

    def _replay(self, server: Server, data: bytes) -> None:
        """Send again a 2xx that went upstream on ``server`` (RFC 6026 §8.7, see proxy.py)."""
        tx = server.tx
        if tx is None:
            self._send_accepted(server, None, data)
            return
        if tx.terminated:
            return
        status = status_of(data) or 200
        try:
            if isinstance(tx, LeanServerTransaction):
                tx.send_bytes(status, data, self._clock())
            else:
                resp = _parse_response(data)
                if resp is None:
                    return
                tx.send(resp, self._clock())
        except LocalProtocolError:
            return
        self._metrics.response(status)
        self._flush_server(server)

    def _sent(self, server: Server, status: int, method: bytes) -> None:
        """Count a response the server transaction sent (to a ``method`` request)."""
        self._metrics.response(status)
        if status >= 200 and not server.answered:
            # Once per transaction: a later 2xx of a fork is not a new answer.
            server.answered = True
            kind = "proxied" if server.fork is not None else server.kind
            self._metrics.transaction(method, kind, self._clock() - server.started)
            if method != b"INVITE":
                # The final is the only one (§17.2.2): the branches still alive
                # reach the server through their fork (``Fork.server``), which
                # the server needs no more; it lingers 64*T1 (Timer J) without
                # it, and the fork goes with its last branch (Timer K).
                server.fork = None

    def _send_stateless(self, resp: Response, flow: Flow) -> None:
        self._metrics.response(resp.status)
        self.out.send(flow, bytes(resp))

    # -- ACK and CANCEL ----------------------------------------------------

    def _forward_ack(self, req: Request, flow: Flow) -> None:
        # An ACK for a 2xx is its own transaction (§17.1.1.3) and routed like
        # any request; it is never answered, so failures are silent.
        routed = self.acks.route(req, flow, self._clock())
        if routed is not None:  # as the router said it would route it (sipmesh_edge.ackroute)
            self.out.send(self.out.target_flow(routed[1], request=True), routed[0])
            return

        def on_reply(value: bytes | BusFailure) -> None:
            if isinstance(value, bytes):
                with contextlib.suppress(msgspec.MsgspecError, ParseError):
                    reply = schema.decode_reply(value)
                    if isinstance(reply, schema.Forward):
                        for target in reply.targets:
                            self.out.send(self.out.target_flow(target, request=True), reply.data)

        envelope = self._envelope(bytes(req), flow, None)
        if self.bus is not None:
            self.bus.request(subjects.SIP_ROUTE, schema.encode(envelope), on_reply)

    def _cancel(
        self, req: Request, key: tuple[bytes, ...], peeked: core.Peeked, flow: Flow, now: float
    ) -> bool:
        """Answer a CANCEL that matches a server INVITE transaction here (§9.2, §16.10)."""
        invite = self._servers.get(core.transaction_key(peeked, method=b"INVITE"))
        invite_tx = None if invite is None else invite.tx
        if invite is None or (
            invite_tx is not None
            and not isinstance(invite_tx, InviteServer | ServerInviteTransaction)
        ):
            return False  # §16.10: statelessly forwarded: the router decides
        server = self._new_server(key, req, flow, now)
        self._respond(server, make_response(req, 200))
        if invite_tx is not None and invite_tx.state is State.PROCEEDING:
            invite.cancelled = True
            # §16.10: "the proxy MUST cancel any pending client transactions
            # associated with" the matching server transaction; the INVITE gets
            # its 487 once they are done (sipmesh_edge.proxy).
            if not self.proxy.cancel(invite):
                # Nothing pending onwards: §9.2 "the UAS ... SHOULD ... respond
                # to the INVITE with a 487 (Request Terminated)".
                self._respond(invite, make_response(invite_tx.request, 487))
        if self.bus is not None:
            # The router hears of it (media and dialog clean-up); no reply needed.
            self.bus.publish(
                subjects.SIP_ROUTE, schema.encode(self._envelope(bytes(req), flow, None))
            )
        return True

    def _ask_router(self, server: Server, branch: Branch, resp: Response) -> None:
        """Ask the router (``sip.route.response``) what to do with a branch's response."""
        fork = branch.fork
        envelope = self._envelope(bytes(resp), branch.flow, None if fork is None else fork.context)
        sent_at = self._clock()
        if fork is not None and fork.rang is not None and resp.status >= 200:
            # The router publishes the ringing event from the final (schema.Envelope).
            rang = envelope.received_at - (sent_at - fork.rang)
            envelope = msgspec.structs.replace(envelope, ringing_at=rang)

        def on_reply(value: bytes | BusFailure) -> None:
            self._metrics.bus_round_trip(self._clock() - sent_at)
            if isinstance(value, BusFailure):
                if resp.status >= 200:
                    self._router_failed(server, value.value)
                return
            self._on_reply(server, value)

        bus = self.bus
        queued = bus is not None and bus.request(
            subjects.SIP_ROUTE_RESPONSE, schema.encode(envelope), on_reply
        )
        if not queued and resp.status >= 200:
            self._router_failed(server, "disconnected")

    def _router_failed(self, server: Server, reason: str) -> None:
        if server.cancelled:
            # The caller cancelled: it gets the 487 (§9.2), router or not.
            self._metrics.unavailable.labels(reason).inc()
            tx = server.tx
            if tx is not None:
                self._respond(server, make_response(tx.request, 487))
        else:
            self._unavailable(server, reason)

    def _envelope(self, data: bytes, flow: Flow, context: bytes | None) -> schema.Envelope:
        local = flow.local
        if self._config.replies:
            local = self._config.replies.get(local, local)
        return schema.Envelope(
            edge_id=self._me.edge_id,
            transport=flow.transport,
            source_host=flow.host,
            source_port=flow.port,
            local_host=local[0],
            local_port=local[1],
            connection_id=None if flow.connection is None else flow.connection.id,
            received_at=self._wallclock(),
            data=data,
            context=context,
            listeners=self._config.listeners,
        )

    # -- sending, events, timers ---------------------------------------------

    def _server_destination(self, server: Server) -> Flow:
        if server.dest is not None:
            return server.dest
        flow = server.flow
        connection = flow.connection
        if connection is not None:
            if connection.is_open:
                return flow
            # §18.2.2: "If that connection is no longer open, the server SHOULD
            # open a connection to the IP address in the "received" parameter,
            # if present, using the port in the "sent-by" value, or the default
            # port for that transport".
            via = server.transaction.request.via[0]
            port = via.port if via.port is not None else _DEFAULT_PORTS[flow.transport]
            return Flow(transport=flow.transport, host=flow.host, port=port, local=flow.local)
        via = server.transaction.request.via[0]
        host, port = core.response_destination(via, (flow.host, flow.port))
        if host != flow.host or port != flow.port:
            flow = Flow(transport=flow.transport, host=host, port=port, local=flow.local)
        # Without a connection the answer is the same for every response (the
        # request's Via and source do not change): kept for retransmissions.
        server.dest = flow
        return flow

    def _flush_server(self, server: Server) -> None:
        tx = server.tx
        if tx is None:
            self._arm(server)
            return
        datagrams = tx.datagrams_to_send()
        if datagrams:
            dest = self._server_destination(server)
            # A UDP send fails at once or never; the rest may fail later (§18.4).
            failed = (
                None
                if dest.owner is None and dest.transport == "udp"
                else functools.partial(self._transport_failed, server)
            )
            for data in datagrams:
                if not self.out.send(dest, data, failed):
                    tx.handle_transport_error(self._clock())
        while (event := tx.next_event()) is not None:
            if isinstance(event, Terminated):
                if self._servers.get(server.key) is server:
                    self._retire(server)
                return
        if self._servers.get(server.key) is server:
            if self._linger(server):
                return
            if isinstance(tx, InviteServer) and tx.state is State.ACCEPTED:
                self._let_go(server, tx)
        self._arm(server)

    def _let_go(self, server: Server, tx: InviteServer) -> None:
        """An INVITE in Accepted to a plain UDP destination: the sink does the rest.

        RFC 6026 §8.7: in Accepted the transaction absorbs retransmitted
        INVITEs, passes ACKs to the TU (which does nothing with them here) and
        the TU's 2xx to the transport, until Timer L; ``_absorb`` and
        ``_send_accepted`` do that without it (see ``Server.tx``).
        """
        dest = server.dest
        if (
            dest is None
            or dest.transport != "udp"
            or dest.owner is not None
            or dest.connection is not None
            or dest.connection_id is not None
        ):
            return
        timer_l = tx.get_timer()
        if timer_l is not None:
            server.expires = min(server.expires, timer_l)
        server.tx = None
        server.pack()

    def _retire(self, server: Server) -> None:
        """Take a finished server transaction out of the table, and out of its fork.

        A proxied one and its fork point at each other (``Server.fork``,
        ``Fork.server``): left so, reference counting never frees them, and
        the edge's rare full collections (``__main__``) let every finished
        call pile up. The fork keeps its way to the server for the late
        responses of branches still alive; the server needs its fork no more.
        """
        del self._servers[server.key]
        server.fork = None

    def _transport_failed(self, server: Server) -> None:
        """A send that was started earlier failed (§18.4): tell the transaction."""
        try:
            tx = server.tx
            if tx is None:
                return  # an earlier send's error: the 2xx went, Accepted absorbs
            tx.handle_transport_error(self._clock())
            if self._servers.get(server.key) is server:
                self._flush_server(server)
        except Exception:
            self._internal_error("transport error")

    def _arm(self, entry: Server | Branch) -> None:
        self._deadlines.arm(entry)

    def _find(self, key: tuple[bytes, ...]) -> Server | Branch | None:
        # The wheel names a server or a client transaction by its key: a
        # server key has 4 or 8 items, a client key 2, so the two never collide.
        return self._servers.get(key) or self.proxy.clients.get(key)  # type: ignore[arg-type]

    def _fire_safely(self, entry: Server | Branch, now: float) -> None:
        try:
            self._fire(entry, now)
        except Exception:
            self._internal_error("timer")

    def _fire(self, entry: Server | Branch, now: float) -> None:
        if isinstance(entry, Branch):
            self.proxy.fire(entry, now)
            return
        if self._servers.get(entry.key) is not entry:
            return
        if now >= entry.expires:
            self._retire(entry)
            return
        tx = entry.tx
        if tx is None:
            self._arm(entry)  # Accepted: only ``expires`` (Timer L) is left
            return
        tx.handle_timer(now)
        self._flush_server(entry)

    def _internal_error(self, what: str, *args: object) -> None:
        self._metrics.internal_errors.inc()
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log_exception(
                __name__, "edge: handling a " + what + " failed (similar errors muted 10 s)", *args
            )


def _parse_response(data: bytes) -> Response | None:
    try:
        resp = parse(data)
    except ParseError:
        return None
    return resp if isinstance(resp, Response) else None


def _with_trying(timers: TransactionConfig) -> TransactionConfig:
    return TransactionConfig(
        t1=timers.t1, t2=timers.t2, t4=timers.t4, timer_d=timers.timer_d, trying_delay=0.0
    )
