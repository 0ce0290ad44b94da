"""What the live bench drivers read of the machine: a free loopback port, a process's CPU."""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["cpu_of", "free_port"]


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
