"""``python -m sipmesh_media`` as ``sipmesh up`` runs it: with and without rtpengine."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from sipmesh_bus.schema import MediaOffer, MediaReply, decode_media_reply, encode
from sipmesh_bus.subjects import SIP_MEDIA_OFFER
from sipmesh_media.local import NOT_FOUND_MESSAGE

from .conftest import media_address, sdp

pytestmark = pytest.mark.integration


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Process:
    def __init__(self, nats_url: str, data_dir: Path, **env: str) -> None:
        self.http_port = free_tcp_port()
        self.stderr_path = data_dir / "media.stderr"
        full_env = {
            **os.environ,
            "SIPMESH_HTTP_PORT": str(self.http_port),
            "SIPMESH_MEDIA_DATA_DIR": str(data_dir),
            **env,
        }
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sipmesh_media",
                    "--nats-url",
                    nats_url,
                    "--local-rtpengine",
                ],
                env=full_env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready(self.http_port):
            assert self.proc.poll() is None, self.stderr()
            assert time.monotonic() < deadline, self.stderr()
            time.sleep(0.1)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


@pytest.fixture
def process(nats_url: str, tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(**env: str) -> Process:
        started.append(Process(nats_url, tmp_path, **env))
        return started[-1]

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()


async def offer(nats_url: str, call_id: str) -> MediaReply:
    nc = NatsClient()
    await nc.connect(nats_url)
    try:
        request = MediaOffer(call_id=call_id, from_tag="a", sdp=sdp(4000, host="10.5.5.5"))
        msg = await nc.request(SIP_MEDIA_OFFER, encode(request), timeout=5.0)
    finally:
        await nc.close()
    return decode_media_reply(msg.data)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_main_starts_and_stops_a_local_rtpengine(
    nats_url: str, tmp_path: Path, process: Callable[..., Process]
) -> None:
    media = process()
    await asyncio.to_thread(media.wait_ready)
    reply = await offer(nats_url, "main-1")
    assert (reply.ok, reply.instance) == (True, "local")
    assert reply.sdp is not None
    assert media_address(reply.sdp)[0] == "127.0.0.1"
    pid = int((tmp_path / "rtpengine-local.pid").read_text().strip())
    assert alive(pid)
    assert await asyncio.to_thread(media.stop) == 0
    assert not alive(pid)


async def test_main_without_rtpengine_says_so_once_and_runs_unanchored(
    nats_url: str, process: Callable[..., Process]
) -> None:
    media = process(SIPMESH_MEDIA_LOCAL_BINARY="/nonexistent/rtpengine")
    await asyncio.to_thread(media.wait_ready)
    reply = await offer(nats_url, "main-2")
    assert (reply.ok, reply.code) == (False, "no_instance")
    assert await asyncio.to_thread(media.stop) == 0
    assert media.stderr().count(NOT_FOUND_MESSAGE) == 1
    assert media.stderr().count("without media anchoring") == 1
