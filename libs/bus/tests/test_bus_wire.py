"""sipmesh_bus.wire.WireClient against a real nats-server, with nats-py on the other side."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer, find_nats_server
from sipmesh_bus.runtime import security_options
from sipmesh_bus.wire import (
    MsgCallback,
    PayloadTooLargeError,
    WireAuthError,
    WireClient,
    WireClosedError,
)

pytestmark = pytest.mark.integration

Got = list[tuple[bytes, bytes, bytes, int | None]]


def _collector() -> tuple[Got, asyncio.Event, MsgCallback]:
    got: Got = []
    event = asyncio.Event()

    def cb(subject: bytes, reply: bytes, payload: bytes, status: int | None) -> None:
        got.append((subject, reply, payload, status))
        event.set()

    return got, event, cb


async def _wait(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), 5)
    event.clear()


async def _flushed(nc: NatsClient) -> None:
    # nats-py writes flush()'s PING straight to the socket, ahead of a SUB
    # still queued for its flusher task: the second PING follows the SUB.
    await nc.flush()
    await nc.flush()


@pytest.fixture
async def wire(nats_url: str) -> AsyncIterator[WireClient]:
    client = WireClient(NatsConfig(url=nats_url), name="wire-test")
    await client.connect()
    yield client
    await client.close()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def test_wire_pub_sub_to_itself(wire: WireClient) -> None:
    got: Got = []
    done = asyncio.Event()

    def cb(subject: bytes, reply: bytes, payload: bytes, status: int | None) -> None:
        got.append((subject, reply, payload, status))
        if len(got) == 3:
            done.set()

    wire.subscribe("wire.t1.*", cb)
    await wire.flush()
    assert wire.publish("wire.t1.a", b"one")
    assert wire.publish(b"wire.t1.b", b"", reply="r.1")
    assert wire.publish("wire.t1.c", b"x" * 100_000)
    await asyncio.wait_for(done.wait(), 5)
    assert got == [
        (b"wire.t1.a", b"", b"one", None),
        (b"wire.t1.b", b"r.1", b"", None),
        (b"wire.t1.c", b"", b"x" * 100_000, None),
    ]


async def test_wire_answers_a_nats_py_request(wire: WireClient, nc: NatsClient) -> None:
    def responder(subject: bytes, reply: bytes, payload: bytes, status: int | None) -> None:
        wire.publish(reply, payload.upper())

    wire.subscribe("wire.t2", responder, queue="q")
    await wire.flush()
    msg = await nc.request("wire.t2", b"hello", timeout=2)
    assert msg.data == b"HELLO"


async def test_wire_requests_a_nats_py_responder(wire: WireClient, nc: NatsClient) -> None:
    async def respond(msg: Msg) -> None:
        await msg.respond(msg.data[::-1])

    await nc.subscribe("wire.t3", cb=respond)
    await _flushed(nc)
    got, event, cb = _collector()
    wire.subscribe("_INBOX.wire3.*", cb)
    await wire.flush()
    wire.publish("wire.t3", b"abc", reply="_INBOX.wire3.1")
    await _wait(event)
    assert got == [(b"_INBOX.wire3.1", b"", b"cba", None)]


async def test_wire_no_responders_status(wire: WireClient) -> None:
    got, event, cb = _collector()
    wire.subscribe("_INBOX.wire4.*", cb)
    await wire.flush()
    wire.publish("wire.t4.nobody", b"x", reply="_INBOX.wire4.7")
    await _wait(event)
    assert got == [(b"_INBOX.wire4.7", b"", b"", 503)]


async def test_wire_headers_from_nats_py_are_skipped(wire: WireClient, nc: NatsClient) -> None:
    got, event, cb = _collector()
    wire.subscribe("wire.t5", cb)
    await wire.flush()
    await nc.publish("wire.t5", b"body", headers={"X-A": "1"})
    await _wait(event)
    assert got == [(b"wire.t5", b"", b"body", None)]


async def test_wire_publishes_a_ready_header_block(wire: WireClient, nc: NatsClient) -> None:
    sub = await nc.subscribe("wire.t6")
    await _flushed(nc)
    block = b"NATS/1.0\r\nNats-Msg-Id: abc.1\r\nX-B: two words\r\n\r\n"
    assert wire.publish("wire.t6", b"body", headers=block)
    msg = await sub.next_msg(timeout=5)
    assert msg.data == b"body"
    assert msg.headers == {"Nats-Msg-Id": "abc.1", "X-B": "two words"}


@pytest.mark.parametrize(
    "block",
    [b"Nats-Msg-Id: x\r\n\r\n", b"NATS/1.0\r\nNats-Msg-Id: x\r\n", b"NATS/1.0\r\n"],
    ids=["no-version", "no-empty-line", "unterminated"],
)
async def test_wire_refuses_a_malformed_header_block(wire: WireClient, block: bytes) -> None:
    with pytest.raises(ValueError, match="not a NATS header block"):
        wire.publish("wire.t7", b"x", headers=block)
    await wire.flush()  # nothing half-written went out: the connection still works


async def test_wire_subscribe_raw_gets_the_header_block(wire: WireClient, nc: NatsClient) -> None:
    got: list[tuple[bytes, bytes, bytes, bytes]] = []
    event = asyncio.Event()

    def cb(subject: bytes, reply: bytes, payload: bytes, headers: bytes) -> None:
        got.append((subject, reply, payload, headers))
        event.set()

    plain, _, plain_cb = _collector()
    wire.subscribe_raw("wire.t8", cb)
    wire.subscribe("wire.t8", plain_cb)
    await wire.flush()
    await nc.publish("wire.t8", b"one", headers={"KV-Operation": "DEL"})
    await _wait(event)
    await nc.publish("wire.t8", b"two")
    await _wait(event)
    assert got == [
        (b"wire.t8", b"", b"one", b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n"),
        (b"wire.t8", b"", b"two", b""),
    ]
    await wire.flush()  # the plain subscription's copies came before the PONG
    # A plain subscription on the same subject still gets (status) only.
    assert plain == [(b"wire.t8", b"", b"one", None), (b"wire.t8", b"", b"two", None)]


async def test_wire_queue_group_shares_messages(nats_url: str, wire: WireClient) -> None:
    other = WireClient(NatsConfig(url=nats_url), name="wire-test-2")
    await other.connect()
    try:
        counts = [0, 0]

        def first(*_: object) -> None:
            counts[0] += 1

        def second(*_: object) -> None:
            counts[1] += 1

        wire.subscribe("wire.t6", first, queue="g")
        other.subscribe("wire.t6", second, queue="g")
        await wire.flush()
        await other.flush()
        for _ in range(200):
            wire.publish("wire.t6", b"m")
        await wire.flush()
        for _ in range(50):
            if sum(counts) == 200:
                break
            await asyncio.sleep(0.02)
        assert sum(counts) == 200  # each message to exactly one member
        assert counts[0] > 0
        assert counts[1] > 0
    finally:
        await other.close()


async def test_wire_unsubscribe_stops_delivery(wire: WireClient) -> None:
    got, _, cb = _collector()
    sid = wire.subscribe("wire.t7", cb)
    await wire.flush()
    wire.unsubscribe(sid)
    wire.publish("wire.t7", b"late")
    await wire.flush()
    await asyncio.sleep(0.05)
    assert got == []


async def test_wire_payload_over_max_payload_is_refused(wire: WireClient) -> None:
    assert wire.max_payload == 1024 * 1024  # from the server's INFO
    with pytest.raises(PayloadTooLargeError):
        wire.publish("wire.t8", b"x" * (wire.max_payload + 1))


async def test_wire_closed_client_refuses_publish_and_flush(nats_url: str) -> None:
    client = WireClient(NatsConfig(url=nats_url), name="wire-test")
    assert not client.publish("x", b"y")
    await client.connect()
    assert client.connected
    await client.close()
    assert not client.connected
    assert not client.publish("x", b"y")
    with pytest.raises(WireClosedError):
        await client.flush()


async def test_wire_reconnects_after_server_restart(nats_server: NatsServer) -> None:
    changes: list[bool] = []
    client = WireClient(
        NatsConfig(url=nats_server.url, reconnect_wait=0.05),
        name="wire-r",
        on_change=changes.append,
    )
    await client.connect()
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.05)
    try:
        got, event, cb = _collector()
        client.subscribe("wire.r", cb, queue="q")
        await client.flush()
        nats_server.stop()
        for _ in range(100):
            if changes == [False]:
                break
            await asyncio.sleep(0.02)
        assert changes == [False]
        assert not client.connected
        assert not client.publish("wire.r", b"dropped")  # down: the caller answers at once
        nats_server.start()
        for _ in range(250):
            if client.connected:
                break
            await asyncio.sleep(0.02)
        assert changes == [False, True]
        await client.flush()
        await _flushed(nc)
        await nc.publish("wire.r", b"after restart")  # the SUB was sent again
        await _wait(event)
        assert got == [(b"wire.r", b"", b"after restart", None)]
    finally:
        await nc.close()
        await client.close()


async def test_wire_dead_server_is_detected_by_pings(tmp_path: Path) -> None:
    # A "server" that sends INFO, answers the handshake, then goes silent.
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b'INFO {"max_payload":1024}\r\n')
        await reader.readline()  # CONNECT
        await reader.readline()  # PING
        writer.write(b"PONG\r\n")
        await reader.read()  # never answers again, until the client hangs up

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    changes: list[bool] = []
    client = WireClient(
        NatsConfig(url=f"nats://127.0.0.1:{port}", reconnect_wait=0.05),
        name="wire-p",
        ping_interval=0.05,
        max_outstanding_pings=2,
        on_change=changes.append,
    )
    try:
        await client.connect()
        assert client.max_payload == 1024
        for _ in range(100):
            if False in changes:
                break
            await asyncio.sleep(0.02)
        assert changes[0] is False
    finally:
        await client.close()
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_wire_permissions_error_keeps_the_connection(tmp_path: Path) -> None:
    conf = tmp_path / "perm.conf"
    conf.write_text(
        'authorization { users = [ { user: "u", password: "p", '
        'permissions: { publish: { deny: ["secret.>"] } } } ] }\n'
    )
    with _server(tmp_path, "-c", str(conf)) as url:
        client = WireClient(NatsConfig(url=url, user="u", password="p"), name="wire-e")
        await client.connect()
        try:
            client.publish("secret.x", b"no")
            await client.flush()
            assert client.last_error is not None
            assert "Permissions Violation" in client.last_error
            assert client.connected
            got, event, cb = _collector()
            client.subscribe("open", cb)
            await client.flush()
            client.publish("open", b"yes")
            await _wait(event)
            assert got == [(b"open", b"", b"yes", None)]
        finally:
            await client.close()


@pytest.mark.parametrize("where", ["config", "url"])
async def test_wire_user_password(tmp_path: Path, where: str) -> None:
    with _server(tmp_path, "--user", "svc", "--pass", "s3cret") as url:
        if where == "url":
            config = NatsConfig(url=url.replace("nats://", "nats://svc:s3cret@"))
        else:
            config = NatsConfig(url=url, user="svc", password="s3cret")
        client = WireClient(config, name="w", security=security_options(config))
        await client.connect()
        await client.flush()
        await client.close()
        bad = NatsConfig(url=url, user="svc", password="wrong")
        with pytest.raises(WireAuthError):
            await WireClient(bad, name="w", security=security_options(bad)).connect()


async def test_wire_token(tmp_path: Path) -> None:
    with _server(tmp_path, "--auth", "tok-123") as url:
        config = NatsConfig(url=url, token="tok-123")
        client = WireClient(config, name="w", security=security_options(config))
        await client.connect()
        await client.flush()
        await client.close()
        in_url = WireClient(NatsConfig(url=url.replace("nats://", "nats://tok-123@")), name="w")
        await in_url.connect()
        await in_url.close()
        with pytest.raises(WireAuthError):
            await WireClient(
                NatsConfig(url=url, token="nope"), name="w", security={"token": "nope"}
            ).connect()


async def test_wire_nkey_seed(tmp_path: Path) -> None:
    import nkeys  # type: ignore[import-untyped]

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed + b"\n")
    conf = tmp_path / "nkey.conf"
    conf.write_text(f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n')
    with _server(tmp_path, "-c", str(conf)) as url:
        config = NatsConfig(url=url, nkeys_seed_file=str(seed_file))
        client = WireClient(config, name="w", security=security_options(config))
        await client.connect()
        await client.flush()
        await client.close()
        with pytest.raises(WireAuthError):
            await WireClient(NatsConfig(url=url), name="w").connect()


class _server:  # noqa: N801 - used as a context manager like a function
    def __init__(self, tmp: Path, *args: str) -> None:
        self._tmp = tmp
        self._args = args
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        ports = self._tmp / "ports"
        ports.mkdir(exist_ok=True)
        argv = [str(find_nats_server()), "-a", "127.0.0.1", "-p", "-1", *self._args]
        argv += ["--ports_file_dir", str(ports)]
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            files = list(ports.glob("*.ports"))
            if files and files[0].read_text().strip():
                url: str = json.loads(files[0].read_text())["nats"][0]
                return url
            time.sleep(0.02)
        raise AssertionError("nats-server did not start")

    def __exit__(self, *_: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)


async def test_wire_tls_with_client_certificate(tmp_path: Path) -> None:
    from sipmesh_edge.tls import generate_self_signed

    for name in ("server", "client"):
        generate_self_signed(
            tmp_path / f"{name}.pem",
            tmp_path / f"{name}.key",
            common_name=name,
            hosts=("127.0.0.1",),
        )
    args = ["--tls", "--tlscert", str(tmp_path / "server.pem")]
    args += ["--tlskey", str(tmp_path / "server.key"), "--tlsverify"]
    args += ["--tlscacert", str(tmp_path / "client.pem")]
    with _server(tmp_path, *args) as url:
        config = NatsConfig(
            url=url,
            tls_ca_file=str(tmp_path / "server.pem"),
            tls_cert_file=str(tmp_path / "client.pem"),
            tls_key_file=str(tmp_path / "client.key"),
        )
        client = WireClient(config, name="w", security=security_options(config))
        await client.connect()
        try:
            got, event, cb = _collector()
            client.subscribe("tls.x", cb)
            await client.flush()
            client.publish("tls.x", b"secret")
            await _wait(event)
            assert got == [(b"tls.x", b"", b"secret", None)]
        finally:
            await client.close()
        # The server asks for TLS in its INFO: a plain nats:// URL without TLS
        # settings still upgrades, and fails on the untrusted certificate.
        plain = WireClient(NatsConfig(url=url, connect_timeout=2.0), name="w")
        with pytest.raises(Exception):  # noqa: B017, PT011 - ssl error, by version
            await plain.connect()
