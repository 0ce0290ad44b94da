"""sipmesh_bus.natsserver: finding the binary and refusing old ones (fake binaries)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sipmesh_bus.natsserver import (
    NatsServer,
    NatsServerError,
    find_nats_server,
    nats_server_version,
)


def _fake_binary(tmp_path: Path, version_line: str) -> Path:
    path = tmp_path / "nats-server"
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_nats_server_version_parses_the_banner(tmp_path: Path) -> None:
    assert nats_server_version(_fake_binary(tmp_path, "nats-server: v2.15.1")) == (2, 15, 1)


def test_find_nats_server_honours_the_override(tmp_path: Path) -> None:
    binary = _fake_binary(tmp_path, "nats-server: v2.11.0")
    assert find_nats_server({"SIPMESH_NATS_SERVER": str(binary)}) == binary


def test_find_nats_server_refuses_a_server_without_per_key_ttl(tmp_path: Path) -> None:
    binary = _fake_binary(tmp_path, "nats-server: v2.9.10")
    with pytest.raises(NatsServerError) as exc_info:
        find_nats_server({"SIPMESH_NATS_SERVER": str(binary)})
    message = str(exc_info.value)
    assert message.startswith(f"nats-server 2.9.10 at {binary} is too old: sipmesh needs 2.11+")
    assert "\n" not in message


def test_find_nats_server_missing_override(tmp_path: Path) -> None:
    with pytest.raises(NatsServerError) as exc_info:
        find_nats_server({"SIPMESH_NATS_SERVER": str(tmp_path / "absent")})
    assert "nats-server not found" in str(exc_info.value)


def test_find_nats_server_ignores_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An old nats-server first on PATH must not be picked up.
    _fake_binary(tmp_path, "nats-server: v2.9.10")
    monkeypatch.setenv("PATH", str(tmp_path))
    found = find_nats_server({})
    assert found.parent != tmp_path
    assert nats_server_version(found) >= (2, 11, 0)


def test_nats_server_url_before_start_is_an_error(tmp_path: Path) -> None:
    server = NatsServer(store_dir=tmp_path)
    with pytest.raises(NatsServerError):
        _ = server.url
    assert not server.is_running()
    server.stop()  # stopping what never started is fine
