"""A real PostgreSQL 15 for the CDR store tests: a temporary cluster for the session.

The server comes from Debian's ``postgresql-15`` package (``apt-get install -y
postgresql-15``); without it the fixture fails, it does not skip: CI installs it.
initdb refuses to run as root, so as root the cluster belongs to ``postgres``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("SIPMESH_PG_BIN", "/usr/lib/postgresql/15/bin"))
_databases = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """``postgresql://test@127.0.0.1:<port>``, a throwaway cluster (no database chosen)."""
    initdb = PG_BIN / "initdb"
    if not initdb.exists():
        pytest.fail(
            f"no PostgreSQL server binaries in {PG_BIN}: apt-get install -y postgresql-15 "
            "(or set SIPMESH_PG_BIN)",
            pytrace=False,
        )
    root = Path(tempfile.mkdtemp(prefix="sipmesh-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = root / "data"
    port = _free_port()
    subprocess.run(
        _as_owner([str(initdb), "-D", str(data), "-A", "trust", "-U", "test", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        _as_owner([*ctl, "-w", "-l", str(root / "server.log"), "-o", options, "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://test@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_owner([*ctl, "-m", "immediate", "stop"]), check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's cluster."""
    name = f"cdr_{os.getpid()}_{next(_databases)}"
    host_port = postgres_server.rpartition("@")[2]
    host, _, port = host_port.partition(":")
    subprocess.run(
        [str(PG_BIN / "createdb"), "-h", host, "-p", port, "-U", "test", name],
        check=True,
        capture_output=True,
    )
    return f"{postgres_server}/{name}"
