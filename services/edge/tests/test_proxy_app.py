"""A forked call through the real edge: real UDP sockets as phones, a fake router on real NATS."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from sipmesh_bus import schema, subjects
from sipmesh_edge.app import Edge
from sipmesh_edge.core import without_top_via
from sipmsg import Request, Response, make_response, parse

pytestmark = pytest.mark.integration


@pytest.fixture
async def edge(start_udp_edge: Callable[..., Awaitable[Edge]]) -> Edge:
    return await start_udp_edge(edge_id="fk", request_timeout=1.0, shutdown_grace=0.2)


class Socket:
    """A plain UDP socket: the caller, or a phone the call is forked to."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    async def recv(self, timeout: float = 3.0) -> tuple[Request | Response, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65535), timeout)
        return parse(data), addr

    async def recv_request(self, method: bytes) -> tuple[Request, tuple[str, int]]:
        """The next request ``method``, skipping retransmissions of others."""
        while True:
            msg, addr = await self.recv()
            if isinstance(msg, Request) and msg.method == method:
                return msg, addr

    async def statuses(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            msg, _ = await self.recv()
            if isinstance(msg, Response):
                out.append(msg.status)
        return out

    def send(self, msg: Request | Response, addr: tuple[str, int]) -> None:
        self.sock.sendto(bytes(msg), addr)

    def close(self) -> None:
        self.sock.close()


class FakeRouter:
    """Forks every INVITE to ``phones``; passes every response it is asked about upstream."""

    def __init__(self, edge_addr: tuple[str, int], phones: list[Socket]) -> None:
        self.edge_addr = edge_addr
        self.phones = phones
        self.asked: list[int] = []

    async def on_request(self, msg: Msg) -> None:
        env = schema.decode_envelope(msg.data)
        req = parse(env.data)
        assert isinstance(req, Request)
        if req.method != b"INVITE":
            await msg.respond(schema.encode(schema.Drop(reason="not in this test")))
            return
        host, port = self.edge_addr
        onward = req.prepend_header(b"Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bKr1".encode())
        targets = [
            schema.Target(uri=f"sip:bob@127.0.0.1:{p.port}", host="127.0.0.1", port=p.port)
            for p in self.phones
        ]
        fwd = schema.Forward(data=bytes(onward), targets=targets, context=b"ctx")
        await msg.respond(schema.encode(fwd))

    async def on_response(self, msg: Msg) -> None:
        env = schema.decode_envelope(msg.data)
        assert env.context == b"ctx"
        resp = parse(env.data)
        assert isinstance(resp, Response)
        self.asked.append(resp.status)
        up = without_top_via(resp)
        await msg.respond(schema.encode(schema.SendResponse(data=bytes(up))))


def invite(caller: Socket) -> bytes:
    return (
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{caller.port};branch=z9hG4bK-fork-1;rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:bob@example.com>\r\nCall-ID: fork-1@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:alice@127.0.0.1:{caller.port}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def test_fork_two_phones_one_answers_the_other_is_cancelled(
    edge: Edge, nc: NatsClient
) -> None:
    caller, desk, mobile = Socket(), Socket(), Socket()
    edge_addr = edge.udp[0].local
    router = FakeRouter(edge_addr, [desk, mobile])
    await nc.subscribe(subjects.SIP_ROUTE, cb=router.on_request)
    await nc.subscribe(subjects.SIP_ROUTE_RESPONSE, cb=router.on_response)
    await nc.flush()
    await nc.flush()
    try:
        caller.send(parse(invite(caller)), edge_addr)
        desk_invite, desk_from = await desk.recv_request(b"INVITE")
        mobile_invite, mobile_from = await mobile.recv_request(b"INVITE")
        # One client transaction per branch, each with its own edge branch.
        assert desk_invite.via_branch != mobile_invite.via_branch
        assert desk_invite.uri == f"sip:bob@127.0.0.1:{desk.port}".encode()
        desk.send(make_response(desk_invite, 180), desk_from)
        mobile.send(make_response(mobile_invite, 180), mobile_from)
        assert await caller.statuses(3) == [100, 180, 180]
        mobile.send(make_response(mobile_invite, 200), mobile_from)
        assert await caller.statuses(1) == [200]
        # §16.7 step 10: the desk phone, still ringing, gets a CANCEL.
        cancel, _ = await desk.recv_request(b"CANCEL")
        assert cancel.via_branch == desk_invite.via_branch
        desk.send(make_response(cancel, 200), desk_from)
        desk.send(make_response(desk_invite, 487), desk_from)
        ack, _ = await desk.recv_request(b"ACK")  # hop-by-hop ACK of the 487
        assert ack.via_branch == desk_invite.via_branch
        # The router heard of the 200 only: the 487 ended a cancelled branch.
        await asyncio.sleep(0.2)
        assert router.asked == [200]
    finally:
        for s in (caller, desk, mobile):
            s.close()


async def test_fork_two_phones_both_fail_the_router_hears_the_best_once(
    edge: Edge, nc: NatsClient
) -> None:
    caller, desk, mobile = Socket(), Socket(), Socket()
    edge_addr = edge.udp[0].local
    router = FakeRouter(edge_addr, [desk, mobile])
    await nc.subscribe(subjects.SIP_ROUTE, cb=router.on_request)
    await nc.subscribe(subjects.SIP_ROUTE_RESPONSE, cb=router.on_response)
    await nc.flush()
    await nc.flush()
    try:
        caller.send(parse(invite(caller)), edge_addr)
        desk_invite, desk_from = await desk.recv_request(b"INVITE")
        mobile_invite, mobile_from = await mobile.recv_request(b"INVITE")
        desk.send(make_response(desk_invite, 486), desk_from)
        await desk.recv_request(b"ACK")
        mobile.send(make_response(mobile_invite, 480), mobile_from)
        await mobile.recv_request(b"ACK")
        assert await caller.statuses(2) == [100, 486]
        assert router.asked == [486]
    finally:
        for s in (caller, desk, mobile):
            s.close()
