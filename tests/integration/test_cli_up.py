"""The ``sipmesh`` command as a real subprocess: up, stop on SIGTERM, one-line errors."""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from sipmesh import cli
from sipmesh.services import UpOptions, find_service
from sipmesh_bus import kv

pytestmark = pytest.mark.integration

URL_RE = re.compile(r"sipmesh is up: NATS at (nats://\S+);")
HTTP_RE = re.compile(r"^http: (http://\S+)/healthz", re.MULTILINE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_spawned: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    """Kill what a test left running and close its pipes (ResourceWarning is an error)."""
    yield
    while _spawned:
        proc = _spawned.pop()
        _kill(proc)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _sipmesh(*args: str, data_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipmesh", *args, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    _spawned.append(proc)
    return proc


def _read_until(proc: subprocess.Popen[str], pattern: re.Pattern[str], seconds: float) -> str:
    """Read stdout until ``pattern`` appears; fail with what was printed otherwise.

    Reads the file descriptor directly: a buffered readline() can swallow lines
    that select() then never reports.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not pattern.search(out.decode()):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; stdout so far:\n{out.decode()}"
            if sel.select(left):
                chunk = os.read(fd, 65536)
                assert chunk, f"sipmesh exited ({proc.wait()}):\n{out.decode()}{_stderr(proc)}"
                out += chunk
    return out.decode()


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _stderr(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    return proc.stderr.read()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    data_dir = tmp_path / "data"
    proc = _sipmesh(
        "up",
        "--nats-port",
        "0",
        "--http-port",
        "0",
        "--sip-port",
        str(_free_port()),
        data_dir=data_dir,
    )
    try:
        out = _read_until(proc, URL_RE, 30)
        yield proc, out, data_dir
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_up_comes_up_and_stops_cleanly_on_sigterm(
    running: tuple[subprocess.Popen[str], str, Path],
) -> None:
    proc, out, data_dir = running
    match = URL_RE.search(out)
    assert match is not None
    url = match[1]
    assert (data_dir / "nats.url").read_text().strip() == url
    assert "edge: not there yet" in out or "edge: started" in out

    http = HTTP_RE.search(out)
    assert http is not None
    with urllib.request.urlopen(f"{http[1]}/readyz", timeout=5) as r:
        assert r.status == 200

    async def buckets() -> set[str]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            return {(await (await js.key_value(b.bucket)).status()).bucket for b in kv.BUCKETS}
        finally:
            await nc.close()

    assert asyncio.run(buckets()) == {b.bucket for b in kv.BUCKETS}

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert proc.stdout is not None
    assert "sipmesh stopped" in proc.stdout.read()
    assert not (data_dir / "nats.url").exists()
    # The embedded server is gone with it.
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass


def test_up_stops_on_sigint_too(running: tuple[subprocess.Popen[str], str, Path]) -> None:
    proc, _out, _data_dir = running
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def _fails_with_one_line(proc: subprocess.Popen[str]) -> str:
    assert proc.wait(timeout=30) == 1
    lines = _stderr(proc).strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_up_taken_nats_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _sipmesh(
            "up", "--nats-port", str(port), "--sip-port", str(_free_port()), data_dir=tmp_path
        )
        line = _fails_with_one_line(proc)
    assert line == f"sipmesh: error: cannot start nats-server: 127.0.0.1:{port} is already in use"


def test_up_taken_http_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _sipmesh(
            "up",
            "--nats-port",
            "0",
            "--http-port",
            str(port),
            "--sip-port",
            str(_free_port()),
            data_dir=tmp_path,
        )
        line = _fails_with_one_line(proc)
    assert line.startswith(f"sipmesh: error: HTTP port 127.0.0.1:{port} is not available")


def test_up_taken_sip_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        proc = _sipmesh("up", "--nats-port", "0", "--sip-port", str(port), data_dir=tmp_path)
        line = _fails_with_one_line(proc)
    assert line.startswith(f"sipmesh: error: SIP port 127.0.0.1:{port}/UDP is not available")


def test_up_unreachable_nats_url_is_a_one_line_error(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{_free_port()}"
    proc = _sipmesh("up", "--nats-url", url, "--sip-port", str(_free_port()), data_dir=tmp_path)
    line = _fails_with_one_line(proc)
    assert line.startswith(f"sipmesh: error: cannot reach NATS at {url}: ")


def test_up_with_external_nats_url(nats_url: str, tmp_path: Path) -> None:
    proc = _sipmesh(
        "up", "--nats-url", nats_url, "--sip-port", str(_free_port()), data_dir=tmp_path
    )
    try:
        out = _read_until(proc, URL_RE, 30)
        assert f"NATS at {nats_url};" in out
        assert "embedded" not in out
        assert (tmp_path / "nats.url").read_text().strip() == nats_url
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_port_argument_exits_2(tmp_path: Path) -> None:
    proc = _sipmesh("up", "--sip-port", "abc", data_dir=tmp_path)
    assert proc.wait(timeout=30) == 2
    assert "not a port number: 'abc'" in _stderr(proc)


def test_version_prints_versions(tmp_path: Path) -> None:
    proc = _sipmesh("version", data_dir=tmp_path)
    assert proc.wait(timeout=30) == 0
    assert proc.stdout is not None
    out = proc.stdout.read()
    assert re.search(r"^sipmesh \d+\.\d+", out, re.MULTILINE)
    assert re.search(r"^nats-server 2\.(1[1-9]|[2-9]\d)\.", out, re.MULTILINE)


def test_resolve_nats_url_prefers_flag_then_file(tmp_path: Path) -> None:
    assert cli.resolve_nats_url("nats://a:1", tmp_path) == "nats://a:1"
    with pytest.raises(cli.CliError) as exc_info:
        cli.resolve_nats_url(None, tmp_path)
    assert "sipmesh up" in str(exc_info.value)
    (tmp_path / "nats.url").write_text("nats://127.0.0.1:4999\n")
    assert cli.resolve_nats_url(None, tmp_path) == "nats://127.0.0.1:4999"


def test_up_passes_the_sip_address_to_the_edge() -> None:
    edge = find_service("edge")
    assert edge is not None
    opts = UpOptions(
        sip_host="127.0.0.1",
        sip_port=5070,
        domain="example.com",
        data_dir=Path("d"),
        nats_url="nats://127.0.0.1:1",
    )
    assert edge.env(opts) == {"SIPMESH_UDP": "127.0.0.1:5070"}
    v6 = UpOptions(
        sip_host="::1", sip_port=5070, domain="d", data_dir=Path("d"), nats_url="nats://127.0.0.1:1"
    )
    assert edge.env(v6) == {"SIPMESH_UDP": "[::1]:5070"}


def test_up_runs_the_edge_on_the_requested_sip_port(tmp_path: Path) -> None:
    edge = find_service("edge")
    assert edge is not None
    if not edge.is_available():
        pytest.skip("sipmesh_edge has no __main__ yet")
    sip_port = _free_port()
    proc = _sipmesh("up", "--nats-port", "0", "--sip-port", str(sip_port), data_dir=tmp_path)
    out = _read_until(proc, URL_RE, 30)
    assert "edge: started" in out
    deadline = time.monotonic() + 10
    while True:  # the edge binds the UDP port once it is connected
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", sip_port))
            except OSError:
                break
        assert time.monotonic() < deadline, "the edge never bound the SIP port"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
