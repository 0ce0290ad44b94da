"""sipmesh_bus.runtime against real NATS: queue groups, errors, HTTP, readiness, drain."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import msgspec
import nats.errors
import pytest
from prometheus_client import CollectorRegistry

from sipmesh_bus import schema
from sipmesh_bus.config import HttpConfig, NatsConfig, ServiceConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.runtime import Service, StoppedError, connect
from sipmesh_bus.schema import Drop, Envelope, SendResponse

pytestmark = pytest.mark.integration

SUBJECT = "test.runtime.echo"


def _config(url: str, *, drain_timeout: float = 5.0, connect_timeout: float = 2.0) -> ServiceConfig:
    nats_config = NatsConfig(
        url=url, reconnect_wait=0.2, drain_timeout=drain_timeout, connect_timeout=connect_timeout
    )
    return ServiceConfig(nats=nats_config)


def _envelope(data: bytes) -> Envelope:
    return Envelope(
        edge_id="edge-1",
        transport="udp",
        source_host="127.0.0.1",
        source_port=5062,
        local_host="127.0.0.1",
        local_port=5060,
        received_at=0.0,
        data=data,
    )


async def _get(port: int, path: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    return await asyncio.to_thread(fetch)


@pytest.fixture
async def service(nats_url: str) -> AsyncIterator[Service]:
    svc = Service(
        "test", _config(nats_url), registry=CollectorRegistry(), install_signal_handlers=False
    )
    await svc.start()
    try:
        yield svc
    finally:
        await svc.close()


async def test_serve_queue_group_two_replicas_share_the_load(nats_url: str) -> None:
    subject = f"{SUBJECT}.qg"
    seen: dict[str, int] = {"a": 0, "b": 0}
    replicas = []
    for name in ("a", "b"):
        svc = Service(
            name, _config(nats_url), registry=CollectorRegistry(), install_signal_handlers=False
        )
        await svc.start()

        async def handle(env: Envelope, name: str = name) -> SendResponse:
            seen[name] += 1
            return SendResponse(data=name.encode() + b":" + env.data)

        await svc.serve(subject, handle, queue="router", decode=schema.decode_envelope)
        replicas.append(svc)
    client = await connect(NatsConfig(url=nats_url), name="client", forever=False)
    try:
        answers = set()
        for i in range(40):
            msg = await client.request(subject, schema.encode(_envelope(b"%d" % i)), timeout=2)
            reply = schema.decode_reply(msg.data)
            assert isinstance(reply, SendResponse)
            answers.add(reply.data.split(b":")[0])
            assert reply.data.endswith(b":%d" % i)
        # Each request answered exactly once (queue group), by both replicas over 40.
        assert seen["a"] + seen["b"] == 40
        assert answers == {b"a", b"b"}
    finally:
        await client.close()
        for svc in replicas:
            await svc.close()


async def test_serve_maps_bad_requests_and_handler_errors(service: Service) -> None:
    subject = f"{SUBJECT}.errors"

    async def handle(env: Envelope) -> SendResponse:
        if env.data == b"boom":
            raise RuntimeError("boom")
        return SendResponse(data=env.data)

    def on_error(exc: Exception, raw: bytes) -> Drop:
        kind = (
            "bad request"
            if isinstance(exc, msgspec.ValidationError | msgspec.DecodeError)
            else "failed"
        )
        return Drop(reason=f"{kind}: {type(exc).__name__} ({len(raw)} bytes)")

    await service.serve(
        subject, handle, queue="q", decode=schema.decode_envelope, on_error=on_error
    )
    garbage = await service.nc.request(subject, b"\xc1not msgpack", timeout=2)
    assert schema.decode_reply(garbage.data) == Drop(reason="bad request: DecodeError (12 bytes)")
    boom = await service.nc.request(subject, schema.encode(_envelope(b"boom")), timeout=2)
    reply = schema.decode_reply(boom.data)
    assert isinstance(reply, Drop)
    assert reply.reason.startswith("failed: RuntimeError")

    registry = service.registry
    assert (
        registry.get_sample_value(
            "sipmesh_bus_requests_total", {"subject": subject, "outcome": "bad_request"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "sipmesh_bus_requests_total", {"subject": subject, "outcome": "error"}
        )
        == 1
    )


async def test_serve_without_on_error_sends_nothing(service: Service) -> None:
    subject = f"{SUBJECT}.silent"

    async def handle(env: Envelope) -> SendResponse:
        raise RuntimeError("no")

    await service.serve(subject, handle, queue="q", decode=schema.decode_envelope)
    with pytest.raises(nats.errors.TimeoutError):
        await service.nc.request(subject, schema.encode(_envelope(b"x")), timeout=0.5)


async def test_http_healthz_readyz_metrics(service: Service) -> None:
    subject = f"{SUBJECT}.metrics"

    async def handle(env: Envelope) -> SendResponse:
        return SendResponse(data=env.data)

    await service.serve(subject, handle, queue="q", decode=schema.decode_envelope)
    await service.nc.request(subject, schema.encode(_envelope(b"m")), timeout=2)

    assert await _get(service.http_port, "/healthz") == (200, "ok\n")
    assert await _get(service.http_port, "/readyz") == (200, "ready\n")
    status, body = await _get(service.http_port, "/metrics")
    assert status == 200
    assert f'sipmesh_bus_requests_total{{outcome="ok",subject="{subject}"}} 1.0' in body
    assert "sipmesh_nats_connected 1.0" in body
    assert "sipmesh_bus_request_duration_seconds_bucket" in body
    assert (await _get(service.http_port, "/nope"))[0] == 404


async def test_readyz_follows_custom_checks(service: Service) -> None:
    healthy = True

    async def check() -> bool:
        return healthy

    async def broken() -> bool:
        raise ConnectionError("db down")

    service.add_readiness_check("routing-kv", check)
    assert (await _get(service.http_port, "/readyz"))[0] == 200
    healthy = False
    assert await _get(service.http_port, "/readyz") == (503, "not ready: routing-kv\n")
    healthy = True
    service.add_readiness_check("db", broken)
    assert await _get(service.http_port, "/readyz") == (503, "not ready: db: ConnectionError\n")


async def _wait_status(port: int, path: str, status: int, seconds: float = 10) -> str:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        got, body = await _get(port, path)
        if got == status:
            return body
        assert asyncio.get_running_loop().time() < deadline, f"{path} stayed {got}: {body}"
        await asyncio.sleep(0.1)


async def test_readyz_tracks_nats_server_stop_and_restart(nats_server: NatsServer) -> None:
    svc = Service(
        "test",
        _config(nats_server.url),
        registry=CollectorRegistry(),
        install_signal_handlers=False,
    )
    await svc.start()
    try:
        assert (await _get(svc.http_port, "/readyz"))[0] == 200
        await asyncio.to_thread(nats_server.stop)
        body = await _wait_status(svc.http_port, "/readyz", 503)
        assert body == "not ready: NATS not connected\n"
        assert (await _get(svc.http_port, "/healthz"))[0] == 200  # alive, just not ready
        assert svc.registry.get_sample_value("sipmesh_nats_connected") == 0

        await asyncio.to_thread(nats_server.start)
        await _wait_status(svc.http_port, "/readyz", 200)
        for _ in range(50):  # the gauge follows both connections' callbacks
            if svc.registry.get_sample_value("sipmesh_nats_connected") == 1:
                break
            await asyncio.sleep(0.1)
        assert svc.registry.get_sample_value("sipmesh_nats_connected") == 1
        # One reconnection each: the nats-py and the wire connection.
        assert svc.registry.get_sample_value("sipmesh_nats_reconnects_total") == 2
    finally:
        await svc.close()


async def test_close_lets_inflight_requests_finish(nats_url: str) -> None:
    svc = Service(
        "test", _config(nats_url), registry=CollectorRegistry(), install_signal_handlers=False
    )
    await svc.start()
    started = asyncio.Event()
    subject = f"{SUBJECT}.drain"

    async def slow(env: Envelope) -> SendResponse:
        started.set()
        await asyncio.sleep(0.3)
        return SendResponse(data=b"done")

    await svc.serve(subject, slow, queue="q", decode=schema.decode_envelope)
    client = await connect(NatsConfig(url=nats_url), name="client", forever=False)
    try:
        pending = asyncio.create_task(
            client.request(subject, schema.encode(_envelope(b"x")), timeout=3)
        )
        await started.wait()
        await svc.close()
        reply = schema.decode_reply((await pending).data)
        assert reply == SendResponse(data=b"done")
    finally:
        await client.close()


async def test_close_cancels_requests_past_the_drain_deadline(nats_url: str) -> None:
    svc = Service(
        "test",
        _config(nats_url, drain_timeout=0.2),
        registry=CollectorRegistry(),
        install_signal_handlers=False,
    )
    await svc.start()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck(env: Envelope) -> SendResponse:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return SendResponse(data=b"never")

    await svc.serve(f"{SUBJECT}.stuck", stuck, queue="q", decode=schema.decode_envelope)
    await svc.nc.publish(f"{SUBJECT}.stuck", schema.encode(_envelope(b"x")), reply="nobody")
    await asyncio.wait_for(started.wait(), 2)
    await asyncio.wait_for(svc.close(), 5)
    assert cancelled.is_set()


async def test_stop_while_connecting_raises_stopped() -> None:
    # Nothing listens on this URL: start() keeps trying until stop().
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    svc = Service(
        "test",
        _config(f"nats://127.0.0.1:{port}", connect_timeout=0.2),
        registry=CollectorRegistry(),
        install_signal_handlers=False,
    )
    asyncio.get_running_loop().call_later(0.5, svc.stop)
    with pytest.raises(StoppedError):
        await asyncio.wait_for(svc.start(), 5)


async def test_http_port_taken_raises_oserror(nats_url: str) -> None:
    first = Service(
        "a", _config(nats_url), registry=CollectorRegistry(), install_signal_handlers=False
    )
    await first.start()
    try:
        config = ServiceConfig(nats=NatsConfig(url=nats_url), http=HttpConfig(port=first.http_port))
        second = Service("b", config, registry=CollectorRegistry(), install_signal_handlers=False)
        with pytest.raises(OSError, match="in use"):
            await second.start()
    finally:
        await first.close()
