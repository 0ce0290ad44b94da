"""Start and stop a local RTPEngine (Debian ``rtpengine-daemon``) in userspace mode.

``sipmesh up`` uses it through the media service (``media.local_rtpengine``), and
the tests use it to get real instances. The daemon runs in the foreground as our
child, never reads ``/etc/rtpengine/rtpengine.conf`` (``--config-file=none``),
forwards in userspace (``--table=-1``: no kernel module), frees deleted calls at
once (``--delete-delay=0``) and listens for ng on a free loopback UDP port. ::

    engine = LocalRtpEngine(binary=find_binary(), data_dir=path)
    await engine.start()            # returns once it answers a ping
    engine.instance                 # Instance(name="local", host=..., port=...)
    await engine.stop()             # SIGTERM, then SIGKILL after the timeout
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from typing import Final

from sipmesh_bus.procs import dies_with_parent

from . import ng
from .client import NgClient
from .errors import NgError
from .pool import Instance

__all__ = [
    "NOT_FOUND_MESSAGE",
    "LocalRtpEngine",
    "LocalRtpEngineError",
    "find_binary",
    "free_port_range",
    "free_udp_port",
]

NOT_FOUND_MESSAGE: Final = "rtpengine not found: running without media anchoring"
_SEARCH: Final = ("/usr/bin/rtpengine", "/usr/sbin/rtpengine", "/usr/local/bin/rtpengine")
_RANGE_LOW: Final = 20000
_RANGE_HIGH: Final = 59000


class LocalRtpEngineError(Exception):
    """The local RTPEngine did not start (the message holds its log's tail)."""


def find_binary(explicit: str | None = None) -> str | None:
    """The rtpengine executable: ``explicit``, else ``$PATH``, else the usual places.

    Returns:
        Its path, or None when it is not installed.
    """
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else shutil.which(explicit)
    found = shutil.which("rtpengine")
    if found:
        return found
    return next((p for p in _SEARCH if os.access(p, os.X_OK)), None)


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free right now on ``host`` (bind port 0, read, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _range_free(host: str, low: int, high: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for port in range(low, high + 1):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.bind((host, port))
    except OSError:
        return False
    finally:
        for sock in socks:
            sock.close()
    return True


def free_port_range(
    host: str = "127.0.0.1", size: int = 200, *, rng: random.Random | None = None
) -> tuple[int, int]:
    """An even-aligned UDP port range of ``size`` ports, all free right now.

    RTPEngine takes RTP on even ports and RTCP on the next odd one; random
    bases keep parallel instances (and test runs) apart.

    Raises:
        LocalRtpEngineError: no free range after 50 attempts.
    """
    rng = rng or random.Random()
    for _ in range(50):
        low = rng.randrange(_RANGE_LOW, _RANGE_HIGH - size) & ~1
        if _range_free(host, low, low + size - 1):
            return low, low + size - 1
    raise LocalRtpEngineError(f"no {size} free UDP ports in a row on {host}")


class LocalRtpEngine:
    """One RTPEngine child process."""

    def __init__(
        self,
        *,
        binary: str,
        data_dir: Path | None = None,
        name: str = "local",
        interface: str = "127.0.0.1",
        ng_host: str = "127.0.0.1",
        port_min: int = 0,
        port_max: int = 0,
        log_level: int = 5,
    ) -> None:
        """Describe the instance; nothing starts before :meth:`start`.

        Args:
            binary: the rtpengine executable (see :func:`find_binary`).
            data_dir: for the pidfile and ``rtpengine-<name>.log``; None: a
                temporary directory removed by :meth:`stop`.
            name: the instance name in the pool.
            interface: the address RTPEngine relays media on and writes in SDP.
            ng_host: where it listens for ng.
            port_min: first RTP port; 0 (with port_max 0) picks a free range.
            port_max: last RTP port.
            log_level: syslog level 0-7 (6 logs every command).
        """
        self.binary = binary
        self.name = name
        self.interface = interface
        self.ng_host = ng_host
        self.ng_port = 0
        self.port_min = port_min
        self.port_max = port_max
        self.log_level = log_level
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="rtpengine-"))
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def instance(self) -> Instance:
        """The pool entry for this instance (after :meth:`start`)."""
        return Instance(name=self.name, host=self.ng_host, port=self.ng_port)

    @property
    def log_path(self) -> Path:
        """The daemon's log file."""
        return self.data_dir / f"rtpengine-{self.name}.log"

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        """The command line (after the ports are chosen)."""
        return [
            self.binary,
            "--config-file=none",
            "--table=-1",
            f"--interface={self.interface}",
            f"--listen-ng={self.ng_host}:{self.ng_port}",
            "--foreground",
            "--log-stderr",
            f"--port-min={self.port_min}",
            f"--port-max={self.port_max}",
            "--delete-delay=0",
            f"--log-level={self.log_level}",
            f"--pidfile={self.data_dir / f'rtpengine-{self.name}.pid'}",
        ]

    async def start(self, *, timeout: float = 10.0) -> None:
        """Start the daemon and wait until it answers an ng ping.

        Raises:
            LocalRtpEngineError: it exited or stayed silent for ``timeout`` seconds.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port_min and not self.port_max:
            self.port_min, self.port_max = free_port_range(self.interface)
        self.ng_port = free_udp_port(self.ng_host)
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *dies_with_parent(self.command()),  # no orphan daemon
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C in up's terminal is up's to relay
            )
        try:
            await asyncio.wait_for(self._wait_ready(), timeout)
        except (TimeoutError, LocalRtpEngineError) as exc:
            tail = self._tail()
            await self.stop()
            raise LocalRtpEngineError(
                f"rtpengine did not start ({exc or 'no ping answer'}); log: {tail}"
            ) from None

    async def _wait_ready(self) -> None:
        client = await NgClient.open(self.ng_host, self.ng_port, timeout=0.1, tries=1)
        try:
            while True:
                if self._proc is None or self._proc.returncode is not None:
                    raise LocalRtpEngineError("it exited")
                with contextlib.suppress(NgError):
                    await client.request(ng.ping())
                    return
                await asyncio.sleep(0.05)
        finally:
            client.close()

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-5:]) or "(empty)"

    async def stop(self, *, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the daemon at once (tests: an instance dying mid-call)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
