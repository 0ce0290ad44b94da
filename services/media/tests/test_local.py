"""The local RTPEngine helper: binary lookup, free ports, start failures, stop."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
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


def test_the_daemon_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """A media service killed hard (SIGKILL) takes its local rtpengine with it."""
    binary = find_binary()
    if binary is None:
        pytest.fail("rtpengine is not installed (make test installs rtpengine-daemon)")
    parent_code = (
        "import asyncio, sys, time\n"
        "from pathlib import Path\n"
        "from sipmesh_media.local import LocalRtpEngine\n"
        "engine = LocalRtpEngine(binary=sys.argv[1], data_dir=Path(sys.argv[2]))\n"
        "asyncio.run(engine.start())\n"
        "print(engine.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", parent_code, binary, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        daemon = 0
        try:
            assert parent.stdout is not None
            daemon = int(parent.stdout.readline())
            os.kill(daemon, 0)  # running
            parent.kill()
            parent.wait(10)
            deadline = time.monotonic() + 10
            while _alive(daemon) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(daemon)
        finally:
            parent.kill()
            if daemon and _alive(daemon):  # the test failed: leave no daemon behind
                os.kill(daemon, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie of ours counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
