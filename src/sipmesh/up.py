"""``sipmesh up``: an embedded NATS server, the buckets and streams, and the services.

Each service runs as its own process (``python -m sipmesh_<name>``), exactly as in
a deployment, so nothing here is a shortcut the services could come to rely on.
A service that dies is restarted after a pause, unless it exits with status 2
(a setting it cannot work with, such as a SIP port that is taken): then ``up``
stops everything and fails. SIGTERM, SIGHUP or Ctrl-C stops the services (newest
first), then NATS; the services and nats-server run in sessions of their own,
so a signal to the terminal's whole process group reaches only ``up``.

The edge listens on UDP and TCP at ``--sip-port``, TLS at ``--tls-port``
(default: SIP port + 1) and WebSocket at ``--ws-port`` (default: SIP port + 2);
0 turns one off. Without ``--tls-cert``/``--tls-key``, a self-signed pair is
made once in ``DATA_DIR/tls/``.

Every service gets its own metrics/health port, chosen free when ``up`` starts
and kept across restarts, and ``up`` writes ``DATA_DIR/prometheus.yml``: one
scrape job per service (``sipmesh-<name>``) plus ``sipmesh-up``, so
``prometheus --config.file=DATA_DIR/prometheus.yml`` watches the local platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from sipmesh.services import SERVICES, ServiceSpec, UpOptions
from sipmesh_bus import kv
from sipmesh_bus.config import HttpConfig, NatsConfig, ServiceConfig, redact_url
from sipmesh_bus.natsserver import NatsServer, find_nats_server, nats_server_version
from sipmesh_bus.procs import dies_with_parent
from sipmesh_bus.runtime import ReadinessCheck, Service, StoppedError, connect
from sipmesh_edge import tls

__all__ = [
    "PortPlan",
    "UpError",
    "UpSettings",
    "domain_file",
    "nats_url_file",
    "prometheus_config",
    "prometheus_file",
    "run_up",
]

log = logging.getLogger(__name__)

_RESTART_DELAY: Final = 1.0
_STOP_TIMEOUT: Final = 10.0
_FATAL_EXIT: Final = 2
#: What stops ``up`` cleanly (services first, then NATS).
_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: A service's exit status for "this configuration cannot work" (run_service's ConfigError).
_SCRAPE_INTERVAL: Final = "5s"
#: Local watching: fine enough for rate() over a minute, cheap for a laptop.
_JOB_PREFIX: Final = "sipmesh-"


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
    tls_port: int | None = None
    #: None: SIP port + 1; 0: no TLS.
    ws_port: int | None = None
    #: None: SIP port + 2; 0: no WebSocket.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: A certificate and key to use instead of the self-signed pair.
    edges: int = 1
    #: Edge processes sharing the SIP ports (SO_REUSEPORT).


@dataclass(frozen=True, slots=True, kw_only=True)
class PortPlan:
    """The edge's listening ports (0: that transport is off)."""

    sip: int
    #: UDP and TCP.
    tls: int
    ws: int

    @classmethod
    def of(cls, settings: UpSettings) -> PortPlan:
        """Resolve the defaults: TLS on SIP + 1, WS on SIP + 2.

        Raises:
            UpError: a default would be past 65535.
        """
        sip_port = settings.sip_port
        if sip_port == 0:
            # --sip-port 0: a free port (UDP and TCP), with SIP + 1 and SIP + 2
            # free too where TLS and WS take their defaults.
            sip_port = _free_sip_port(
                settings.sip_host,
                tls=settings.tls_port is None,
                ws=settings.ws_port is None,
            )
        tls_port = sip_port + 1 if settings.tls_port is None else settings.tls_port
        ws_port = sip_port + 2 if settings.ws_port is None else settings.ws_port
        if max(tls_port, ws_port) > 65535:
            raise UpError("TLS/WS ports past 65535: pass --tls-port and --ws-port (0 disables)")
        return cls(sip=sip_port, tls=tls_port, ws=ws_port)


def _free_sip_port(host: str, *, tls: bool, ws: bool, tries: int = 50) -> int:
    """A port free for UDP and TCP on ``host`` (and the next two for TLS/WS)."""
    for _ in range(tries):
        with socket.socket(_family(host), socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        wanted = [(port, socket.SOCK_DGRAM), (port, socket.SOCK_STREAM)]
        wanted += [(port + n, socket.SOCK_STREAM) for n, on in ((1, tls), (2, ws)) if on]
        if port + 2 <= 65535 and not any(_bind_error(host, p, k) for p, k in wanted):
            return port
    raise UpError(f"no free SIP port found on {host}: pass --sip-port")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bind_error(host: str, port: int, kind: int) -> OSError | None:
    """Why the edge could not bind ``host:port`` now, or None when it could."""
    with socket.socket(_family(host), kind) as s:
        if kind == socket.SOCK_STREAM:
            # As the edge binds (asyncio's reuse_address): a port in TIME_WAIT is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc
    return None


def nats_url_file(data_dir: Path) -> Path:
    """Where ``up`` writes the URL other subcommands connect to."""
    return data_dir / "nats.url"


def domain_file(data_dir: Path) -> Path:
    """Where ``up`` records its ``--domain``: the default of ``sipmesh user``.

    It stays after ``up`` stops: the users provisioned belong to that domain.
    """
    return data_dir / "domain"


def prometheus_file(data_dir: Path) -> Path:
    """Where ``up`` writes the Prometheus scrape configuration of its services."""
    return data_dir / "prometheus.yml"


def prometheus_config(
    targets: Mapping[str, Sequence[str]], *, scrape_interval: str = _SCRAPE_INTERVAL
) -> dict[str, Any]:
    """A Prometheus configuration scraping ``targets``.

    Args:
        targets: service name to its ``host:port`` metrics endpoints, in order.
        scrape_interval: the global scrape (and evaluation) interval.

    Returns:
        The configuration as data (``yaml.safe_dump`` it): one job per service,
        named ``sipmesh-<name>``, with a ``service`` label on every target.
    """
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": f"{_JOB_PREFIX}{name}",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": list(endpoints), "labels": {"service": name}}],
            }
            for name, endpoints in targets.items()
            if endpoints
        ],
    }


def _scrape_host(http_host: str) -> str:
    """The address Prometheus on this machine reaches a listener on ``http_host`` at."""
    if http_host in ("0.0.0.0", ""):  # noqa: S104 - compared, not bound
        return "127.0.0.1"
    if http_host == "::":
        return "[::1]"
    return f"[{http_host}]" if ":" in http_host else http_host


def _free_tcp_ports(host: str, count: int) -> list[int]:
    """``count`` distinct TCP ports free on ``host`` right now (bound at once, released).

    A service restarted by ``up`` binds the same port again, so its scrape
    target never moves; the small window between release and the child's bind
    is the price of a configuration written before the children start.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            s.bind((host, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


@dataclass(slots=True)
class _Child:
    spec: ServiceSpec
    index: int
    proc: subprocess.Popen[bytes] | None = None
    restart_at: float = 0.0
    http_port: int = 0
    #: Its ``/metrics``, ``/healthz`` and ``/readyz`` port (0: the child picks one).
    starts: int = field(default=0)
    replicas: int = 1
    #: How many of ``spec`` run.

    @property
    def label(self) -> str:
        return self.spec.name if self.replicas == 1 else f"{self.spec.name}#{self.index}"


def _say(line: str) -> None:
    print(line, flush=True)


def _check_sip_ports(host: str, plan: PortPlan) -> None:
    """Fail now, not when the edge starts, if a SIP port is taken."""
    wanted = [(plan.sip, socket.SOCK_DGRAM, "UDP"), (plan.sip, socket.SOCK_STREAM, "TCP")]
    wanted += [(p, socket.SOCK_STREAM, n) for p, n in ((plan.tls, "TLS"), (plan.ws, "WS")) if p]
    for port, kind, name in wanted:
        error = _bind_error(host, port, kind)
        if error is not None:
            flag = "--sip-port" if name in ("UDP", "TCP") else f"--{name.lower()}-port"
            raise UpError(
                f"SIP port {host}:{port}/{name} is not available ({error.strerror}); pass {flag}"
            )


def _tls_files(settings: UpSettings) -> tuple[Path, Path]:
    """The certificate and key: given, or self-signed once into DATA_DIR/tls/."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        return settings.tls_cert, settings.tls_key
    cert = settings.data_dir / "tls" / "cert.pem"
    key = settings.data_dir / "tls" / "key.pem"
    hosts = dict.fromkeys([settings.domain, "localhost", "127.0.0.1", "::1"])
    if settings.sip_host not in ("0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        hosts[settings.sip_host] = None
    try:
        made = tls.ensure_self_signed(cert, key, common_name=settings.domain, hosts=list(hosts))
    except tls.CertificateError as exc:
        raise UpError(f"{exc} (or pass --tls-cert and --tls-key, or --tls-port 0)") from None
    if made:
        _say(f"tls: made a self-signed certificate for {', '.join(hosts)} in {cert.parent}")
    return cert, key


def _phone_host(host: str) -> str:
    """The address a phone should use: the listen address, or this machine's main one."""
    if host not in ("0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        return f"[{host}]" if ":" in host else host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent by connect()
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _say_where_phones_go(settings: UpSettings, plan: PortPlan) -> None:
    host = _phone_host(settings.sip_host)
    _say(f"phones: domain {settings.domain}, registrar/proxy {host}:")
    _say(f"  UDP  sip:{host}:{plan.sip}")
    _say(f"  TCP  sip:{host}:{plan.sip};transport=tcp")
    if plan.tls:
        _say(f"  TLS  sip:{host}:{plan.tls};transport=tls (self-signed unless --tls-cert)")
    if plan.ws:
        _say(f"  WS   ws://{host}:{plan.ws} (RFC 7118, subprotocol sip)")
    _say(
        f"  add a user: sipmesh user add alice --password SECRET --data-dir {settings.data_dir}"
        f"  (then register alice@{settings.domain})"
    )


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
            raise UpError(
                f"cannot reach NATS at {redact_url(settings.nats_url)}: {detail}"
            ) from None
        await probe.close()
        return settings.nats_url, None
    binary = find_nats_server()
    server = NatsServer(
        store_dir=settings.data_dir / "nats",
        host=settings.nats_host,
        port=settings.nats_port,
        binary=binary,
        own_session=True,  # stopped by up after the services, not by the terminal
    )
    url = await asyncio.to_thread(server.start)
    version = ".".join(map(str, nats_server_version(binary)))
    _say(f"nats: {url} (embedded nats-server {version}, JetStream in {server.store_dir})")
    return url, server


class _Supervisor:
    def __init__(
        self,
        opts: UpOptions,
        specs: tuple[ServiceSpec, ...] | list[ServiceSpec] = SERVICES,
        *,
        http_host: str = "127.0.0.1",
    ) -> None:
        self._opts = opts
        self._http_host = http_host
        self.children = [
            _Child(spec, i, replicas=n)
            for spec in specs
            if spec.is_available()
            for n in [spec.replicas(opts)]
            for i in range(n)
        ]
        for child, port in zip(
            self.children, _free_tcp_ports(http_host, len(self.children)), strict=True
        ):
            child.http_port = port

    def scrape_targets(self) -> dict[str, list[str]]:
        """Service name to the ``host:port`` of each replica's metrics endpoint."""
        host = _scrape_host(self._http_host)
        targets: dict[str, list[str]] = {}
        for child in self.children:
            targets.setdefault(child.spec.name, []).append(f"{host}:{child.http_port}")
        return targets

    def _env(self, child: _Child) -> dict[str, str]:
        spec = child.spec
        env = dict(os.environ)
        env.update(
            SIPMESH_NATS_URL=self._opts.nats_url,
            SIPMESH_HTTP_HOST=self._http_host,
            SIPMESH_HTTP_PORT=str(child.http_port),
            SIPMESH_DATA_DIR=str(self._opts.data_dir),
        )
        env.update(spec.env(self._opts))
        config = spec.config(self._opts, child.index)
        if config:
            name = spec.name if child.replicas == 1 else f"{spec.name}-{child.index}"
            path = self._opts.data_dir / f"{name}.yaml"
            path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
            env["SIPMESH_CONFIG"] = str(path)
        return env

    def start(self, child: _Child) -> None:
        child.proc = subprocess.Popen(  # noqa: S603 - our interpreter and module
            dies_with_parent([sys.executable, "-m", child.spec.module]),
            env=self._env(child),
            stdin=subprocess.DEVNULL,
            # Out of the terminal's process group: a Ctrl-C (or a SIGTERM to the
            # group) reaches only up, which stops the services first and NATS
            # last; were they signalled together, NATS could go before a service
            # drained. dies_with_parent: up killed hard takes them with it.
            start_new_session=True,
        )
        child.starts += 1
        _say(f"{child.label}: started (pid {child.proc.pid})")

    def check(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                code = child.proc.returncode
                if code == _FATAL_EXIT:
                    # Its one-line reason is on stderr already; restarting
                    # cannot help (a taken port, a bad setting).
                    child.proc = None
                    raise UpError(
                        f"{child.label} cannot start (exit {code}); see its message above"
                    )
                _say(f"{child.label}: exited with {code}; restarting")
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
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise UpError("pass both --tls-cert and --tls-key, or neither")
    plan = PortPlan.of(settings)
    _check_sip_ports(settings.sip_host, plan)
    cert, key = _tls_files(settings) if plan.tls else (None, None)
    opts_base = UpOptions(
        sip_host=settings.sip_host,
        sip_port=plan.sip,
        domain=settings.domain,
        data_dir=settings.data_dir,
        nats_url="",
        tls_port=plan.tls,
        ws_port=plan.ws,
        cert_file=cert,
        key_file=key,
        edges=settings.edges,
    )
    # Our own handlers from the very start: a SIGTERM while nats-server is
    # starting must still stop it, not orphan it.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP too: the terminal closing reaches only up (its children have
    # sessions of their own), which must then stop them.
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        url, server = await _start_nats(settings)
        try:
            if not stop.is_set():
                opts = dataclasses.replace(opts_base, nats_url=url)
                await _serve(settings, opts, plan, stop)
        finally:
            if server is not None:
                await asyncio.to_thread(server.stop)
            _say("sipmesh stopped")
    finally:
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def _serve(
    settings: UpSettings, opts: UpOptions, plan: PortPlan, stop: asyncio.Event
) -> None:
    url = opts.nats_url
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
    supervisor = _Supervisor(opts, http_host=settings.http_host)
    try:
        await kv.ensure_jetstream(svc.js)
        buckets = ", ".join(b.bucket for b in kv.BUCKETS)
        _say(f"jetstream: buckets {buckets}; streams {', '.join(str(s.name) for s in kv.STREAMS)}")
        domain_file(settings.data_dir).write_text(settings.domain + "\n", encoding="utf-8")
        url_file.write_text(url + "\n", encoding="utf-8")
        _say(f"http: http://{settings.http_host}:{svc.http_port}/healthz /readyz /metrics")
        _write_prometheus_config(settings, supervisor, svc.http_port)
        svc.add_readiness_check("services", _all_alive(supervisor))
        for spec in SERVICES:
            if not spec.is_available():
                _say(f"{spec.name}: not there yet (no {spec.module}.__main__)")
        supervisor.check()
        if any(c.spec.name == "edge" for c in supervisor.children):
            _say_where_phones_go(settings, plan)
        _say(f"sipmesh is up: NATS at {redact_url(url)}; Ctrl-C or SIGTERM stops it")
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


def _write_prometheus_config(settings: UpSettings, supervisor: _Supervisor, up_port: int) -> None:
    targets = {"up": [f"{_scrape_host(settings.http_host)}:{up_port}"]}
    targets.update(supervisor.scrape_targets())
    path = prometheus_file(settings.data_dir)
    path.write_text(yaml.safe_dump(prometheus_config(targets), sort_keys=False), encoding="utf-8")
    _say(f"prometheus: {path} (prometheus --config.file={path})")


async def _forward_stop(stop: asyncio.Event, svc: Service) -> None:
    await stop.wait()
    svc.stop()


def _all_alive(supervisor: _Supervisor) -> ReadinessCheck:
    async def check() -> bool:
        return supervisor.all_alive()

    return check
