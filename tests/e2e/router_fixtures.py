"""Fixtures for the router's end-to-end tests: a stack with a router, SIPp UAS/UAC processes.

``call_stack``: one nats-server, one registrar, one edge and one router (real
processes, the router probing every 0.3 s) for the module. ``uas``: start a
SIPp UAS (``call_uas.xml`` by default, ``-aa`` so OPTIONS probes get 200) on
a free loopback port; every one is killed after the test. Routing data and
bindings are written straight into KV (what ``sipmesh dispatcher`` and the
registrar would write), so a test depends on the router and the edge only.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import nats
import pytest

from sipmesh_bus import kv, records, routing
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.records import Binding, BindingSet
from sipmesh_bus.schema import CallEvent, decode_call_event
from tests.e2e.harness import LOOPBACK, NONCE_SECRET, Proc, Stack, clean_env, free_port, wait_ready
from tests.e2e.sipp import SCENARIOS, SippResult, SippRun, sipp_binary

__all__ = ["RouterStack", "Uas", "call_stack", "router_stack", "uas"]

EDGE_ID = "e2e-edge"


class RouterStack:
    """A :class:`Stack` with a router, and KV helpers for bindings, routing and events."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.router: Proc | None = None

    def start_router(self, **settings: str) -> Proc:
        """Start ``python -m sipmesh_router`` and wait until it is ready."""
        st = self.stack
        http_port = free_port(udp=False)
        values = {
            "DOMAIN": st.domain,
            "NONCE_SECRET": NONCE_SECRET,
            "PROBE_BIND": LOOPBACK,
            "PROBE_INTERVAL": "0.3",
            "PROBE_TIMEOUT": "0.5",
            "PROBE_DOWN_AFTER": "1",
            "PROBE_UP_AFTER": "1",
            **settings,
        }
        env = clean_env(
            {
                "SIPMESH_NATS_URL": st.nats_url,
                "SIPMESH_NATS_RECONNECT_WAIT": "0.2",
                "SIPMESH_HTTP_PORT": str(http_port),
                **{f"SIPMESH_ROUTER_{k}": v for k, v in values.items()},
            }
        )
        proc = Proc(
            "router",
            [sys.executable, "-m", "sipmesh_router"],
            env=env,
            log=st.workdir / "router.log",
        )
        st._procs.append(proc.start())
        self.router = proc
        wait_ready(proc, http_port)
        return proc

    def logs(self) -> str:
        return self.stack.logs()

    # -- KV ------------------------------------------------------------------------

    def bind(self, user: str, port: int, *, host: str = LOOPBACK) -> None:
        """Register ``user`` at a SIPp UAS on ``host:port`` (the binding the registrar writes)."""
        now = time.time()
        binding = Binding(
            contact=f"sip:{user}@{host}:{port}",
            expires_at=now + 600,
            call_id=f"bind-{user}",
            cseq=1,
            registered_at=now,
            source_host=host,
            source_port=port,
            transport="udp",
            edge_id=EDGE_ID,
        )
        value = BindingSet(aor=f"sip:{user}@{self.stack.domain}", bindings=[binding])
        key = records.aor_key(user, self.stack.domain)
        asyncio.run(self._put(kv.BUCKET_LOCATION, key, records.encode_record(value)))

    def pool(
        self,
        set_id: str,
        prefix: str,
        ports: Sequence[int],
        *,
        algorithm: routing.Algorithm = "round_robin",
        probe: bool = True,
    ) -> None:
        """A dispatcher set of SIPp UAS on ``ports``, numbers ``prefix...`` routed to it,
        and the loopback trusted (the SIPp UAC is a peer, not a local user)."""
        dests = [
            routing.Destination(uri=f"sip:{LOOPBACK}:{p}", host=LOOPBACK, port=p, probe=probe)
            for p in ports
        ]
        entries: list[tuple[str, routing.RoutingRecord]] = [
            (routing.peer_key("loopback"), routing.Peer(name="loopback", cidrs=["127.0.0.1/32"])),
            (
                routing.set_key(set_id),
                routing.DispatcherSet(id=set_id, algorithm=algorithm, destinations=dests),
            ),
            (
                routing.selector_key("prefix", prefix),
                routing.SetSelector(kind="prefix", match=prefix, set_id=set_id),
            ),
        ]
        for key, record in entries:
            asyncio.run(self._put(kv.BUCKET_ROUTING, key, routing.encode_record(record)))

    async def _put(self, bucket: str, key: str, value: bytes) -> None:
        nc = await nats.connect(self.stack.nats_url)
        try:
            kv_bucket = await nc.jetstream().key_value(bucket)
            await kv_bucket.put(key, value)
        finally:
            await nc.close()

    def health(self, port: int) -> routing.Health | None:
        """The health record of the UAS on ``port``, or None."""
        return asyncio.run(self._health(routing.health_key("udp", LOOPBACK, port)))

    async def _health(self, key: str) -> routing.Health | None:
        nc = await nats.connect(self.stack.nats_url)
        try:
            bucket = await nc.jetstream().key_value(kv.BUCKET_HEALTH)
            try:
                entry = await bucket.get(key)
            except nats.js.errors.KeyNotFoundError:
                return None
            return routing.decode_health(entry.value) if entry.value else None
        finally:
            await nc.close()

    def call_events(self, callee_part: str, *, settle: float = 1.0) -> list[CallEvent]:
        """Every event of stream CALLS whose callee contains ``callee_part``, in order."""
        return asyncio.run(self._events(callee_part, settle))

    async def _events(self, callee_part: str, settle: float) -> list[CallEvent]:
        nc = await nats.connect(self.stack.nats_url)
        found: list[CallEvent] = []
        try:
            sub = await nc.jetstream().subscribe("call.events.>", ordered_consumer=True)
            calls: set[str] = set()
            try:
                while True:
                    msg = await sub.next_msg(timeout=settle)
                    event = decode_call_event(msg.data)
                    # "ended" carries no callee: it belongs to a call seen before.
                    if callee_part in event.callee or event.call_id in calls:
                        calls.add(event.call_id)
                        found.append(event)
            except TimeoutError:
                pass
            await sub.unsubscribe()
        finally:
            await nc.close()
        return found


class Uas:
    """A SIPp UAS process on a free loopback port; :meth:`result` ends and reads it."""

    def __init__(self, workdir: Path, scenario: str, *, calls: int, timeout: float) -> None:
        binary = sipp_binary()
        assert binary is not None, "sipp is not installed (Debian package sip-tester)"
        self.port = free_port()
        self.dir = workdir / f"uas-{self.port}-{Path(scenario).stem}"
        self.dir.mkdir(parents=True)
        argv = [binary, "-sf", str(SCENARIOS / scenario), "-i", LOOPBACK, "-p", str(self.port)]
        argv += ["-t", "u1", "-m", str(calls), "-aa", "-nostdin"]
        argv += [
            "-timeout",
            f"{timeout:g}s",
            "-trace_err",
            "-error_file",
            str(self.dir / "errors.log"),
        ]
        argv += ["-trace_logs", "-log_file", str(self.dir / "scenario.log")]
        argv += ["-trace_stat", "-stf", str(self.dir / "stat.csv"), "-fd", "1"]
        argv += ["-trace_msg", "-message_file", str(self.dir / "messages.log")]
        with (self.dir / "stdout.log").open("wb") as out:
            self.popen = subprocess.Popen(
                argv,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def invites(self) -> list[str]:
        """The Request-URIs of the INVITEs it received so far."""
        try:
            lines = (self.dir / "scenario.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        return [line.split(" ", 1)[1] for line in lines if line.startswith("invite ")]

    def kill(self) -> None:
        """SIGKILL (a PBX that died)."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()

    def messages(self) -> str:
        try:
            return (self.dir / "messages.log").read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def router_stack(workdir: Path, edge_ids: Sequence[str] = (EDGE_ID,)) -> Iterator[RouterStack]:
    """NATS, a registrar, the edges ``edge_ids`` and a router, all stopped at the end.

    Several edges share the SIP port (``reuse_port``, each naming the others
    as siblings).
    """
    server = NatsServer(store_dir=workdir / "nats")
    server.start()
    st = Stack(workdir, server)
    rs = RouterStack(st)
    try:
        st.start_registrar()
        for edge_id in edge_ids:
            siblings = [e for e in edge_ids if e != edge_id]
            st.start_edge(edge_id=edge_id, reuse_port=bool(siblings), siblings=siblings)
        rs.start_router()
        st.wait_registering()
        yield rs
    finally:
        st.close()
        server.stop()


@pytest.fixture(scope="module")
def call_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterStack]:
    """NATS, a registrar, an edge and a router for the module."""
    with router_stack(tmp_path_factory.mktemp("calls")) as rs:
        yield rs


@pytest.fixture
def uas(tmp_path: Path) -> Iterator[Callable[..., Uas]]:
    """Start SIPp UAS processes; each is killed after the test."""
    started: list[Uas] = []

    def start(scenario: str = "call_uas.xml", *, calls: int = 100, timeout: float = 120.0) -> Uas:
        u = Uas(tmp_path, scenario, calls=calls, timeout=timeout)
        started.append(u)
        return u

    yield start
    for u in started:
        u.kill()


def run_uac(
    rs: RouterStack,
    workdir: Path,
    callee: str,
    *,
    calls: int = 1,
    rate: float = 5.0,
    timeout: float = 30.0,
) -> SippResult:
    """Run ``call_uac.xml`` through the edge to ``callee@domain`` and wait for it."""
    run = SippRun(
        "call_uac.xml",
        target=(LOOPBACK, rs.stack.sip_port),
        workdir=workdir,
        keys={"callee": callee, "domain": rs.stack.domain},
        calls=calls,
        rate=rate,
        timeout=timeout,
    )
    return run.wait()


def stat(result: SippResult, name: str) -> int:
    return int(result.stats.get(name, "0"))
