"""The CDR service as a real process: kills mid-stream lose and duplicate nothing.

``python -m sipmesh_cdr`` against a private nats-server and a SQLite file; a
publisher streams calls while the service is SIGKILLed and restarted; at the
end every call has exactly one complete, correctly rated row, and
``sipmesh cdr export`` shows them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from sipmesh_bus import kv, schema, subjects
from sipmesh_bus.natsserver import NatsServer
from sipmesh_cdr.store import SqliteStore
from sipmesh_cdr.synthetic import SyntheticCall, publish_subject, synthetic_call

pytestmark = pytest.mark.integration

# The calls happen now: with an old start time every call would be past the
# service's setup timeout, and a sweep in a moment when the consumer has caught
# up (between two publishes) would close half-published calls as "timeout".
T0 = time.time()
CALLS = 240


class CdrProcess:
    def __init__(self, nats_url: str, db: Path, log: Path) -> None:
        self._args = [
            sys.executable,
            "-m",
            "sipmesh_cdr",
            "--nats-url",
            nats_url,
            "--store-url",
            f"sqlite:///{db}",
        ]
        self._env = os.environ | {
            "SIPMESH_CDR_BATCH": "16",
            "SIPMESH_HTTP_PORT": "0",
            # Events a killed process held come back within seconds.
            "SIPMESH_CDR_ACK_WAIT": "2",
        }
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(self._args, env=self._env, stdout=out, stderr=out)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def service(nats_server: NatsServer, tmp_path: Path) -> Iterator[CdrProcess]:
    proc = CdrProcess(nats_server.url, tmp_path / "cdr.sqlite3", tmp_path / "cdr.log")
    try:
        yield proc
    finally:
        proc.stop()


def sipmesh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipmesh", *args], check=True, capture_output=True, text=True
    )


async def count_complete(db: Path) -> int:
    if not db.exists():
        return 0
    store = SqliteStore(db)
    await store.open()
    try:
        return await store.count(complete=True)
    finally:
        await store.close()


async def test_cdr_service_kill_and_restart_leaves_one_row_per_call(
    nats_server: NatsServer, service: CdrProcess, tmp_path: Path
) -> None:
    db = tmp_path / "cdr.sqlite3"
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await kv.ensure_jetstream(js)
    calls: list[SyntheticCall] = [synthetic_call(n, T0, prefix="k") for n in range(CALLS)]

    async def publisher() -> None:
        for call in calls:
            for event in call.events:
                await js.publish(
                    publish_subject(event),
                    schema.encode(event),
                    headers={"Nats-Msg-Id": event.event_id},
                )
            await asyncio.sleep(0.01)

    service.start()
    publishing = asyncio.create_task(publisher())
    try:
        for threshold in (40, 120):  # two kills, each while calls keep coming
            deadline = time.monotonic() + 30
            while await count_complete(db) < threshold:
                assert time.monotonic() < deadline, (tmp_path / "cdr.log").read_text()
                await asyncio.sleep(0.05)
            service.kill()
            await asyncio.sleep(0.2)
            service.start()
        await publishing
        deadline = time.monotonic() + 60
        while await count_complete(db) < CALLS:
            assert time.monotonic() < deadline, (tmp_path / "cdr.log").read_text()
            await asyncio.sleep(0.1)
        # A complete row (its final event applied) may still miss an earlier
        # event that the killed process held unacked: wait until the consumer
        # has delivered and had acked every event.
        while True:
            info = await js.consumer_info(kv.STREAM_CALLS, subjects.QUEUE_CDR)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                break
            assert time.monotonic() < deadline, (tmp_path / "cdr.log").read_text()
            await asyncio.sleep(0.1)
    finally:
        publishing.cancel()
        await nc.close()
    service.stop()

    exported = sipmesh("cdr", "export", "--format", "json", "--db-url", f"sqlite:///{db}")
    rows = json.loads(exported.stdout)
    assert len(rows) == CALLS
    by_id = {r["call_id"]: r for r in rows}
    assert len(by_id) == CALLS
    for call in calls:
        row = by_id[call.call_id]
        assert (row["disposition"], row["status_code"]) == (call.disposition, call.status_code)
        assert row["billable"] == call.billable
        assert row["cost"] == pytest.approx(call.cost)
        assert row["complete"] is True
    store = SqliteStore(db)
    await store.open()
    try:
        loaded = await store.load([c.call_id for c in calls])
    finally:
        await store.close()
    for call in calls:  # every event applied exactly once
        ids = loaded[call.call_id].event_ids
        assert sorted(ids) == sorted(e.event_id for e in call.events)

    as_csv = sipmesh("cdr", "export", "--db-url", f"sqlite:///{db}", "--caller", "u5")
    lines = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    expected = [c for c in calls if c.events[0].caller == "u5@example.com"]
    assert sorted(r["call_id"] for r in lines) == sorted(c.call_id for c in expected)
    assert all(r["start_at"].endswith("Z") for r in lines)

    listed = sipmesh("cdr", "list", "--limit", "3", "--data-dir", str(tmp_path))
    assert listed.stdout.splitlines()[0].split()[:3] == ["START", "CALLER", "CALLEE"]
    assert len(listed.stdout.splitlines()) == 4


def test_cdr_cli_without_a_database_says_so(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sipmesh", "cdr", "list", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "no CDR database" in done.stderr
