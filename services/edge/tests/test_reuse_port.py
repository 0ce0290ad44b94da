"""Two edges on one SIP port (``EdgeConfig.reuse_port``), in-process, on a real nats-server.

The kernel spreads callers over the two shared sockets; each edge names its
own reply socket in the envelopes (so in the router's Via and Record-Route)
and forwards requests from it, so the callee's answers, even when sent to the
source address as SIPp does, reach the edge that holds the transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from sipmesh_bus import schema, subjects
from sipmesh_bus.config import HttpConfig, NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_edge.app import Edge, EdgeConfig
from sipmesh_edge.core import without_top_via
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.outbound import Outbound
from sipmsg import Request, Response, make_response, parse

from .test_proxy_app import Socket

pytestmark = pytest.mark.integration

CALLERS = 24
#: Source ports spread over two sockets by hash: all on one edge has odds 2**-23.


def _config(nats_server: NatsServer, edge_id: str, port: int, **extra: object) -> EdgeConfig:
    return EdgeConfig(
        edge_id=edge_id,
        udp=[f"127.0.0.1:{port}"],
        request_timeout=2.0,
        nats=NatsConfig(url=nats_server.url, reconnect_wait=0.1, drain_timeout=1.0),
        http=HttpConfig(port=0),
        shutdown_grace=0.2,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def pair(nats_server: NatsServer) -> AsyncIterator[tuple[Edge, Edge]]:
    """Edges "ea" and "eb" sharing one free UDP port."""
    first = Edge(
        _config(nats_server, "ea", 0, reuse_port=True, siblings=["eb"]),
        registry=CollectorRegistry(),
        install_signal_handlers=False,
    )
    await first.start()
    port = first.udp[0].local[1]
    second = Edge(
        _config(nats_server, "eb", port, reuse_port=True, siblings=["ea"]),
        registry=CollectorRegistry(),
        install_signal_handlers=False,
    )
    try:
        await second.start()
        yield first, second
    finally:
        await second.close()
        await first.close()


class Router:
    """Forwards every INVITE to the callee with a Via naming the envelope's local address."""

    def __init__(self, callee: Socket) -> None:
        self.callee = callee
        self.envelopes: list[schema.Envelope] = []

    async def on_request(self, msg: Msg) -> None:
        env = schema.decode_envelope(msg.data)
        self.envelopes.append(env)
        req = parse(env.data)
        assert isinstance(req, Request)
        via = f"SIP/2.0/UDP {env.local_host}:{env.local_port};branch=z9hG4bKr-{len(self.envelopes)}"
        onward = req.prepend_header(b"Via", via.encode())
        target = schema.Target(
            uri=f"sip:bob@127.0.0.1:{self.callee.port}", host="127.0.0.1", port=self.callee.port
        )
        await msg.respond(schema.encode(schema.Forward(data=bytes(onward), targets=[target])))

    async def on_response(self, msg: Msg) -> None:
        env = schema.decode_envelope(msg.data)
        resp = parse(env.data)
        assert isinstance(resp, Response)
        await msg.respond(schema.encode(schema.SendResponse(data=bytes(without_top_via(resp)))))


def _invite(caller: Socket, n: int) -> bytes:
    return (
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{caller.port};branch=z9hG4bK-rp-{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a{n}\r\n"
        f"To: <sip:bob@example.com>\r\nCall-ID: reuse-{n}@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:alice@127.0.0.1:{caller.port}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def test_two_edges_share_the_port_and_answers_come_back_to_the_owner(
    pair: tuple[Edge, Edge], nc: NatsClient
) -> None:
    edges = {e.edge_id: e for e in pair}
    shared = pair[0].udp[0].local
    assert pair[1].udp[0].local == shared
    reply_ports = {e.edge_id: next(iter(e.replies.values())).local[1] for e in pair}
    assert len({shared[1], *reply_ports.values()}) == 3, "each edge has a reply port of its own"
    callee = Socket()
    router = Router(callee)
    await nc.subscribe(subjects.SIP_ROUTE, cb=router.on_request)
    await nc.subscribe(subjects.SIP_ROUTE_RESPONSE, cb=router.on_response)
    await nc.flush()
    await nc.flush()
    callers = [Socket() for _ in range(CALLERS)]
    try:
        for n, caller in enumerate(callers):
            caller.send(parse(_invite(caller, n)), shared)
        sources: dict[int, int] = {}
        for _ in callers:
            while True:
                msg, source = await callee.recv()
                if isinstance(msg, Request) and msg.method == b"INVITE":
                    break
            # Via sent-by and the source are the forwarding edge's reply socket.
            assert msg.via[0].port == source[1]
            sources[source[1]] = sources.get(source[1], 0) + 1
            # Answered to the source address, as SIPp and rport (RFC 3581 §4) do:
            # only the edge holding the client transaction has that socket.
            callee.send(make_response(msg, 200), source)
        statuses = await asyncio.gather(*(c.statuses(2) for c in callers))
        assert statuses == [[100, 200]] * CALLERS
        by_edge = {
            edge_id: sum(1 for e in router.envelopes if e.edge_id == edge_id) for edge_id in edges
        }
        assert all(by_edge.values()), f"the kernel gave every caller to one edge: {by_edge}"
        for env in router.envelopes:
            assert (env.local_host, env.local_port) == ("127.0.0.1", reply_ports[env.edge_id])
        assert sources == {reply_ports[e]: by_edge[e] for e in edges}
        for e in pair:
            assert e.metrics.dropped.labels("stray_response")._value.get() == 0
            assert e.metrics.handoffs.labels("response")._value.get() == 0
    finally:
        for peer in [callee, *callers]:
            peer.close()


async def test_an_edge_without_reuse_port_cannot_take_a_shared_port(
    pair: tuple[Edge, Edge], nats_server: NatsServer
) -> None:
    port = pair[0].udp[0].local[1]
    third = Edge(
        _config(nats_server, "ec", port),
        registry=CollectorRegistry(),
        install_signal_handlers=False,
    )
    with pytest.raises(OSError, match=f"cannot listen on UDP 127.0.0.1:{port}: Address already"):
        await third.start()


def test_outbound_sends_requests_from_the_reply_socket_and_sibling_flows_directly() -> None:
    out = Outbound("ea", EdgeMetrics(CollectorRegistry()))
    shared, reply = ("127.0.0.1", 5060), ("127.0.0.1", 40001)
    out.udp = {shared: None, reply: None}  # type: ignore[dict-item]  # only the keys are read
    out.replies = {shared: reply}
    out.siblings = frozenset({"eb"})
    pbx = schema.Target(uri="sip:pbx@192.0.2.1", host="192.0.2.1", port=5060)
    assert out.target_flow(pbx, request=True).local == reply
    # A response's destination (SendResponse.target) keeps the listen socket.
    assert out.target_flow(pbx).local == shared
    # A phone registered through this edge or a sibling: from the socket its NAT knows.
    for owner in ("ea", "eb"):
        phone = schema.Target(
            uri="sip:p@198.51.100.7", host="198.51.100.7", port=5060, edge_id=owner
        )
        flow = out.target_flow(phone, request=True)
        assert (flow.owner, flow.local) == (None, shared)
    # Another host's edge, or a sibling's stream connection: handed over on the bus.
    remote = schema.Target(uri="sip:p@198.51.100.7", host="198.51.100.7", port=5060, edge_id="ez")
    assert out.target_flow(remote, request=True).owner == "ez"
    tcp = schema.Target(
        uri="sip:p@198.51.100.7",
        host="198.51.100.7",
        port=5060,
        transport="tcp",
        connection_id="c1",
        edge_id="eb",
    )
    assert out.target_flow(tcp, request=True).owner == "eb"
