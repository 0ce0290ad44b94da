"""Fixtures shared by the edge's integration tests (real nats-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import pytest
from nats.aio.client import Client as NatsClient
from prometheus_client import CollectorRegistry

from sipmesh_bus.config import HttpConfig, NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_edge.app import Edge, EdgeConfig

StartEdge = Callable[..., Awaitable[Edge]]


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    """A plain NATS client on the test's private server (a fake service, a spy)."""
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def start_udp_edge(nats_server: NatsServer) -> AsyncIterator[StartEdge]:
    """Starts an in-process edge on a free UDP port; every one is closed after the test."""
    started: list[Edge] = []

    async def start(*, edge_id: str, request_timeout: float, shutdown_grace: float) -> Edge:
        config = EdgeConfig(
            edge_id=edge_id,
            udp=["127.0.0.1:0"],
            request_timeout=request_timeout,
            nats=NatsConfig(url=nats_server.url, reconnect_wait=0.1, drain_timeout=1.0),
            http=HttpConfig(port=0),
            shutdown_grace=shutdown_grace,
        )
        app = Edge(config, registry=CollectorRegistry(), install_signal_handlers=False)
        await app.start()
        started.append(app)
        return app

    try:
        yield start
    finally:
        for app in reversed(started):
            await app.close()
