"""The CDR stores against a real SQLite file and a real PostgreSQL, the same tests."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from sipmesh_cdr.core import Cdr
from sipmesh_cdr.store import (
    MIGRATIONS,
    CdrQuery,
    CdrStore,
    ConflictError,
    PostgresStore,
    SqliteStore,
    StoreError,
    default_store_url,
    open_store,
)

T0 = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CdrStore]:
    if request.param == "sqlite":
        url = default_store_url(tmp_path)
    else:
        url = request.getfixturevalue("postgres_url")
    s = open_store(url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def row(call_id: str, start: float, **kw: object) -> Cdr:
    base = Cdr(
        call_id=call_id,
        caller=f"{call_id}-caller@example.com",
        caller_user=f"{call_id}-caller",
        callee="sip:+4930111@example.com",
        callee_user="+4930111",
        callee_number="+4930111",
        start_at=T0 + start,
        rate_per_minute=0.5,
        disposition="answered",
        complete=True,
        billable=60,
        cost=0.5,
        event_ids=(f"{call_id}.attempt", f"{call_id}.answered"),
    )
    return msgspec.structs.replace(base, **kw)


async def test_cdr_store_round_trips_every_field(store: CdrStore) -> None:
    cdr = row("a", 1, timed_out=True, hangup_side="caller", duration=12.5, leg_at=T0 + 2)
    await store.commit([cdr])
    loaded = (await store.load(["a", "missing"]))["a"]
    assert loaded == msgspec.structs.replace(cdr, version=1)
    assert await store.schema_version() == len(MIGRATIONS)


async def test_cdr_store_updates_at_the_version_read(store: CdrStore) -> None:
    await store.commit([row("a", 1)])
    first = (await store.load(["a"]))["a"]
    await store.commit([msgspec.structs.replace(first, cost=0.75)])
    second = (await store.load(["a"]))["a"]
    assert (second.cost, second.version) == (0.75, 2)
    assert await store.count() == 1


async def test_cdr_store_conflict_writes_nothing(store: CdrStore) -> None:
    await store.commit([row("a", 1)])
    stale = (await store.load(["a"]))["a"]
    await store.commit([msgspec.structs.replace(stale, cost=1.0)])
    with pytest.raises(ConflictError):
        await store.commit([row("b", 2), msgspec.structs.replace(stale, cost=2.0)])
    assert await store.count() == 1  # b rolled back with the stale a
    assert (await store.load(["a"]))["a"].cost == 1.0


async def test_cdr_store_insert_of_an_existing_call_conflicts(store: CdrStore) -> None:
    await store.commit([row("a", 1)])
    with pytest.raises(ConflictError):
        await store.commit([row("a", 1)])


async def test_cdr_store_query_filters_and_pages(store: CdrStore) -> None:
    await store.commit([row(f"c{i:02d}", i) for i in range(25)])
    page1 = await store.query(CdrQuery(limit=10))
    page3 = await store.query(CdrQuery(limit=10, offset=20))
    assert [c.call_id for c in page1] == [f"c{i:02d}" for i in range(10)]
    assert [c.call_id for c in page3] == [f"c{i:02d}" for i in range(20, 25)]
    window = await store.query(CdrQuery(since=T0 + 5, until=T0 + 8))
    assert [c.call_id for c in window] == ["c05", "c06", "c07"]
    for caller in ("c03-caller", "c03-caller@example.com"):
        assert [c.call_id for c in await store.query(CdrQuery(caller=caller))] == ["c03"]
    assert len(await store.query(CdrQuery(callee="+4930111", limit=100))) == 25
    assert await store.query(CdrQuery(callee="+4930999")) == []


async def test_cdr_store_open_calls(store: CdrStore) -> None:
    await store.commit(
        [row("done", 1), row("open-old", 2, complete=False), row("open-new", 50, complete=False)]
    )
    found = await store.open_calls(T0 + 10, 100)
    assert [c.call_id for c in found] == ["open-old"]
    assert await store.count(complete=False) == 2
    assert await store.count(complete=True) == 1


async def test_cdr_store_migrations_run_once(store: CdrStore, tmp_path: Path) -> None:
    await store.commit([row("a", 1)])
    url = f"sqlite:///{store.path}" if isinstance(store, SqliteStore) else getattr(store, "url", "")
    again = open_store(url)
    await again.open()  # the schema is there: nothing to migrate, nothing lost
    try:
        assert await again.schema_version() == len(MIGRATIONS)
        assert await again.count() == 1
    finally:
        await again.close()


async def test_cdr_store_many_rows_in_one_batch(store: CdrStore) -> None:
    await store.commit([row(f"r{i}", i) for i in range(1200)])
    loaded = await store.load([f"r{i}" for i in range(1200)])
    assert len(loaded) == 1200


async def test_cdr_store_two_writers_one_wins(store: CdrStore) -> None:
    await store.commit([row("a", 1)])
    base = (await store.load(["a"]))["a"]
    results = await asyncio.gather(
        store.commit([msgspec.structs.replace(base, cost=1.0)]),
        store.commit([msgspec.structs.replace(base, cost=2.0)]),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "NoneType"]


def test_cdr_sqlite_file_is_wal(tmp_path: Path) -> None:
    async def go() -> None:
        s = SqliteStore(tmp_path / "x" / "cdr.sqlite3")
        await s.open()
        await s.close()

    asyncio.run(go())
    with sqlite3.connect(tmp_path / "x" / "cdr.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite:///tmp/x.sqlite3", SqliteStore),
        ("sqlite:rel/x.sqlite3", SqliteStore),
        ("postgresql://u@h/db", PostgresStore),
        ("postgres://u@h/db", PostgresStore),
    ],
)
def test_cdr_open_store_by_scheme(url: str, kind: type) -> None:
    assert isinstance(open_store(url), kind)


@pytest.mark.parametrize("url", ["mysql://x", "sqlite:", "nothing"])
def test_cdr_open_store_refuses(url: str) -> None:
    with pytest.raises(StoreError):
        open_store(url)
