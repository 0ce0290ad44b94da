"""NATS authentication and TLS between services (``nats:`` config), on real nats-servers.

Each test runs its own nats-server with ``--user/--pass``, ``--auth`` or TLS,
connects through :func:`sipmesh_bus.runtime.connect` the way every service
does, and checks that the wrong credentials give one line without the secret,
and that no log line, metric or config error ever shows a password.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sipmesh_bus.config import ConfigError, NatsConfig, ServiceConfig, load_config
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.runtime import NatsAuthError, Service, connect, security_options
from sipmesh_edge.tls import generate_self_signed

pytestmark = pytest.mark.integration

PASSWORD = "Tr0ub4dor-NATS-7q"
TOKEN = "tok-9f8e7d6c5b4a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _server(tmp: Path, *args: str) -> NatsServer:
    """A started nats-server with JetStream and the extra command-line ``args``."""
    server = NatsServer(store_dir=tmp / "nats", args=args)
    server.start()
    return server


@pytest.fixture
def password_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = _server(tmp_path, "--user", "svc", "--pass", PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "nats-password"
    path.write_text(PASSWORD + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


async def test_nats_password_from_file_connects_a_service(
    password_server: NatsServer, password_file: Path
) -> None:
    config = ServiceConfig(
        nats=NatsConfig(url=password_server.url, user="svc", password_file=str(password_file))
    )
    async with Service("probe", config, install_signal_handlers=False) as svc:
        assert svc.nc.is_connected
        await svc.nc.publish("ping", b"x")


@pytest.mark.parametrize("forever", [False, True], ids=["one-shot", "service"])
async def test_nats_wrong_password_is_one_line_without_the_secret(
    password_server: NatsServer, forever: bool
) -> None:
    wrong = "Wr0ng-" + PASSWORD
    config = NatsConfig(url=password_server.url, user="svc", password=wrong, connect_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(NatsAuthError) as exc_info:
        await connect(config, name="probe", forever=forever)
    assert time.monotonic() - started < 5.0  # no retrying forever on bad credentials
    text = str(exc_info.value)
    assert "\n" not in text
    assert "refused the credentials" in text
    assert password_server.url in text
    assert wrong not in text
    assert PASSWORD not in text
    assert isinstance(exc_info.value, ConfigError)  # run_service: one line, exit 2


async def test_nats_password_in_the_url_is_never_shown(password_server: NatsServer) -> None:
    url = password_server.url.replace("nats://", f"nats://svc:{PASSWORD}@")
    config = NatsConfig(url=url)
    nc = await connect(config, name="probe", forever=False)
    await nc.close()
    assert config.safe_url == password_server.url.replace("nats://", "nats://***@")
    bad = NatsConfig(url=url.replace(PASSWORD, "nope"))
    with pytest.raises(NatsAuthError) as exc_info:
        await connect(bad, name="probe", forever=False)
    assert "nope" not in str(exc_info.value)


async def test_nats_token_auth(tmp_path: Path) -> None:
    server = _server(tmp_path, "--auth", TOKEN)
    try:
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN, encoding="utf-8")
        nc = await connect(
            NatsConfig(url=server.url, token_file=str(token_file)), name="p", forever=False
        )
        assert nc.is_connected
        await nc.close()
        with pytest.raises(NatsAuthError):
            await connect(NatsConfig(url=server.url, token="other"), name="p", forever=False)
    finally:
        server.stop()


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("server", "client"):
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        generate_self_signed(cert, key, common_name=f"nats-{name}", hosts=("127.0.0.1",))
        out[name], out[name + "_key"] = cert, key
    return out


async def test_nats_tls_and_client_certificates(tmp_path: Path, certs: dict[str, Path]) -> None:
    # Mutual TLS: the server verifies clients against the client's self-signed cert.
    server = _server(
        tmp_path,
        "--tls", "--tlscert", str(certs["server"]), "--tlskey", str(certs["server_key"]),
        "--tlsverify", "--tlscacert", str(certs["client"]),
    )  # fmt: skip
    try:
        config = NatsConfig(
            url=server.url,
            tls_ca_file=str(certs["server"]),
            tls_cert_file=str(certs["client"]),
            tls_key_file=str(certs["client_key"]),
        )
        assert config.tls
        nc = await connect(config, name="tls-probe", forever=False)
        assert nc.is_connected
        await nc.close()
        # Without a client certificate the server refuses the handshake.
        no_cert = NatsConfig(url=server.url, tls_ca_file=str(certs["server"]))
        with pytest.raises(Exception):  # noqa: B017,PT011 - ssl or nats error, by version
            await connect(no_cert, name="tls-probe", forever=False)
        # An untrusted server certificate is refused too.
        wrong_ca = NatsConfig(
            url=server.url,
            tls_ca_file=str(certs["client"]),
            tls_cert_file=str(certs["client"]),
            tls_key_file=str(certs["client_key"]),
        )
        with pytest.raises(Exception):  # noqa: B017,PT011
            await connect(wrong_ca, name="tls-probe", forever=False)
    finally:
        server.stop()


def test_nats_security_options_reject_missing_files(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    cases = [
        (NatsConfig(user="svc", password_file=missing), "nats.password_file"),
        (NatsConfig(token_file=missing), "nats.token_file"),
        (NatsConfig(creds_file=missing), "nats.creds_file"),
        (NatsConfig(tls_ca_file=missing), "nats TLS files"),
    ]
    for config, setting in cases:
        with pytest.raises(ConfigError) as exc_info:
            security_options(config)
        assert setting in str(exc_info.value)
        assert "\n" not in str(exc_info.value)


def test_nats_config_repr_and_errors_hide_secrets(tmp_path: Path) -> None:
    config = NatsConfig(user="svc", password=PASSWORD, token=TOKEN)
    assert PASSWORD not in repr(config)
    assert TOKEN not in repr(config)
    assert PASSWORD not in str(config)
    assert "user='svc'" in repr(config)
    cases = [
        {"nats": {"password": [PASSWORD]}},  # wrong type: named, never echoed
        {"nats": {"password": PASSWORD}},  # no user
        {"nats": {"user": "svc", "password": PASSWORD, "password_file": "/x"}},
        {"nats": {"token": {"value": PASSWORD}}},
    ]
    for data in cases:
        path = tmp_path / "sipmesh.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        with pytest.raises(ConfigError) as exc_info:
            load_config(ServiceConfig, path=path, env={})
        assert "nats" in str(exc_info.value)
        assert PASSWORD not in str(exc_info.value)
    env_error = {"SIPMESH_NATS_PASSWORD": PASSWORD}  # a password without a user
    with pytest.raises(ConfigError) as env_info:
        load_config(ServiceConfig, env=env_error)
    assert PASSWORD not in str(env_info.value)


def test_nats_no_password_in_logs_or_metrics_of_a_running_edge(
    password_server: NatsServer, tmp_path: Path
) -> None:
    http_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
    env.update(
        SIPMESH_NATS_URL=password_server.url.replace("nats://", f"nats://svc:{PASSWORD}@"),
        SIPMESH_NATS_USER="svc",
        SIPMESH_NATS_PASSWORD=PASSWORD,
        SIPMESH_UDP="127.0.0.1:0",
        SIPMESH_HTTP_PORT=str(http_port),
        SIPMESH_EDGE_ID="sec1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipmesh_edge"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = ""
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2) as r:
            metrics = r.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert "connected to NATS at nats://***@127.0.0.1" in err, err
    for text in (out, err, metrics, password_server.log_path.read_text()):
        assert PASSWORD not in text
    assert "sipmesh_nats_connected 1.0" in metrics
