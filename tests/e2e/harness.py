"""Real processes for the end-to-end suite: nats-server, registrars, an edge, the CLI.

Every piece runs as its own OS process, started the way a deployment starts it
(``python -m sipmesh_registrar``, ``python -m sipmesh_edge``, the ``sipmesh``
command), in its own process group so that a test can kill exactly one piece
and the finalizers can always kill everything, grandchildren included.

Nothing here knows SIP beyond a one-datagram probe: scenarios are SIPp's
(:mod:`tests.e2e.sipp`), the phone is baresip (:mod:`tests.e2e.baresip`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import nats
import yaml

from sipmesh_bus import kv, records
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.records import Binding
from sipmesh_registrar.config import RegistrarSettings

__all__ = [
    "DOMAIN",
    "LOOPBACK",
    "NONCE_SECRET",
    "Proc",
    "Stack",
    "User",
    "clean_env",
    "free_port",
    "free_port_run",
    "probe_register",
    "registrar_algorithms_setting",
    "run_cli",
    "wait_ready",
]

LOOPBACK: Final = "127.0.0.1"
DOMAIN: Final = "e2e.sipmesh.test"
#: The SIP domain (and digest realm) the registrars serve; never resolved.
NONCE_SECRET: Final = "e2e-nonce-secret-shared-by-every-replica"
MIN_EXPIRES: Final = 2
#: Low, so that an expiry test waits seconds, not a minute.
READY_TIMEOUT: Final = 20.0
_user_numbers = itertools.count(1)
_SHIM: Final = Path(__file__).with_name("_registrar_md5.py")


def free_port(*, udp: bool = True, tcp: bool = True) -> int:
    """A loopback port free for UDP and/or TCP right now (bound to port 0, then released).

    SIP listens on one port number over both transports, so the default asks
    for a number both are free on.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK, 0))
            port: int = s.getsockname()[1]
            if not (tcp and udp):
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port for both UDP and TCP")


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive loopback ports free for UDP and TCP right now."""
    for _ in range(50):
        base = free_port()
        if base + count > 65536:
            continue
        sockets: list[socket.socket] = []
        try:
            for port in range(base + 1, base + count):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = socket.socket(socket.AF_INET, kind)
                    sockets.append(s)
                    s.bind((LOOPBACK, port))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise RuntimeError(f"no {count} consecutive free loopback ports")


def clean_env(extra: Mapping[str, str] = {}) -> dict[str, str]:
    """This environment without any ``SIPMESH_*`` setting of the caller, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
    env.pop("NATS_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def registrar_algorithms_setting() -> bool:
    """True when the registrar lets its configuration order the digest algorithms.

    SIPp 3.6 answers only the first WWW-Authenticate and knows only MD5;
    baresip 1.0 (libre) refuses a 401 that offers anything but MD5. Both need
    an MD5-only challenge, which the registrar's default (SHA-256 first, as
    RFC 8760 §2.4 prefers) is not.
    """
    return "algorithms" in RegistrarSettings.__struct_fields__


class User:
    """A subscriber made for one test: a unique name and its password."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}{next(_user_numbers)}"
        self.password = f"pw-{self.name}-secret"


class Proc:
    """One child process in its own session (process group), its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], log: Path):
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        """Start it; output goes to :attr:`log_path` (appended across restarts)."""
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        """What it printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, nothing is cleaned up."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the group, wait up to ``timeout`` s, then SIGKILL it.

        Returns:
            The exit status, or None when it had to be killed.
        """
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        # Gone already; its children may not be.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode


def wait_ready(proc: Proc, http_port: int, timeout: float = READY_TIMEOUT) -> None:
    """Poll ``/readyz`` until it answers 200.

    Raises:
        AssertionError: the process died or did not get ready, with its log.
    """
    deadline = time.monotonic() + timeout
    url = f"http://{LOOPBACK}:{http_port}/readyz"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited at start-up:\n{proc.log()[-4000:]}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=1) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"{proc.name} not ready in {timeout} s:\n{proc.log()[-4000:]}")


def probe_register(port: int, *, domain: str = DOMAIN, timeout: float = 1.0) -> int | None:
    """Send one REGISTER over UDP and return the status code of the first final answer."""
    branch = f"z9hG4bK-probe-{time.monotonic_ns()}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        s.settimeout(timeout)
        local = s.getsockname()[1]
        msg = (
            f"REGISTER sip:{domain} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{domain}>;tag=p1\r\n"
            f"To: <sip:probe@{domain}>\r\n"
            f"Call-ID: {branch}@{LOOPBACK}\r\n"
            "CSeq: 1 REGISTER\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), (LOOPBACK, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = s.recv(65535)
            except TimeoutError:
                return None
            status = int(data.split(b" ", 2)[1])
            if status >= 200:
                return status
    return None


def run_cli(*args: str, env: Mapping[str, str], timeout: float = 30.0) -> str:
    """Run ``sipmesh <args>`` (``python -m sipmesh``) and return its stdout.

    Raises:
        AssertionError: it exited with a non-zero status (the message has its output).
    """
    done = subprocess.run(
        [sys.executable, "-m", "sipmesh", *args],
        env=clean_env(env),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise AssertionError(
            f"sipmesh {' '.join(args)} exited {done.returncode}:\n"
            f"{out}{done.stderr.decode(errors='replace')}"
        )
    return out


class Stack:
    """nats-server, registrar replicas and one edge (UDP and TCP on one port).

    Args:
        workdir: logs, configs, the NATS store.
        nats_server: a started server this stack may stop and start again.
        registrar: extra ``SIPMESH_REGISTRAR_*`` settings (``{"MIN_EXPIRES": "5"}``).
    """

    def __init__(
        self,
        workdir: Path,
        nats_server: NatsServer,
        *,
        registrar: Mapping[str, str] = {},
    ) -> None:
        self.workdir = workdir
        self.nats = nats_server
        self.domain = DOMAIN
        self.sip_port = free_port()
        self.registrars: list[Proc] = []
        self.edge: Proc | None = None
        self.edges: list[tuple[Proc, int]] = []
        #: Every edge started, with its metrics port.
        self._registrar_settings = dict(registrar)
        self._procs: list[Proc] = []
        asyncio.run(self._ensure_jetstream())

    @property
    def nats_url(self) -> str:
        return self.nats.url

    async def _ensure_jetstream(self) -> None:
        nc = await nats.connect(self.nats_url)
        try:
            await kv.ensure_jetstream(nc.jetstream())
        finally:
            await nc.close()

    # -- processes -------------------------------------------------------------------

    def start_registrar(self) -> Proc:
        """Start one more registrar replica and wait until it is ready."""
        http_port = free_port(udp=False)
        settings = {
            "DOMAIN": self.domain,
            "MIN_EXPIRES": str(MIN_EXPIRES),
            "NONCE_SECRET": NONCE_SECRET,
            "ALGORITHMS": "MD5",
            **self._registrar_settings,
        }
        env = clean_env(
            {
                "SIPMESH_NATS_URL": self.nats_url,
                "SIPMESH_NATS_RECONNECT_WAIT": "0.2",
                "SIPMESH_HTTP_PORT": str(http_port),
                **{f"SIPMESH_REGISTRAR_{k}": v for k, v in settings.items()},
            }
        )
        # Until the registrar has an ``algorithms`` setting, a two-line shim
        # offers MD5 only (see registrar_algorithms_setting).
        module = ["-m", "sipmesh_registrar"] if registrar_algorithms_setting() else [str(_SHIM)]
        n = len(self.registrars)
        proc = Proc(
            f"registrar-{n}",
            [sys.executable, *module],
            env=env,
            log=self.workdir / f"registrar-{n}.log",
        )
        self._procs.append(proc.start())
        self.registrars.append(proc)
        wait_ready(proc, http_port)
        return proc

    def start_edge(
        self,
        *,
        edge_id: str = "e2e-edge",
        reuse_port: bool = False,
        siblings: Sequence[str] = (),
        challenge: bool = False,
    ) -> Proc:
        """Start an edge (UDP and TCP on :attr:`sip_port`) and wait until it is ready.

        Several edges share the port with ``reuse_port`` (each naming the others
        as ``siblings``); :attr:`edge` is the first, :attr:`edges` all of them.
        ``challenge``: the edge answers the first REGISTER's 401 itself, with the
        registrars' settings (``challenge_registers``, as ``sipmesh up`` runs it).
        """
        http_port = free_port(udp=False)
        listen = f"{LOOPBACK}:{self.sip_port}"
        config: dict[str, object] = {
            "edge_id": edge_id,
            "udp": [listen],
            "streams": {"tcp": [listen]},
            "nats": {"url": self.nats_url, "reconnect_wait": 0.2},
            "http": {"port": http_port},
        }
        if reuse_port:
            config["reuse_port"] = True
            config["siblings"] = list(siblings)
        if challenge:
            config["challenge_registers"] = True
            config["registrar"] = {
                "domain": self.domain,
                "nonce_secret": NONCE_SECRET,
                "algorithms": ["MD5"],
            }
        name = "edge" if edge_id == "e2e-edge" else edge_id
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        proc = Proc(
            name,
            [sys.executable, "-m", "sipmesh_edge"],
            env=clean_env({"SIPMESH_CONFIG": str(path)}),
            log=self.workdir / f"{name}.log",
        )
        self._procs.append(proc.start())
        if self.edge is None:
            self.edge = proc
        self.edges.append((proc, http_port))
        wait_ready(proc, http_port)
        return proc

    def wait_registering(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until a REGISTER through the edge reaches a registrar (401 or 200)."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = probe_register(self.sip_port, domain=self.domain)
            if status in (200, 401):
                return
            time.sleep(0.1)
        raise AssertionError(f"no registrar answers through the edge (last: {status})")

    def close(self) -> None:
        """Stop every process this stack started, newest first."""
        for proc in reversed(self._procs):
            proc.stop(timeout=5.0)

    def logs(self) -> str:
        """The tails of every process's log, for failure messages."""
        return "\n".join(f"--- {p.name} ---\n{p.log()[-3000:]}" for p in self._procs)

    # -- the command line --------------------------------------------------------------

    def cli(self, *args: str) -> str:
        """Run ``sipmesh <args>`` against this stack's NATS; return its stdout."""
        env = {"SIPMESH_NATS_URL": self.nats_url, "SIPMESH_DATA_DIR": str(self.workdir)}
        return run_cli(*args, env=env)

    # -- the location bucket, read directly ----------------------------------------------

    def bindings(self, user: str) -> list[Binding]:
        """The live bindings of ``user@domain`` in KV ``location``, read now."""
        return self.all_bindings([user])[user]

    def all_bindings(self, users: Iterable[str]) -> dict[str, list[Binding]]:
        """Live bindings for each user, read in one NATS connection."""
        return asyncio.run(self._read_bindings(list(users)))

    async def _read_bindings(self, users: list[str]) -> dict[str, list[Binding]]:
        nc = await nats.connect(self.nats_url)
        try:
            bucket = await nc.jetstream().key_value(kv.BUCKET_LOCATION)
            found = await asyncio.gather(*(self._read_one(bucket, u) for u in users))
        finally:
            await nc.close()
        return dict(zip(users, found, strict=True))

    async def _read_one(self, bucket: nats.js.kv.KeyValue, user: str) -> list[Binding]:
        try:
            entry = await bucket.get(records.aor_key(user, self.domain))
        except nats.js.errors.KeyNotFoundError:
            return []
        if not entry.value:
            return []
        return records.live_bindings(records.decode_binding_set(entry.value), time.time())
