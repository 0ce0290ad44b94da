"""The ``sipmesh`` command as a real subprocess: up, stop on SIGTERM, one-line errors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import re
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import nats
import pytest

from sipmesh import cli
from sipmesh.services import ServiceSpec, UpOptions, edge_ids, find_service
from sipmesh.up import PortPlan, UpError, UpSettings, _Supervisor
from sipmesh_bus import kv
from sipmesh_edge.app import EdgeConfig
from sipmesh_edge.streams import StreamConfig

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


def _sipmesh(*args: str, data_dir: Path, own_group: bool = False) -> subprocess.Popen[str]:
    """Run the CLI; ``own_group``: in a process group of its own, as a terminal runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipmesh", *args, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=own_group,
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
        "0",
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


def test_up_ctrl_c_to_the_whole_group_stops_cleanly(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals every process of the foreground group at once.

    ``up`` still stops the services first and NATS last (the children are not
    in that group), and nothing prints a traceback.
    """
    proc = _sipmesh(
        "up", "--nats-port", "0", "--http-port", "0", "--sip-port", "0",
        data_dir=tmp_path / "data", own_group=True,
    )  # fmt: skip
    try:
        _read_until(proc, URL_RE, 30)
        time.sleep(1)  # every service connected and serving
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert proc.stdout is not None
        assert "sipmesh stopped" in proc.stdout.read()
        assert "Traceback" not in _stderr(proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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
        proc = _sipmesh("up", "--nats-port", str(port), "--sip-port", "0", data_dir=tmp_path)
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
            "0",
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
    proc = _sipmesh("up", "--nats-url", url, "--sip-port", "0", data_dir=tmp_path)
    line = _fails_with_one_line(proc)
    assert line.startswith(f"sipmesh: error: cannot reach NATS at {url}: ")


def test_up_with_external_nats_url(nats_url: str, tmp_path: Path) -> None:
    proc = _sipmesh("up", "--nats-url", nats_url, "--sip-port", "0", data_dir=tmp_path)
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


def test_up_passes_the_listen_plan_to_the_edge(tmp_path: Path) -> None:
    edge = find_service("edge")
    assert edge is not None
    opts = UpOptions(
        sip_host="::1",
        sip_port=5070,
        domain="example.com",
        data_dir=tmp_path,
        nats_url="nats://127.0.0.1:1",
        tls_port=5071,
        ws_port=0,
        cert_file=tmp_path / "c.pem",
        key_file=tmp_path / "k.pem",
    )
    [edge_id] = edge_ids(opts)
    assert edge.config(opts, 0) == {
        "edge_id": edge_id,
        "challenge_registers": True,
        "udp": ["[::1]:5070"],
        "streams": {
            "tcp": ["[::1]:5070"],
            "tls": ["[::1]:5071"],
            "cert_file": str(tmp_path / "c.pem"),
            "key_file": str(tmp_path / "k.pem"),
        },
        "advertised_hosts": ["example.com"],
    }
    # What up writes is what the edge reads.
    raw = edge.config(opts, 0)
    config = msgspec.convert(raw, EdgeConfig)
    assert msgspec.convert(config.streams, StreamConfig).tls == ("[::1]:5071",)
    assert not config.reuse_port


def test_up_with_several_edges_shares_the_ports_between_stable_ids(tmp_path: Path) -> None:
    edge = find_service("edge")
    assert edge is not None
    opts = UpOptions(
        sip_host="127.0.0.1",
        sip_port=5070,
        domain="example.com",
        data_dir=tmp_path,
        nats_url="nats://127.0.0.1:1",
        edges=3,
    )
    assert edge.replicas(opts) == 3
    ids = edge_ids(opts)
    assert len(set(ids)) == 3
    assert edge_ids(opts) == ids, "the same after a restart: bindings name their edge"
    other = dataclasses.replace(opts, data_dir=tmp_path / "other")
    assert not set(edge_ids(other)) & set(ids), "another data dir, other edges"
    for index, edge_id in enumerate(ids):
        config = msgspec.convert(edge.config(opts, index), EdgeConfig)
        assert config.edge_id == edge_id
        assert config.reuse_port
        assert config.siblings == [i for i in ids if i != edge_id]
        assert config.udp == ["127.0.0.1:5070"]


def test_up_port_plan_defaults_and_overrides() -> None:
    base = UpSettings(data_dir=Path("d"), nats_url=None, sip_port=5060)
    assert PortPlan.of(base) == PortPlan(sip=5060, tls=5061, ws=5062)
    off = UpSettings(data_dir=Path("d"), nats_url=None, sip_port=5060, tls_port=0, ws_port=8080)
    assert PortPlan.of(off) == PortPlan(sip=5060, tls=0, ws=8080)
    with pytest.raises(UpError):
        PortPlan.of(UpSettings(data_dir=Path("d"), nats_url=None, sip_port=65535))


def test_up_runs_the_edge_on_the_requested_sip_port(tmp_path: Path) -> None:
    edge = find_service("edge")
    assert edge is not None
    assert edge.is_available()
    sip_port = _free_port()
    # TLS and WS off: only SIP's own port was checked free (SIP + 1 may not be).
    proc = _sipmesh(
        "up",
        "--nats-port",
        "0",
        "--sip-port",
        str(sip_port),
        "--tls-port",
        "0",
        "--ws-port",
        "0",
        data_dir=tmp_path,
    )
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


def _options(method: str, uri: str, transport: str, port: int) -> bytes:
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK-up-{transport};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@localhost>;tag=p1\r\nTo: <sip:localhost>\r\n"
        f"Call-ID: probe-{transport}@127.0.0.1\r\nCSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _status(data: bytes) -> int:
    start = data.split(b"\r\n", 1)[0]
    assert start.startswith(b"SIP/2.0 "), data
    return int(start.split()[1])


def _options_udp(port: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(1.0)
        s.sendto(
            _options("OPTIONS", f"sip:127.0.0.1:{port}", "UDP", s.getsockname()[1]),
            ("127.0.0.1", port),
        )
        return _status(s.recv(65535))


def _read_message(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65535)
        assert chunk, "connection closed"
        data += chunk
    return data


def _options_stream(port: int, *, secure: bool) -> int:
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=2))
        if secure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the self-signed pair of up
            sock = stack.enter_context(context.wrap_socket(sock, server_hostname="localhost"))
        transport = "TLS" if secure else "TCP"
        local_port = sock.getsockname()[1]
        sock.sendall(_options("OPTIONS", f"sip:127.0.0.1:{port}", transport, local_port))
        return _status(_read_message(sock))


def _options_ws(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        key = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: sip\r\n\r\n"
        )
        head = _read_message(sock)
        assert head.startswith(b"HTTP/1.1 101 "), head
        payload = _options("OPTIONS", f"sip:127.0.0.1:{port}", "WS", sock.getsockname()[1])
        mask = os.urandom(4)
        # RFC 6455 §5.2: FIN + text opcode, masked, 16-bit length.
        frame = bytes((0x81, 0x80 | 126)) + len(payload).to_bytes(2) + mask
        sock.sendall(frame + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        first = sock.recv(2)
        n = first[1] & 0x7F
        if n == 126:
            n = int.from_bytes(sock.recv(2))
        data = b""
        while len(data) < n:
            data += sock.recv(n - len(data))
        return _status(data)


def _eventually(probe: Callable[[], int], seconds: float = 15.0) -> int:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return probe()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_up_edge_answers_options_over_udp_tcp_tls_and_ws(tmp_path: Path) -> None:
    sip, tls_port, ws = _free_port(), _free_port(), _free_port()
    proc = _sipmesh(
        "up", "--nats-port", "0", "--sip-port", str(sip),
        "--tls-port", str(tls_port), "--ws-port", str(ws), data_dir=tmp_path,
    )  # fmt: skip
    out = _read_until(proc, URL_RE, 30)
    assert f"UDP  sip:127.0.0.1:{sip}" in out
    assert f"TLS  sip:127.0.0.1:{tls_port};transport=tls" in out
    assert f"WS   ws://127.0.0.1:{ws}" in out
    assert "sipmesh user add" in out
    assert (tmp_path / "tls" / "cert.pem").is_file()
    assert _eventually(lambda: _options_udp(sip)) == 200
    assert _eventually(lambda: _options_stream(sip, secure=False)) == 200
    assert _eventually(lambda: _options_stream(tls_port, secure=True)) == 200
    assert _eventually(lambda: _options_ws(ws)) == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def test_up_taken_tls_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _sipmesh(
            "up", "--nats-port", "0", "--sip-port", "0",
            "--tls-port", str(port), data_dir=tmp_path,
        )  # fmt: skip
        line = _fails_with_one_line(proc)
    assert line.startswith(f"sipmesh: error: SIP port 127.0.0.1:{port}/TLS is not available")
    assert line.endswith("pass --tls-port")


def test_up_stops_when_the_edge_cannot_listen(tmp_path: Path) -> None:
    # The port is taken after up's own check: the edge exits 2 with one line,
    # and up gives up instead of restarting it forever.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        spec = ServiceSpec(
            name="edge",
            module="sipmesh_edge",
            help="",
            env=lambda _o: {"SIPMESH_UDP": f"127.0.0.1:{port}"},
        )
        opts = UpOptions(
            sip_host="127.0.0.1", sip_port=port, domain="d", data_dir=tmp_path,
            nats_url=f"nats://127.0.0.1:{_free_port()}",
        )  # fmt: skip
        supervisor = _Supervisor(opts, [spec])
        supervisor.check()
        (child,) = supervisor.children
        assert child.proc is not None
        proc = child.proc
        proc.wait(timeout=20)
        with pytest.raises(UpError) as exc_info:
            supervisor.check()
    assert proc.returncode == 2
    assert str(exc_info.value) == "edge cannot start (exit 2); see its message above"


def test_up_port_plan_sip_port_0_picks_free_ports() -> None:
    # --sip-port 0 must not print "sip:127.0.0.1:0" and put TLS on port 1.
    plan = PortPlan.of(UpSettings(data_dir=Path("d"), nats_url=None, sip_port=0))
    assert plan.sip > 1024
    assert (plan.tls, plan.ws) == (plan.sip + 1, plan.sip + 2)
    for port, kind in ((plan.sip, socket.SOCK_DGRAM), (plan.sip, socket.SOCK_STREAM)):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", port))  # free when chosen (nothing else took it since)
    off = PortPlan.of(UpSettings(data_dir=Path("d"), nats_url=None, sip_port=0, tls_port=0))
    assert off.tls == 0
    assert off.sip > 0
