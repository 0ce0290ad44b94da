"""The service runtime: NATS connection, request serving, health, metrics, shutdown.

Every service's ``app.py`` is a few lines on top of this::

    async def main() -> None:
        config = load_config(RouterConfig)
        async with Service("router", config) as svc:
            await svc.serve(subjects.SIP_ROUTE, handle, queue=subjects.QUEUE_ROUTER,
                            decode=schema.decode_envelope, on_error=to_drop)
            await svc.wait_stopped()        # SIGTERM / SIGINT

    def run() -> None:
        run_service(main())

Leaving the ``async with`` block shuts down in order: ``/readyz`` turns 503, the
subscriptions stop taking messages, in-flight handlers get ``nats.drain_timeout``
seconds, what is left is cancelled, the connections drain, the HTTP port closes.

A service holds two NATS connections: nats-py (:attr:`Service.nc`: JetStream,
KV, watches, anything awaited) and a :class:`~sipmesh_bus.wire.WireClient`
(:attr:`Service.wire`) that :meth:`Service.serve` subscribes and answers on:
no task, queue or flusher per message on the hot request/reply path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, TypeVar, cast

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.client import RawCredentials
from nats.js import JetStreamContext
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from sipmesh_bus import schema
from sipmesh_bus._wireauth import format_creds, read_creds, read_seed
from sipmesh_bus.config import (
    ConfigError,
    HttpConfig,
    NatsConfig,
    ServiceConfig,
    load_config,
)
from sipmesh_bus.httpserver import HttpResponse, HttpServer
from sipmesh_bus.requeststats import RequestStats
from sipmesh_bus.wire import WireAuthError, WireClient, WireClosedError

__all__ = [
    "EnvelopeApp",
    "ErrorMapper",
    "Handler",
    "NatsAuthError",
    "ReadinessCheck",
    "Service",
    "StoppedError",
    "connect",
    "parse_service_config",
    "run_service",
    "security_options",
    "serve_envelopes_until_stopped",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
C = TypeVar("C", bound=ServiceConfig)
K = TypeVar("K")
Handler = Callable[[T], Awaitable[R | None]]
#: Decoded request in, reply out; None sends no reply.
ErrorMapper = Callable[[Exception, bytes], R | None]
#: Turns a decode or handler error (and the raw request) into a reply, or None.
ReadinessCheck = Callable[[], Awaitable[bool]]
#: True when ready; False or an exception means not ready.

_CHECK_TIMEOUT: Final = 1.0
_HEARTBEAT: Final = 0.25
_STALL: Final = 5.0
_TEXT: Final = "text/plain; charset=utf-8"


class StoppedError(Exception):
    """A stop (SIGTERM) arrived before the first NATS connection; nothing to serve."""


class _ConnectionLog:
    """Log each disconnect and reconnect once, not every failed attempt."""

    def __init__(self, name: str, nc: NatsClient, on_change: Callable[[bool], None]) -> None:
        self._name = name
        self._nc = nc
        self._on_change = on_change
        self._down_since: float | None = None
        self._last_error: str | None = None

    async def error(self, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last_error:
            self._last_error = text
            log.warning(
                "%s: NATS error: %s (retrying, further repeats not logged)", self._name, text
            )

    async def disconnected(self) -> None:
        if self._nc.is_closed or self._nc.is_draining:
            return  # our own shutdown, not an outage
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("%s: NATS connection lost; reconnecting until it is back", self._name)
            self._on_change(False)

    async def reconnected(self) -> None:
        down = time.monotonic() - self._down_since if self._down_since is not None else 0.0
        self._down_since = None
        self._last_error = None
        log.warning("%s: NATS reconnected after %.1f s", self._name, down)
        self._on_change(True)

    async def closed(self) -> None:
        log.info("%s: NATS connection closed", self._name)


async def connect(
    config: NatsConfig,
    *,
    name: str,
    forever: bool = True,
    on_change: Callable[[bool], None] | None = None,
) -> NatsClient:
    """Connect to NATS and stay connected.

    Args:
        config: URL(s) and timing.
        name: the client name (defaults to ``config.name`` when that is set).
        forever: keep retrying the first connection too; False fails at once.
        on_change: called with False on disconnect and True on reconnect.

    Returns:
        The connected client; it reconnects forever after a disconnect.

    Raises:
        OSError, nats.errors.NoServersError: ``forever`` is False and no server answered.
    """
    servers = [u.strip() for u in config.url.split(",") if u.strip()]
    security = security_options(config)
    if config.creds_file:
        # nats-py's own reader keeps a CR in the seed of a CRLF file (and spins
        # forever on a file without a JWT block): hand it the text of ours.
        jwt, seed = _keys_file("creds_file", config.creds_file, read_creds)
        security["user_credentials"] = RawCredentials(format_creds(jwt, seed))
    nc = NatsClient()
    events = _ConnectionLog(name, nc, on_change or (lambda _up: None))
    refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        # Wrong credentials do not heal by retrying: fail the first connect.
        if _is_auth_error(exc) and not nc.is_connected and not refused.done():
            refused.set_result(str(exc))
        elif forever:
            await events.error(exc)

    options: dict[str, Any] = {
        "servers": servers,
        "name": config.name or name,
        "connect_timeout": config.connect_timeout,
        "reconnect_time_wait": config.reconnect_wait,
        "drain_timeout": config.drain_timeout,
        # 0 would retry the first connect forever (nats-py only drops a server
        # after more than max attempts); 1 gives up after a second try.
        "max_reconnect_attempts": -1 if forever else 1,
        "allow_reconnect": forever,
        # A one-shot connect raises its error to the caller: no log line too.
        "error_cb": on_error,
        "disconnected_cb": events.disconnected,
        "reconnected_cb": events.reconnected,
        "closed_cb": events.closed,
        **security,
    }
    connecting: asyncio.Future[Any] = asyncio.ensure_future(nc.connect(**options))
    pending: list[asyncio.Future[Any]] = [connecting, refused]
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        connecting.cancel()
        raise
    if not connecting.done():
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await connecting
        with contextlib.suppress(Exception):
            await nc.close()
        raise NatsAuthError(config, refused.result())
    try:
        connecting.result()
    except nats.errors.Error as exc:
        if not _is_auth_error(exc):
            raise
        with contextlib.suppress(Exception):
            await nc.close()
        raise NatsAuthError(config, str(exc)) from None
    return nc


class NatsAuthError(ConfigError):
    """NATS refused the configured credentials (one line, without them)."""

    def __init__(self, config: NatsConfig, detail: str) -> None:
        reason = detail.removeprefix("nats: ").strip("'\" ")
        super().__init__(
            f"config error: nats: {config.safe_url} refused the credentials ({reason}); "
            "check nats.user/password, token, creds_file or nkeys_seed_file"
        )


def _is_auth_error(exc: BaseException) -> bool:
    if isinstance(exc, nats.errors.AuthorizationError):
        return True
    text = str(exc).lower()
    return "authorization violation" in text or "authentication" in text


def security_options(config: NatsConfig) -> dict[str, Any]:
    """The authentication and TLS arguments of ``nats.connect`` for ``config``.

    Secret files are read here, at connect time, so a rotated password is
    picked up by the next start.

    Raises:
        ConfigError: a secret, key or certificate file cannot be read or
            loaded, or a creds or seed file holds no usable key (one line
            naming the setting and the file, never its content).
    """
    options: dict[str, Any] = {}
    if config.user:
        options["user"] = config.user
        password = config.password or _read_secret("password_file", config.password_file)
        if password:
            options["password"] = password
    token = config.token or _read_secret("token_file", config.token_file)
    if token:
        options["token"] = token
    # Checked here, so that a bad file is one config line rather than an
    # nkeys traceback from nats-py (the wire client reads them again at each
    # connect).
    if config.creds_file:
        _keys_file("creds_file", config.creds_file, read_creds)
        options["user_credentials"] = config.creds_file
    if config.nkeys_seed_file:
        _keys_file("nkeys_seed_file", config.nkeys_seed_file, read_seed)
        options["nkeys_seed"] = config.nkeys_seed_file
    if config.tls:
        options["tls"] = _tls_context(config)
        if config.tls_hostname:
            options["tls_hostname"] = config.tls_hostname
    return options


def _read_secret(setting: str, path: str | None) -> str | None:
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise ConfigError(f"config error: nats.{setting}: {path}: {reason}") from None
    value = text.splitlines()[0].strip() if text.strip() else ""
    if not value:
        raise ConfigError(f"config error: nats.{setting}: {path}: the file is empty")
    return value


def _existing(setting: str, path: str) -> str:
    if not Path(path).is_file():
        raise ConfigError(f"config error: nats.{setting}: {path}: no such file")
    return path


def _keys_file(setting: str, path: str, read: Callable[[Path], K]) -> K:
    try:
        return read(Path(_existing(setting, path)))
    except WireAuthError as exc:
        # The reason names the file, never its content.
        raise ConfigError(f"config error: nats.{setting}: {exc}") from None


def _tls_context(config: NatsConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=config.tls_ca_file)
        # RFC 8996: nothing older than TLS 1.2.
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if config.tls_cert_file and config.tls_key_file:
            context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        reason = (
            getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
        )
        raise ConfigError(f"config error: nats TLS files: {reason}") from None
    return context


class Service:
    """One service process: its NATS connection, HTTP endpoint and subscriptions."""

    def __init__(
        self,
        name: str,
        config: ServiceConfig,
        *,
        registry: CollectorRegistry | None = None,
        install_signal_handlers: bool = True,
    ) -> None:
        self.name = name
        self.nats_config: NatsConfig = config.nats
        self.http_config: HttpConfig = config.http
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        self.registry = registry
        #: Services register their own metrics here (``registry=svc.registry``).
        self._signals = install_signal_handlers
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._http = HttpServer(
            {"/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz},
            host=config.http.host,
            port=config.http.port,
        )
        self._checks: dict[str, ReadinessCheck] = {}
        self._wire: WireClient | None = None
        self._sids: list[int] = []
        self._abandon = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()
        self._closing = False
        self._beat = 0.0
        self._heartbeat: asyncio.Task[None] | None = None
        self._m_connected = Gauge(
            "sipmesh_nats_connected",
            "1 while connected to NATS (both the nats-py and the wire connection)",
            registry=registry,
        )
        self._m_reconnects = Counter(
            "sipmesh_nats_reconnects",
            "NATS reconnections (of either connection)",
            registry=registry,
        )
        #: Which of the two connections is down (``"nc"``, ``"wire"``).
        self._down: set[str] = set()
        self._m_stats = RequestStats(registry)

    # -- life cycle ---------------------------------------------------------

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the HTTP port, install signal handlers, connect to NATS.

        The HTTP port comes first so ``/healthz`` answers while NATS is still
        unreachable; the connection is retried until it succeeds or a stop.

        Raises:
            OSError: the HTTP port is taken.
            StoppedError: stopped before the first connection (run_service exits 0).
        """
        loop = asyncio.get_running_loop()
        await self._http.start()
        self._beat = loop.time()
        self._heartbeat = asyncio.create_task(self._beat_forever())
        log.info(
            "%s: metrics and health on http://%s:%d",
            self.name,
            self.http_config.host,
            self.http_port,
        )
        if self._signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        connecting = asyncio.create_task(self._connect())
        stopping = asyncio.create_task(self._stopped.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            await self.close()
            raise StoppedError(f"{self.name}: stopped before NATS was reachable")
        self._nc, self._wire = connecting.result()
        self._js = self._nc.jetstream(timeout=self.nats_config.request_timeout)
        self._m_connected.set(1)
        log.info("%s: connected to NATS at %s", self.name, self.nats_config.safe_url)

    async def _connect(self) -> tuple[NatsClient, WireClient]:
        config = self.nats_config
        nc = await connect(config, name=self.name, on_change=self._connection_changed)
        wire = WireClient(
            config,
            name=self.name,
            security=security_options(config),
            on_change=self._wire_changed,
        )
        try:
            await wire.connect(forever=True)
        except WireAuthError as exc:
            await nc.close()
            raise NatsAuthError(config, str(exc)) from None
        except BaseException:
            await nc.close()
            raise
        return nc, wire

    def stop(self) -> None:
        """Ask :meth:`wait_stopped` to return (what SIGTERM and SIGINT do)."""
        if not self._stopped.is_set():
            log.info("%s: stopping", self.name)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait for :meth:`stop`, SIGTERM or SIGINT."""
        await self._stopped.wait()

    async def close(self) -> None:
        """Shut down gracefully; see the module docstring for the order."""
        self._closing = True
        self._stopped.set()
        if self._signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        wire = self._wire
        if wire is not None:
            for sid in self._sids:
                wire.unsubscribe(sid)
            with contextlib.suppress(Exception):
                await wire.flush(1.0)  # the server takes no more for us
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.nats_config.drain_timeout
        # Requests held back at max_concurrency start as others finish: wait
        # for those too, until the deadline.
        while self._inflight and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._inflight), timeout=left)
        self._abandon = True  # from here nothing held back starts
        late = set(self._inflight)
        for task in late:
            task.cancel()
        if late:
            log.warning("%s: cancelled %d requests still running at shutdown", self.name, len(late))
            await asyncio.wait(late)
        if wire is not None:
            await wire.close(1.0)  # lets the last replies out
        if self._nc is not None:
            try:
                await asyncio.wait_for(self._nc.drain(), self.nats_config.drain_timeout + 1)
            except Exception:  # already closed, or no server to drain to
                # nats-py's close writes what it still holds to a transport that
                # may be gone with the server (stopped with us by a whole-group
                # signal): nothing is left to lose, so no traceback at exit.
                with contextlib.suppress(Exception):
                    await self._nc.close()
            self._m_connected.set(0)
        await self._http.close()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat

    # -- what services use --------------------------------------------------

    @property
    def nc(self) -> NatsClient:
        """The NATS client (after :meth:`start`)."""
        if self._nc is None:
            raise RuntimeError("the service is not connected to NATS")
        return self._nc

    @property
    def wire(self) -> WireClient:
        """The hot-path connection :meth:`serve` uses (after :meth:`start`)."""
        if self._wire is None:
            raise RuntimeError("the service is not connected to NATS")
        return self._wire

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (after :meth:`start`)."""
        if self._js is None:
            raise RuntimeError("the service is not connected to NATS")
        return self._js

    @property
    def http_port(self) -> int:
        """The port ``/metrics``, ``/healthz`` and ``/readyz`` are served on."""
        return self._http.port

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """Make ``/readyz`` also depend on ``check`` (called with a 1 s timeout)."""
        self._checks[name] = check

    async def serve(
        self,
        subject: str,
        handler: Handler[T, R],
        *,
        queue: str,
        decode: Callable[[bytes], T],
        encode: Callable[[R], bytes] = schema.encode,  # type: ignore[assignment]
        on_error: ErrorMapper[R] | None = None,
        max_concurrency: int = 1000,
        max_backlog: int = 10_000,
    ) -> None:
        """Answer requests on ``subject`` as one member of the queue group ``queue``.

        Per message: decode, ``await handler(request)``, encode, respond. That
        starts inline, in the wire connection's ``data_received`` (see
        :mod:`sipmesh_bus.wire`); a request whose handler suspends goes on in
        its own task (at most ``max_concurrency`` at once; past that requests
        wait in arrival order in a backlog of at most ``max_backlog``, the
        oldest shed first, and any that waited longer than the requester's
        ``request_timeout`` are shed when their turn comes: the requester has
        answered 503 by then), so one that never suspends costs no task. Reading
        never pauses: the same connection carries the replies that suspended
        handlers wait for (the registrar's compare-and-set writes), so pausing
        it at the cap would deadlock them until their timeouts. Until its first suspension a
        handler therefore runs outside any task: it must not enter
        ``asyncio.timeout()`` or a ``TaskGroup``, call ``current_task()``, or
        set a context variable, before its first ``await`` that suspends. A decode error or an
        exception from the handler goes to ``on_error(exc, raw)``, whose reply (if
        any) is sent; without ``on_error`` it is logged and nothing is sent, so
        the requester times out (and answers 503 itself).

        Args:
            subject: a constant from :mod:`sipmesh_bus.subjects`.
            handler: the request handler.
            queue: the queue group (replicas share the load).
            decode: bytes to request, e.g. ``schema.decode_envelope``.
            encode: reply to bytes (default ``schema.encode``).
            on_error: maps errors to replies at this boundary.
            max_concurrency: suspended requests at once; more wait in the backlog.
            max_backlog: requests waiting beyond that; more shed the oldest.
        """
        wire = self.wire
        loop = asyncio.get_running_loop()
        stale_after = self.nats_config.request_timeout
        backlog: deque[tuple[float, bytes, bytes, bytes]] = deque()
        taken = 0
        record = self._m_stats.record
        clock = time.perf_counter

        def shed(subject: bytes) -> None:
            # No reply: the requester times out and answers 503 itself.
            self._m_stats.count(subject, "shed")

        def answer(
            subject: bytes, reply_to: bytes, outcome: str, reply: R | None, t0: float
        ) -> None:
            try:
                if reply is not None and reply_to and not wire.publish(reply_to, encode(reply)):
                    outcome = "error"  # the wire is down: the requester times out
            except Exception:
                outcome = "error"
                log.exception("%s: could not answer on %s", self.name, subject.decode())
            record(subject, outcome, clock() - t0)

        def run(subject: bytes, reply: bytes, payload: bytes) -> None:
            # Decode, then the handler's first step, right here: one that
            # returns without suspending is answered without a task (nor any
            # coroutine but the handler's own).
            nonlocal taken
            started = clock()
            try:
                try:
                    request = decode(payload)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    failed = self._map_error(exc, subject, payload, on_error)
                    answer(subject, reply, "bad_request", failed, started)
                    return
                try:
                    pending = handler(request)
                    coro: Coroutine[Any, Any, R | None] = (
                        pending
                        if type(pending) is types.CoroutineType
                        # Another awaitable (a future, a compiled coroutine): awaited.
                        else _awaiting(pending)
                    )
                    yielded = coro.send(None)
                except StopIteration as done:
                    answer(subject, reply, "ok", done.value, started)
                    return
                except asyncio.CancelledError:
                    return  # the handler cancelled itself, as a task would have ended
                except Exception as exc:
                    failed = self._map_error(exc, subject, payload, on_error)
                    answer(subject, reply, "error", failed, started)
                    return
            except Exception:
                log.exception("%s: request on %s failed", self.name, subject.decode())
                return
            if getattr(yielded, "_asyncio_future_blocking", False):
                # A future's ``__await__`` raises this flag as it yields it, and
                # refuses a second await while it is up; a task takes the
                # future and lowers it. Do that now, or another request
                # started inline, waiting for the same future (a shared event,
                # a lock), fails; :func:`_resume` raises it for the task.
                yielded._asyncio_future_blocking = False
            taken += 1
            task = loop.create_task(go_on(coro, yielded, subject, reply, payload, started=started))
            self._inflight.add(task)
            task.add_done_callback(finished)

        async def go_on(
            coro: Coroutine[Any, Any, R | None],
            yielded: Any,
            subject: bytes,
            reply_to: bytes,
            payload: bytes,
            *,
            started: float,
        ) -> None:
            reply: R | None
            try:
                reply = await _resume(coro, yielded)
                outcome = "ok"
            except Exception as exc:
                outcome, reply = "error", self._map_error(exc, subject, payload, on_error)
            answer(subject, reply_to, outcome, reply, started)

        def finished(task: asyncio.Task[None]) -> None:
            nonlocal taken
            self._inflight.discard(task)
            taken -= 1
            if self._abandon:
                backlog.clear()
            now = loop.time()
            while backlog and taken < max_concurrency:
                arrived, subject, reply, payload = backlog.popleft()
                if now - arrived > stale_after:
                    shed(subject)
                else:
                    run(subject, reply, payload)

        def on_msg(subject: bytes, reply: bytes, payload: bytes, _status: int | None) -> None:
            if taken >= max_concurrency or backlog:
                backlog.append((loop.time(), subject, reply, payload))
                if len(backlog) > max_backlog:
                    shed(backlog.popleft()[1])
                return
            run(subject, reply, payload)

        self._sids.append(wire.subscribe(subject, on_msg, queue=queue))
        # The server has the SUB when this returns; while reconnecting it goes
        # out again with the next CONNECT.
        with contextlib.suppress(WireClosedError, TimeoutError):
            await wire.flush(self.nats_config.request_timeout)
        log.info("%s: serving %s (queue group %s)", self.name, subject, queue)

    def _map_error(
        self, exc: Exception, subject: bytes, payload: bytes, on_error: ErrorMapper[R] | None
    ) -> R | None:
        if on_error is None:
            log.error("%s: request on %s failed: %r", self.name, subject.decode(), exc)
            return None
        return on_error(exc, payload)

    # -- health and metrics -------------------------------------------------

    def _connection_changed(self, up: bool) -> None:
        self._link_changed("nc", up)

    def _wire_changed(self, up: bool) -> None:
        self._link_changed("wire", up)  # the wire client logs the change itself

    def _link_changed(self, link: str, up: bool) -> None:
        # Called only on changes after the first connect (both clients say so).
        if up:
            self._down.discard(link)
            self._m_reconnects.inc()
        else:
            self._down.add(link)
        self._m_connected.set(0 if self._down else 1)

    async def _beat_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._beat = loop.time()
            await asyncio.sleep(_HEARTBEAT)

    async def _metrics(self, _query: str) -> HttpResponse:
        return 200, generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def _healthz(self, _query: str) -> HttpResponse:
        lag = asyncio.get_running_loop().time() - self._beat
        beating = self._heartbeat is not None and not self._heartbeat.done()
        if not beating or lag > _STALL:
            return 503, f"event loop stalled for {lag:.1f} s\n".encode(), _TEXT
        return 200, b"ok\n", _TEXT

    async def _readyz(self, _query: str) -> HttpResponse:
        problems = await self._readiness_problems()
        if problems:
            return 503, ("not ready: " + "; ".join(problems) + "\n").encode(), _TEXT
        return 200, b"ready\n", _TEXT

    async def _readiness_problems(self) -> list[str]:
        if self._closing:
            return ["shutting down"]
        nc, wire = self._nc, self._wire
        if nc is None or self._js is None or not nc.is_connected:
            return ["NATS not connected"]
        if wire is None or not wire.connected:  # the one serve() answers on
            return ["NATS not connected"]
        problems = []
        try:
            await asyncio.wait_for(self._js.account_info(), _CHECK_TIMEOUT)
        except Exception as exc:
            problems.append(f"JetStream: {type(exc).__name__}")
        for name, check in self._checks.items():
            try:
                if not await asyncio.wait_for(check(), _CHECK_TIMEOUT):
                    problems.append(name)
            except Exception as exc:
                problems.append(f"{name}: {type(exc).__name__}")
        return problems


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """Go on driving ``coro`` after its first step, which yielded ``yielded``; its result.

    What a task would have done: pass each yielded future up to the task running
    this, and send the results (or throw the cancellations) back down.
    """
    if getattr(yielded, "_asyncio_future_blocking", None) is False:
        # Lowered after the inline first step (see Service.serve): raised
        # again, or the task running this would refuse the future.
        yielded._asyncio_future_blocking = True
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # CancelledError from task.cancel()
            try:
                yielded = coro.throw(exc)
            except StopIteration as done:
                return cast(T, done.value)
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as done:
                return cast(T, done.value)


async def _awaiting(awaitable: Awaitable[T]) -> T:
    """A coroutine awaiting ``awaitable`` (what a handler returned that is not one)."""
    return await awaitable


class EnvelopeApp(Protocol):
    """What a service answering edge envelopes has (the registrar, the router)."""

    async def handle(self, env: schema.Envelope, /) -> Any: ...

    def on_error(self, exc: Exception, raw: bytes, /) -> Any: ...


async def serve_envelopes_until_stopped(
    svc: Service, app: EnvelopeApp, subjects: Iterable[str], *, queue: str
) -> None:
    """Answer edge envelopes on each of ``subjects`` with ``app`` until a stop.

    ``app.handle`` gets each decoded :class:`~sipmesh_bus.schema.Envelope`,
    ``app.on_error`` maps the errors; returns after SIGTERM/SIGINT.
    """
    for subject in subjects:
        await svc.serve(
            subject, app.handle, queue=queue, decode=schema.decode_envelope, on_error=app.on_error
        )
    await svc.wait_stopped()


def parse_service_config(
    cls: type[C], argv: list[str] | None, *, prog: str, description: str | None
) -> C:
    """The config from ``--config`` (or ``$SIPMESH_CONFIG``), the environment and flags.

    The flags every service takes: ``--config PATH`` and ``--nats-url URLS``.

    Raises:
        ConfigError: a setting is invalid.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, help="YAML settings file")
    parser.add_argument("--nats-url", help="NATS URL(s), comma-separated")
    args = parser.parse_args(argv)
    config = load_config(cls, path=args.config)
    if args.nats_url:
        config = msgspec.structs.replace(
            config, nats=msgspec.structs.replace(config.nats, url=args.nats_url)
        )
    return config


def run_service(main: Coroutine[Any, Any, None]) -> None:
    """Run a service's main coroutine on uvloop when installed, else asyncio.

    A :class:`StoppedError` (SIGTERM while still connecting) is a clean exit; a
    :class:`~sipmesh_bus.config.ConfigError` prints its one line and exits 2.

    Args:
        main: the coroutine, e.g. ``main()``.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    try:
        import uvloop  # noqa: PLC0415 - optional, absent on Windows
    except ImportError:
        runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(main)
    except StoppedError as exc:
        log.info("%s", exc)
    except ConfigError as exc:
        # Load the config inside ``main`` so a bad setting ends up here: one
        # line and exit status 2, never a traceback.
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
