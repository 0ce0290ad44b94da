"""Fixtures of the end-to-end suite: real nats-server, registrar(s) and edge processes.

- ``stack``: one nats-server, one registrar and one edge (UDP and TCP on one
  loopback port) shared by the whole session; tests use their own user names,
  so they never see each other's bindings.
- ``private_stack``: a fresh nats-server (restartable), no services started:
  fault tests start, kill and restart pieces themselves.
- ``sipp``: runs a scenario against a stack (see :class:`tests.e2e.sipp.SippRun`).

Needs ``sipp`` (Debian ``sip-tester``) and, for the phone test, ``baresip``
(Debian ``baresip``). A missing tool fails the test rather than skipping it:
an end-to-end suite that passes without running anything proves nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from sipmesh_bus.natsserver import NatsServer
from tests.e2e.baresip import Baresip
from tests.e2e.harness import LOOPBACK, Stack, User
from tests.e2e.sipp import RunSipp, SippResult, SippRun, sipp_binary, write_users


@pytest.fixture(scope="session", autouse=True)
def _tools() -> None:
    if sipp_binary() is None:
        pytest.fail("sipp is not installed: apt-get install sip-tester", pytrace=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """NATS, one registrar and one edge for the session.

    The edge answers the first REGISTER's 401 (``challenge_registers``), as in
    ``sipmesh up``, compose and the Helm chart: every registration scenario
    here authenticates against a nonce the edge issued. The fault tests
    (``private_stack``) keep the registrar's own challenge.
    """
    workdir = tmp_path_factory.mktemp("stack")
    server = NatsServer(store_dir=workdir / "nats")
    server.start()
    st = Stack(workdir, server)
    try:
        st.start_registrar()
        st.start_edge(challenge=True)
        st.wait_registering()
        yield st
    finally:
        st.close()
        server.stop()


@pytest.fixture
def private_stack(tmp_path: Path, nats_server: NatsServer) -> Iterator[Stack]:
    """A stack on a private, restartable nats-server; the test starts the services."""
    st = Stack(tmp_path, nats_server)
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def make_user(stack: Stack) -> Callable[[str], User]:
    """Add a user with ``sipmesh user add`` and return it."""

    def make(prefix: str = "u") -> User:
        user = User(prefix)
        stack.cli("user", "add", f"{user.name}@{stack.domain}", "--password", user.password)
        return user

    return make


@pytest.fixture
def sipp(stack: Stack, tmp_path: Path) -> Iterator[RunSipp]:
    """Run a scenario to its end; one call per user unless ``calls`` says otherwise."""
    runs: list[SippRun] = []

    def run(
        scenario: str,
        *,
        users: list[tuple[str, str]],
        transport: str = "udp",
        expires: int = 600,
        calls: int | None = None,
        keys: Mapping[str, str] = {},
    ) -> SippResult:
        st = stack
        inf = write_users(tmp_path / f"users-{len(runs)}.csv", users)
        sipp_run = SippRun(
            scenario,
            target=(LOOPBACK, st.sip_port),
            workdir=tmp_path,
            transport=transport,
            users=inf,
            keys={"domain": st.domain, "expires": str(expires), **keys},
            calls=len(users) if calls is None else calls,
        )
        runs.append(sipp_run)
        return sipp_run.wait()

    yield run
    for sipp_run in runs:
        sipp_run.kill()


@pytest.fixture(scope="session")
def baresip_binary() -> str:
    """The baresip executable (Debian package ``baresip``)."""
    path = shutil.which("baresip")
    if path is None:
        pytest.fail("baresip is not installed: apt-get install baresip", pytrace=False)
    return path


@pytest.fixture
def phone(baresip_binary: str, tmp_path: Path) -> Iterator[Callable[[str], Baresip]]:
    """Start a baresip with an accounts line; every one started is stopped after the test."""
    started: list[Baresip] = []

    def start(account: str) -> Baresip:
        ua = Baresip(baresip_binary, tmp_path, account=account)
        started.append(ua)
        ua.start()
        return ua

    yield start
    for ua in reversed(started):
        ua.stop()
