"""``sipmesh up``: an embedded NATS server, the buckets and streams, and the services.

Each service runs as its own process (``python -m sipmesh_<name>``), exactly as in
a deployment, so nothing here is a shortcut the services could come to rely on.
A service that dies is restarted after a pause; SIGTERM or Ctrl-C stops the
services (newest first), then NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sipmesh.services import SERVICES, ServiceSpec, UpOptions
from sipmesh_bus import kv
from sipmesh_bus.config import HttpConfig, NatsConfig, ServiceConfig
from sipmesh_bus.natsserver import NatsServer, find_nats_server, nats_server_version
from sipmesh_bus.runtime import ReadinessCheck, Service, StoppedError, connect

__all__ = ["UpError", "UpSettings", "domain_file", "nats_url_file", "run_up"]

log = logging.getLogger(__name__)

_RESTART_DELAY: Final = 1.0
_STOP_TIMEOUT: Final = 10.0


class UpError(RuntimeError):
    """``up`` cannot start; the message is one line for the user."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UpSettings:
    """The ``sipmesh up`` command line."""

    data_dir: Path
    nats_url: str | None
    #: An external NATS; None starts the embedded one.
    nats_host: str = "127.0.0.1"
    nats_port: int = 4222
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    domain: str = "localhost"
    http_host: str = "127.0.0.1"
    http_port: int = 0


def nats_url_file(data_dir: Path) -> Path:
    """Where ``up`` writes the URL other subcommands connect to."""
    return data_dir / "nats.url"


def domain_file(data_dir: Path) -> Path:
    """Where ``up`` records its ``--domain``: the default of ``sipmesh user``.

    It stays after ``up`` stops: the users provisioned belong to that domain.
    """
    return data_dir / "domain"


@dataclass(slots=True)
class _Child:
    spec: ServiceSpec
    index: int
    proc: subprocess.Popen[bytes] | None = None
    restart_at: float = 0.0
    starts: int = field(default=0)

    @property
    def label(self) -> str:
        return self.spec.name if self.spec.replicas == 1 else f"{self.spec.name}#{self.index}"


def _say(line: str) -> None:
    print(line, flush=True)


def _check_sip_port(host: str, port: int) -> None:
    """Fail now, not when the edge starts, if the SIP port is taken (UDP or TCP)."""
    for kind, name in ((socket.SOCK_DGRAM, "UDP"), (socket.SOCK_STREAM, "TCP")):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError as exc:
                raise UpError(
                    f"SIP port {host}:{port}/{name} is not available ({exc.strerror}); "
                    "pass --sip-port"
                ) from None


async def _start_nats(settings: UpSettings) -> tuple[str, NatsServer | None]:
    if settings.nats_url is not None:
        try:
            probe = await connect(
                NatsConfig(url=settings.nats_url, connect_timeout=2.0),
                name="sipmesh-up",
                forever=False,
            )
        except Exception as exc:
            detail = str(exc) or type(exc).__name__
            raise UpError(f"cannot reach NATS at {settings.nats_url}: {detail}") from None
        await probe.close()
        return settings.nats_url, None
    binary = find_nats_server()
    server = NatsServer(
        store_dir=settings.data_dir / "nats",
        host=settings.nats_host,
        port=settings.nats_port,
        binary=binary,
    )
    url = await asyncio.to_thread(server.start)
    version = ".".join(map(str, nats_server_version(binary)))
    _say(f"nats: {url} (embedded nats-server {version}, JetStream in {server.store_dir})")
    return url, server


class _Supervisor:
    def __init__(self, settings: UpSettings, url: str) -> None:
        self._opts = UpOptions(
            sip_host=settings.sip_host,
            sip_port=settings.sip_port,
            domain=settings.domain,
            data_dir=settings.data_dir,
            nats_url=url,
        )
        self.children = [
            _Child(spec, i)
            for spec in SERVICES
            if spec.is_available()
            for i in range(spec.replicas)
        ]

    def _env(self, spec: ServiceSpec) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SIPMESH_NATS_URL=self._opts.nats_url,
            SIPMESH_HTTP_PORT="0",
            SIPMESH_DATA_DIR=str(self._opts.data_dir),
        )
        env.update(spec.env(self._opts))
        return env

    def start(self, child: _Child) -> None:
        child.proc = subprocess.Popen(  # noqa: S603 - our interpreter and module
            [sys.executable, "-m", child.spec.module],
            env=self._env(child.spec),
            stdin=subprocess.DEVNULL,
        )
        child.starts += 1
        _say(f"{child.label}: started (pid {child.proc.pid})")

    def check(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                _say(f"{child.label}: exited with {child.proc.returncode}; restarting")
                child.proc, child.restart_at = None, now + _RESTART_DELAY
            if child.proc is None and now >= child.restart_at:
                self.start(child)

    def all_alive(self) -> bool:
        return all(c.proc is not None and c.proc.poll() is None for c in self.children)

    async def stop(self) -> None:
        running = [c for c in reversed(self.children) if c.proc and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        for child in running:
            assert child.proc is not None
            while child.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if child.proc.poll() is None:
                _say(f"{child.label}: did not stop in {_STOP_TIMEOUT:.0f} s; killed")
                child.proc.kill()
                child.proc.wait()


async def run_up(settings: UpSettings) -> None:
    """Run until SIGTERM/SIGINT; see the module docstring.

    Raises:
        UpError, NatsServerError, JetStreamTooOldError: with a one-line message.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _check_sip_port(settings.sip_host, settings.sip_port)
    # Our own handlers from the very start: a SIGTERM while nats-server is
    # starting must still stop it, not orphan it.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        url, server = await _start_nats(settings)
        try:
            if not stop.is_set():
                await _serve(settings, url, stop)
        finally:
            if server is not None:
                await asyncio.to_thread(server.stop)
            _say("sipmesh stopped")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _serve(settings: UpSettings, url: str, stop: asyncio.Event) -> None:
    config = ServiceConfig(
        nats=NatsConfig(url=url),
        http=HttpConfig(host=settings.http_host, port=settings.http_port),
    )
    svc = Service("sipmesh-up", config, install_signal_handlers=False)
    forward = asyncio.create_task(_forward_stop(stop, svc))
    try:
        await svc.start()
    except OSError as exc:
        forward.cancel()
        raise UpError(
            f"HTTP port {settings.http_host}:{settings.http_port} is not available "
            f"({exc.strerror}); pass --http-port"
        ) from None
    except StoppedError:
        return
    url_file = nats_url_file(settings.data_dir)
    supervisor = _Supervisor(settings, url)
    try:
        await kv.ensure_jetstream(svc.js)
        buckets = ", ".join(b.bucket for b in kv.BUCKETS)
        _say(f"jetstream: buckets {buckets}; streams {', '.join(str(s.name) for s in kv.STREAMS)}")
        domain_file(settings.data_dir).write_text(settings.domain + "\n", encoding="utf-8")
        url_file.write_text(url + "\n", encoding="utf-8")
        _say(f"http: http://{settings.http_host}:{svc.http_port}/healthz /readyz /metrics")
        svc.add_readiness_check("services", _all_alive(supervisor))
        for spec in SERVICES:
            if not spec.is_available():
                _say(f"{spec.name}: not there yet (no {spec.module}.__main__)")
        supervisor.check()
        _say(f"sipmesh is up: NATS at {url}; Ctrl-C or SIGTERM stops it")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            if not stop.is_set():
                supervisor.check()
    finally:
        forward.cancel()
        await supervisor.stop()
        await svc.close()
        with contextlib.suppress(FileNotFoundError):
            if url_file.read_text(encoding="utf-8").strip() == url:
                url_file.unlink()


async def _forward_stop(stop: asyncio.Event, svc: Service) -> None:
    await stop.wait()
    svc.stop()


def _all_alive(supervisor: _Supervisor) -> ReadinessCheck:
    async def check() -> bool:
        return supervisor.all_alive()

    return check
