"""What the live bench drivers share: a free loopback port, a process's CPU, readiness."""

from __future__ import annotations

import asyncio
import os
import socket
import urllib.request
from pathlib import Path

__all__ = ["cpu_of", "free_port", "wait_ready"]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port free right now for ``kind`` (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_of(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def wait_ready(port: int, what: str) -> None:
    """Poll ``/readyz`` on ``port`` for up to ~30 s.

    Raises:
        RuntimeError: ``what`` did not get ready.
    """
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{what} not ready")
