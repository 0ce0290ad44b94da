"""The registrar's location cache, watched on the wire connection, across a NATS restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import nats
import pytest
from prometheus_client import CollectorRegistry

from sipmesh_bus import kv
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.records import aor_key
from sipmesh_bus.schema import SendResponse
from sipmesh_bus.wire import WireClient
from sipmesh_registrar.app import Registrar
from sipmesh_registrar.config import RegistrarConfig, RegistrarSettings
from sipmsg import Response, parse

pytestmark = pytest.mark.integration


async def until(done: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.02)


async def register(registrar: Registrar, kit: Any, req: Any) -> int:
    reply = await registrar.handle(kit.envelope(req))
    assert isinstance(reply, SendResponse)
    response = parse(reply.data)
    assert isinstance(response, Response)
    return response.status


async def test_location_watch_follows_another_replica_across_a_restart(
    nats_server: NatsServer, kit: Any
) -> None:
    nats_config = NatsConfig(url=nats_server.url, reconnect_wait=0.05)
    config = RegistrarConfig(
        nats=nats_config, registrar=RegistrarSettings(domain="example.com", auth=False)
    )
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.05)
    js = nc.jetstream()
    await kv.ensure_jetstream(js)
    wires = [WireClient(nats_config, name=f"registrar-{i}") for i in range(2)]
    replicas: list[Registrar] = []
    try:
        for wire in wires:
            await wire.connect()
            registrar = Registrar(
                config, js, secret=b"0123456789abcdef", registry=CollectorRegistry(), wire=wire
            )
            replicas.append(registrar)
            await registrar.start()
            await registrar.wait_loaded(5.0)
        one, two = replicas
        watch = one._location_watch
        assert watch is not None  # on the wire, not nats-py's watchall()
        key = aor_key("mover", "example.com")
        first = kit.UA(user="mover", call_id="c1", contact_host="192.0.2.1:5060")
        assert await register(two, kit, first.register()) == 200
        await until(lambda: one._cached(key)[0] is not None)

        nats_server.stop()
        await until(lambda: not wires[0].connected)
        nats_server.start()
        await until(lambda: all(w.connected for w in wires) and nc.is_connected)
        # Made again from the last revision it had seen.
        await until(lambda: watch.consumers_created == 2)

        second = kit.UA(user="mover", call_id="c2", contact_host="192.0.2.2:5060")
        assert await register(two, kit, second.register()) == 200

        def both() -> bool:
            record = one._cached(key)[0]
            return record is not None and len(record.bindings) == 2

        await until(both)
    finally:
        for registrar in replicas:
            await registrar.close()
        for wire in wires:
            await wire.close()
        await nc.close()
