"""The local RTPEngine helper: binary lookup, free ports, start failures, stop."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from sipmesh_media.local import (
    LocalRtpEngine,
    LocalRtpEngineError,
    find_binary,
    free_port_range,
    free_udp_port,
)

from .conftest import EngineFactory


def test_find_binary_explicit_missing_is_none() -> None:
    assert find_binary("/nonexistent/rtpengine") is None


def test_find_binary_explicit_executable(tmp_path: Path) -> None:
    fake = tmp_path / "rtpengine"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_binary(str(fake)) == str(fake)


def test_free_udp_port_is_bindable() -> None:
    port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_free_port_range_is_even_aligned_and_free() -> None:
    low, high = free_port_range(size=20, rng=random.Random(7))
    assert low % 2 == 0
    assert high - low + 1 == 20
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", low))


def test_free_port_range_skips_a_taken_port() -> None:
    low, _ = free_port_range(size=10, rng=random.Random(3))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", low + 4))
        again, high = free_port_range(size=10, rng=random.Random(3))
    assert not again <= low + 4 <= high


async def test_start_failure_reports_the_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "rtpengine"
    fake.write_text("#!/bin/sh\necho 'FATAL: cannot bind interface' >&2\nexit 1\n")
    fake.chmod(0o755)
    engine = LocalRtpEngine(binary=str(fake), data_dir=tmp_path)
    with pytest.raises(LocalRtpEngineError) as exc_info:
        await engine.start(timeout=5.0)
    assert "cannot bind interface" in str(exc_info.value)
    assert engine.pid is None


@pytest.mark.integration
async def test_local_engine_command_and_stop(engines: EngineFactory, tmp_path: Path) -> None:
    engine = await engines("cmd")
    command = engine.command()
    assert "--config-file=none" in command
    assert "--table=-1" in command
    assert "--delete-delay=0" in command
    assert f"--listen-ng=127.0.0.1:{engine.ng_port}" in command
    pid = engine.pid
    assert pid is not None
    assert (tmp_path / "rtpengine-cmd.pid").read_text().strip() == str(pid)
    await engine.stop()
    await engine.stop()  # idempotent
    assert engine.pid is None
