"""Where the edge's messages go out: UDP, a held connection, a new connection, another edge.

:class:`Outbound` is the sending half of :class:`~sipmesh_edge.sink.EdgeSink`. A
:class:`Flow` names the way out; :meth:`Outbound.send` either sends at once,
fails at once (False: the caller feeds its transaction a transport error,
RFC 3261 §18.4), or starts a send that completes later (a TCP/TLS connection
being opened, another edge asked over ``sip.edge.<id>.send``) and reports a
failure through its ``on_error`` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

import msgspec

from sipmesh_bus import schema, subjects
from sipmesh_edge.bus import BusFailure
from sipmesh_edge.connecting import Connector, PendingSends
from sipmesh_edge.flow import Flow
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.ports import ConnectionRegistry

__all__ = ["Bus", "Connector", "Flow", "Outbound", "UdpSender"]

_OPENABLE: Final = frozenset({"tcp", "tls"})


class Bus(Protocol):
    """What the sink needs of :class:`~sipmesh_edge.bus.BusClient`."""

    def request(
        self, subject: str, payload: bytes, callback: Callable[[bytes | BusFailure], None]
    ) -> bool: ...

    def publish(self, subject: str, payload: bytes) -> bool: ...


class UdpSender(Protocol):
    """One UDP socket (``asyncio.DatagramTransport.sendto``)."""

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None: ...


class Outbound:
    """Sends for one edge.

    Args:
        edge_id: this edge's id (a Target of another edge is handed over).
        metrics: where to count failed handoffs.
    """

    def __init__(self, edge_id: str, metrics: EdgeMetrics) -> None:
        self.edge_id = edge_id
        self._metrics = metrics
        self.bus: Bus | None = None
        #: Set by the app once NATS is connected.
        self.udp: dict[tuple[str, int], UdpSender] = {}
        #: The UDP sockets by local (host, port).
        self.replies: dict[tuple[str, int], tuple[str, int]] = {}
        #: Shared UDP socket -> this edge's reply socket (``EdgeConfig.reuse_port``).
        self.siblings: frozenset[str] = frozenset()
        #: Edges sharing this edge's UDP sockets: their UDP flows are sent from here.
        self.connections: ConnectionRegistry | None = None
        #: The stream connections of this edge, by id.
        self.connector: Connector | None = None
        #: Opens outbound TCP/TLS connections; None sends nothing over new streams.
        self._pending = PendingSends()

    def target_flow(self, target: schema.Target, *, request: bool = False) -> Flow:
        """Where a Target's messages go: another edge, a held connection, a new one, UDP.

        A request to a target no edge holds (``target.edge_id`` None: a PBX, a
        carrier, a Record-Route) leaves over UDP from this edge's reply socket
        when it has one, the address the router wrote in the Via and
        Record-Route, so that peers answering to the source address (SIPp,
        RFC 3581 rport) reach this edge too. Anything for a registered flow
        leaves from the listen socket the phone's NAT binding was made to,
        which a sibling edge (``EdgeConfig.siblings``) shares with this one.
        """
        owner = target.edge_id
        if (
            owner is not None
            and owner != self.edge_id
            and not (
                owner in self.siblings
                and target.transport == "udp"
                and target.connection_id is None
            )
        ):
            # ARCHITECTURE step 4: the connection (or the NAT binding) lives there.
            return Flow(
                transport=target.transport,
                host=target.host,
                port=target.port,
                local=("", 0),
                owner=owner,
                connection_id=target.connection_id,
            )
        connection = None
        if target.connection_id is not None and self.connections is not None:
            connection = self.connections.get(target.connection_id)
        if connection is not None:
            local = connection.local
        else:
            local = self.udp_local_for(target.host)
            if request and self.replies and owner is None:
                local = self.replies.get(local, local)
        return Flow(
            transport=target.transport,
            host=target.host,
            port=target.port,
            local=local,
            connection=connection,
            connection_id=target.connection_id,
        )

    def udp_local_for(self, host: str) -> tuple[str, int]:
        """The local address of a UDP socket of ``host``'s address family."""
        v6 = ":" in host
        for local in self.udp:
            if (":" in local[0]) == v6:
                return local
        return next(iter(self.udp), ("", 0))

    def send(self, flow: Flow, data: bytes, on_error: Callable[[], None] | None = None) -> bool:
        """Send now or start sending; False at once when it cannot be sent.

        A send that completes later (a connection being opened, another edge
        asked) reports its failure through ``on_error`` instead.
        """
        connection = flow.connection
        if connection is not None:
            try:
                connection.send(data)
            except ConnectionError:
                return False  # §18.4: the transport failed; the caller tells the transaction
            return True
        if flow.owner is not None:
            return self._send_via_edge(flow, flow.owner, data, on_error)
        if flow.transport == "udp":
            sock = self.udp.get(flow.local)
            if sock is None:
                return False
            sock.sendto(data, (flow.host, flow.port))
            return True
        if flow.connection_id is not None:
            return False  # the held connection (a UA's flow) is gone: it cannot be re-opened
        return self._send_stream(flow, data, on_error)

    def _send_stream(self, flow: Flow, data: bytes, on_error: Callable[[], None] | None) -> bool:
        """Over an open connection to the flow's peer, else a new one (TCP and TLS only)."""
        connector = self.connector
        if connector is None or flow.transport not in _OPENABLE:
            return False  # WebSocket peers cannot be called back (RFC 7118 §4)

        self._pending.start(connector, flow, data, on_error)
        return True

    def _send_via_edge(
        self, flow: Flow, owner: str, data: bytes, on_error: Callable[[], None] | None
    ) -> bool:
        bus = self.bus
        if bus is None:
            return False
        handoff = schema.EdgeSend(
            data=data,
            transport=flow.transport,
            host=flow.host,
            port=flow.port,
            connection_id=flow.connection_id,
        )

        def on_reply(value: bytes | BusFailure) -> None:
            result = _decode_result(value) if isinstance(value, bytes) else None
            if result is None or not result.ok:
                self._metrics.dropped.labels("handoff_failed").inc()
                if on_error is not None:
                    on_error()

        self._metrics.handoffs.labels("send").inc()
        return bus.request(subjects.edge_send(owner), schema.encode(handoff), on_reply)

    def serve_handoff(self, msg: schema.EdgeSend) -> schema.EdgeSendResult:
        """Send what another edge handed over, over UDP or a connection held here.

        Returns:
            ok, or why not (the connection is gone, no socket).
        """
        connection = None
        if msg.connection_id is not None:
            registry = self.connections
            connection = None if registry is None else registry.get(msg.connection_id)
            if connection is None or not connection.is_open:
                self._metrics.dropped.labels("connection_gone").inc()
                return schema.EdgeSendResult(
                    ok=False, error=f"connection {msg.connection_id} is gone"
                )
        flow = Flow(
            transport=msg.transport,
            host=msg.host,
            port=msg.port,
            local=connection.local if connection else self.udp_local_for(msg.host),
            connection=connection,
        )
        if self.send(flow, msg.data):
            return schema.EdgeSendResult(ok=True)
        return schema.EdgeSendResult(ok=False, error=f"cannot send over {msg.transport}")


def _decode_result(data: bytes) -> schema.EdgeSendResult | None:
    """The owner's answer; None for bytes that are not one (an old or broken peer)."""
    try:
        return schema.decode_edge_send_result(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
