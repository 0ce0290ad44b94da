"""Fixtures for the media end-to-end tests: real rtpengine daemons and the media service.

``media_stack``: nats-server, registrar, edge, router (``router.media=always``,
MD5 challenges for baresip and SIPp) and the media service, with two RTPEngine
instances (``rtp-a``, ``rtp-b``) started here as plain child processes so that a
test can SIGKILL one. :func:`ng` talks to an instance directly (``list``,
``query``) to see what the anchor really holds.
"""

from __future__ import annotations

import itertools
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from sipmesh_bus.natsserver import NatsServer
from sipmesh_media import ng
from sipmesh_media.local import LocalRtpEngine, find_binary, free_port_range, free_udp_port
from tests.e2e.harness import LOOPBACK, Proc, Stack, clean_env, free_port, wait_ready
from tests.e2e.router_fixtures import RouterStack

__all__ = ["MediaStack", "Rtp", "media_stack", "ng_request"]

_cookies = itertools.count(1)
PING_INTERVAL: Final = 0.2


def ng_request(port: int, body: ng.Body, *, timeout: float = 1.0) -> ng.NgResponse:
    """One ng command to the instance on ``127.0.0.1:port``, synchronously.

    Raises:
        TimeoutError: no reply (the instance is dead).
    """
    cookie = b"e2e%d" % next(_cookies)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(ng.encode_message(cookie, body), (LOOPBACK, port))
        me = s.getsockname()
        while True:
            data, sender = s.recvfrom(65535)
            if sender == me:
                # The kernel gave this socket the very port we send to (free
                # while rtpengine is still starting): our own request came back.
                continue
            got, reply = ng.decode_message(data)
            if got == cookie:
                return ng.parse_response(str(body["command"]), reply)


class Rtp:
    """One rtpengine daemon (userspace, loopback), run as a :class:`Proc`."""

    def __init__(self, name: str, binary: str, workdir: Path) -> None:
        low, high = free_port_range(LOOPBACK, size=100)
        self.name = name
        self.port_range = (low, high)
        self.engine = LocalRtpEngine(
            binary=binary, data_dir=workdir, name=name, port_min=low, port_max=high
        )
        self.engine.ng_port = free_udp_port(LOOPBACK)
        self.ng_port = self.engine.ng_port
        self.proc = Proc(name, self.engine.command(), env=clean_env(), log=workdir / f"{name}.log")

    def start(self, timeout: float = 10.0) -> None:
        self.proc.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.alive(), f"{self.name} exited:\n{self.proc.log()[-3000:]}"
            try:
                if ng_request(self.ng_port, ng.ping(), timeout=0.1).ok:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not answer ping:\n{self.proc.log()[-3000:]}")

    def calls(self) -> list[str]:
        """The Call-IDs it holds now."""
        return ng_request(self.ng_port, ng.list_calls()).calls

    def query(self, call_id: str) -> ng.NgResponse:
        return ng_request(self.ng_port, ng.query(call_id=call_id))

    def owns_port(self, port: int) -> bool:
        return self.port_range[0] <= port <= self.port_range[1]


class MediaStack(RouterStack):
    """A :class:`RouterStack` with two rtpengine daemons and the media service."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.rtp: dict[str, Rtp] = {}
        self.media: Proc | None = None

    def start_rtpengines(self, binary: str, names: tuple[str, ...] = ("rtp-a", "rtp-b")) -> None:
        for name in names:
            rtp = Rtp(name, binary, self.stack.workdir)
            self.stack._procs.append(rtp.proc)
            rtp.start()
            self.rtp[name] = rtp

    def start_media(self) -> Proc:
        """``python -m sipmesh_media`` over the rtpengines, pinging every 0.2 s."""
        http_port = free_port(udp=False)
        instances = ",".join(f"{n}={LOOPBACK}:{r.ng_port}" for n, r in self.rtp.items())
        env = clean_env(
            {
                "SIPMESH_NATS_URL": self.stack.nats_url,
                "SIPMESH_NATS_RECONNECT_WAIT": "0.2",
                "SIPMESH_HTTP_PORT": str(http_port),
                "SIPMESH_MEDIA_INSTANCES": instances,
                "SIPMESH_MEDIA_PING_INTERVAL": str(PING_INTERVAL),
                "SIPMESH_MEDIA_DOWN_AFTER": "1",
                "SIPMESH_MEDIA_TIMEOUT": "0.2",
                "SIPMESH_MEDIA_TRIES": "1",
            }
        )
        proc = Proc(
            "media",
            [sys.executable, "-m", "sipmesh_media"],
            env=env,
            log=self.stack.workdir / "media.log",
        )
        self.stack._procs.append(proc.start())
        self.media = proc
        wait_ready(proc, http_port)
        return proc

    def holder(self, call_id: str) -> Rtp | None:
        """The live instance that holds ``call_id``, or None."""
        for rtp in self.rtp.values():
            if rtp.proc.alive() and call_id in rtp.calls():
                return rtp
        return None


@pytest.fixture(scope="module")
def media_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaStack]:
    """NATS, registrar, edge, router (anchoring always, MD5) and media over two rtpengines."""
    binary = find_binary()
    if binary is None:
        pytest.fail("rtpengine is not installed: apt-get install rtpengine-daemon", pytrace=False)
    workdir = tmp_path_factory.mktemp("media")
    server = NatsServer(store_dir=workdir / "nats")
    server.start()
    st = Stack(workdir, server)
    ms = MediaStack(st)
    try:
        ms.start_rtpengines(binary)
        ms.start_media()
        st.start_registrar()
        st.start_edge()
        ms.start_router(MEDIA="always", ALGORITHMS="MD5", PROBE="false")
        st.wait_registering()
        yield ms
    finally:
        st.close()
        server.stop()
