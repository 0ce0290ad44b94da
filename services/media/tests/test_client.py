"""The UDP ng client against a scripted loopback responder: retries, errors, matching."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest

from sipmesh_media import ng
from sipmesh_media.client import NgClient
from sipmesh_media.errors import NgReplyError, NgTimeoutError

Script = Callable[[bytes, int], list[bytes]]
#: (request datagram, how many seen so far) -> datagrams to answer with.


class Responder(asyncio.DatagramProtocol):
    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.seen.append(data)
        assert self.transport is not None
        for out in self.script(data, len(self.seen)):
            self.transport.sendto(out, addr)


def cookie_of(data: bytes) -> bytes:
    return data.split(b" ", 1)[0]


async def responder(script: Script) -> tuple[Responder, int]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: Responder(script), local_addr=("127.0.0.1", 0)
    )
    return proto, transport.get_extra_info("sockname")[1]


@pytest.fixture
async def pong() -> AsyncIterator[tuple[Responder, int]]:
    proto, port = await responder(lambda d, _n: [cookie_of(d) + b" d6:result4:ponge"])
    yield proto, port
    assert proto.transport is not None
    proto.transport.close()


async def test_client_ping_round_trip(pong: tuple[Responder, int]) -> None:
    trips: list[tuple[str, float]] = []
    client = await NgClient.open(
        "127.0.0.1", pong[1], on_round_trip=lambda c, s: trips.append((c, s))
    )
    try:
        response = await client.request(ng.ping())
    finally:
        client.close()
    assert response.result == "pong"
    assert [c for c, _ in trips] == ["ping"]


async def test_client_retries_the_same_datagram_after_silence() -> None:
    # Silent to the first two sends, answers the third.
    proto, port = await responder(
        lambda d, n: [cookie_of(d) + b" d6:result4:ponge"] if n == 3 else []
    )
    client = await NgClient.open("127.0.0.1", port, timeout=0.05, tries=3)
    try:
        response = await client.request(ng.ping())
    finally:
        client.close()
        assert proto.transport is not None
        proto.transport.close()
    assert response.ok
    assert len(proto.seen) == 3
    assert len(set(proto.seen)) == 1  # same cookie: RTPEngine answers from its cache


async def test_client_times_out_with_a_clear_error() -> None:
    proto, port = await responder(lambda _d, _n: [])
    client = await NgClient.open("127.0.0.1", port, timeout=0.03, tries=2)
    try:
        with pytest.raises(NgTimeoutError) as exc_info:
            await client.request(ng.ping())
    finally:
        client.close()
        assert proto.transport is not None
        proto.transport.close()
    assert exc_info.value.address == f"127.0.0.1:{port}"
    assert "after 2 x 0.03 s" in str(exc_info.value)
    assert len(proto.seen) == 2


async def test_client_error_reply_raises_with_reason() -> None:
    proto, port = await responder(
        lambda d, _n: [cookie_of(d) + b" d6:result5:error12:error-reason15:Unknown call-ide"]
    )
    client = await NgClient.open("127.0.0.1", port)
    try:
        with pytest.raises(NgReplyError) as exc_info:
            await client.request(ng.query(call_id="nope"))
    finally:
        client.close()
        assert proto.transport is not None
        proto.transport.close()
    assert exc_info.value.reason == "Unknown call-id"
    assert exc_info.value.command == "query"


async def test_client_ignores_garbage_and_foreign_cookies() -> None:
    proto, port = await responder(
        lambda d, _n: [
            b"garbage",
            b"someone-else d6:result4:ponge",
            cookie_of(d) + b" d6:result2:ok7:warning3:hm!e",
        ]
    )
    client = await NgClient.open("127.0.0.1", port)
    try:
        response = await client.request(ng.delete(call_id="x"))
    finally:
        client.close()
        assert proto.transport is not None
        proto.transport.close()
    assert response.warning == "hm!"


async def test_client_matches_concurrent_replies_by_cookie() -> None:
    # Answers every request twice, echoing the call-id back as the warning.
    def script(data: bytes, _n: int) -> list[bytes]:
        _, body = ng.decode_message(data)
        call = body[b"call-id"]
        assert isinstance(call, bytes)
        reply = cookie_of(data) + b" d6:result2:ok7:warning%d:%se" % (len(call), call)
        return [reply, reply]

    proto, port = await responder(script)
    client = await NgClient.open("127.0.0.1", port)
    try:
        replies = await asyncio.gather(
            *(client.request(ng.query(call_id=f"c{i}")) for i in range(50))
        )
    finally:
        client.close()
        assert proto.transport is not None
        proto.transport.close()
    assert [r.warning for r in replies] == [f"c{i}" for i in range(50)]


async def test_client_close_fails_pending_requests() -> None:
    proto, port = await responder(lambda _d, _n: [])
    client = await NgClient.open("127.0.0.1", port, timeout=5.0)
    pending = asyncio.ensure_future(client.request(ng.ping()))
    await asyncio.sleep(0.01)
    client.close()
    with pytest.raises(NgTimeoutError):
        await pending
    assert proto.transport is not None
    proto.transport.close()
