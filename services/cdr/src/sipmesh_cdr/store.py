"""Where CDR rows live: one small async interface, SQLite and PostgreSQL behind it.

:func:`open_store` picks the implementation from a URL:

- ``sqlite:///abs/path/cdr.sqlite3`` or ``sqlite:relative/path`` (the default,
  ``<data dir>/cdr.sqlite3``): the stdlib ``sqlite3`` on one worker thread, WAL
  journal, ``synchronous=FULL`` (an acked event survives a power cut too);
- ``postgresql://user@host:port/db`` (or ``postgres://``): an asyncpg pool.

Both write a batch of rows in one transaction with optimistic concurrency: each
row carries the version it was read at, the write succeeds only if the stored
row still has that version, and otherwise the whole batch is rolled back with
:class:`ConflictError` (another replica won; reload and fold again). The applied
event ids travel inside the row (``event_ids``), so "row written" and "event
marked done" commit together.

The schema is versioned: ``schema_version`` holds the last migration applied,
and :data:`MIGRATIONS` is the ordered list; opening a store applies what is missing.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sqlite3
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec

from .core import Cdr

__all__ = [
    "COLUMNS",
    "MIGRATIONS",
    "CdrQuery",
    "CdrStore",
    "ConflictError",
    "Migration",
    "PostgresStore",
    "SqliteStore",
    "StoreError",
    "default_store_url",
    "open_store",
]

DEFAULT_FILE: Final = "cdr.sqlite3"


class StoreError(Exception):
    """The store URL is unusable, or the database refused."""


class ConflictError(StoreError):
    """A row changed since it was read (another writer); nothing was written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CdrQuery:
    """Filters and paging of :meth:`CdrStore.query`."""

    since: float | None = None
    #: Calls that started at or after this time.
    until: float | None = None
    #: Calls that started before this time.
    caller: str | None = None
    #: Matches the caller URI, its user part or its number.
    callee: str | None = None
    limit: int = 100
    offset: int = 0


class CdrStore(Protocol):
    """The CDR database."""

    async def open(self) -> None:
        """Connect and apply missing migrations."""

    async def close(self) -> None:
        """Release the connection(s)."""

    async def load(self, call_ids: Collection[str]) -> dict[str, Cdr]:
        """The stored rows of these calls (missing ones are absent)."""

    async def commit(self, rows: Sequence[Cdr]) -> None:
        """Write rows in one transaction; each ``row.version`` is the version read.

        Raises:
            ConflictError: a row's stored version differs; nothing was written.
        """

    async def open_calls(self, started_before: float, limit: int) -> list[Cdr]:
        """Incomplete rows whose call started before ``started_before``."""

    async def query(self, query: CdrQuery) -> list[Cdr]:
        """Rows matching ``query``, ordered by start time then Call-ID."""

    async def count(self, *, complete: bool | None = None) -> int:
        """How many rows (only complete or incomplete ones when given)."""

    async def schema_version(self) -> int:
        """The last migration applied."""


# -- the schema --------------------------------------------------------------

_SQL_TYPES: Final = {
    "sqlite": {"text": "TEXT", "real": "REAL", "int": "INTEGER", "bool": "INTEGER"},
    "postgres": {"text": "TEXT", "real": "DOUBLE PRECISION", "int": "BIGINT", "bool": "BOOLEAN"},
}

COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("call_id", "text"),
    ("caller", "text"),
    ("caller_user", "text"),
    ("caller_number", "text"),
    ("callee", "text"),
    ("callee_user", "text"),
    ("callee_number", "text"),
    ("source", "text"),
    ("destination", "text"),
    ("destination_kind", "text"),
    ("carrier", "text"),
    ("gateway", "text"),
    ("dispatcher_set", "text"),
    ("rate_prefix", "text"),
    ("rate_per_minute", "real"),
    ("currency", "text"),
    ("billing_first", "int"),
    ("billing_step", "int"),
    ("start_at", "real"),
    ("ring_at", "real"),
    ("answer_at", "real"),
    ("end_at", "real"),
    ("duration", "real"),
    ("billable", "int"),
    ("cost", "real"),
    ("disposition", "text"),
    ("status_code", "int"),
    ("reason", "text"),
    ("hangup_side", "text"),
    ("edge_id", "text"),
    ("complete", "bool"),
    ("failed_at", "real"),
    ("hangup_at", "real"),
    ("leg_at", "real"),
    ("timed_out", "bool"),
    ("event_ids", "text"),
    ("version", "int"),
)
#: Every Cdr field, in order, with its column kind.

_NAMES: Final = tuple(name for name, _ in COLUMNS)
_NOT_NULL: Final = {
    "call_id",
    "caller",
    "caller_user",
    "callee",
    "callee_user",
    "source",
    "destination",
    "destination_kind",
    "complete",
    "timed_out",
    "event_ids",
    "version",
}


def _create_cdrs(dialect: str) -> str:
    types = _SQL_TYPES[dialect]
    cols = ",\n  ".join(
        f"{name} {types[kind]}{' NOT NULL' if name in _NOT_NULL else ''}"
        + (" PRIMARY KEY" if name == "call_id" else "")
        for name, kind in COLUMNS
    )
    return f"CREATE TABLE cdrs (\n  {cols}\n)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    """One schema step; ``version`` counts up from 1 without gaps."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


_INDEXES: Final = (
    "CREATE INDEX cdrs_start ON cdrs (start_at, call_id)",
    "CREATE INDEX cdrs_open ON cdrs (complete, start_at)",
    "CREATE INDEX cdrs_caller ON cdrs (caller_user)",
    "CREATE INDEX cdrs_callee ON cdrs (callee_user)",
)

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        version=1,
        description="cdrs table, one row per Call-ID",
        sqlite=(_create_cdrs("sqlite"), *_INDEXES),
        postgres=(_create_cdrs("postgres"), *_INDEXES),
    ),
)
#: Append new steps; never edit a released one.

_SCHEMA_TABLE: Final = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


def _to_row(cdr: Cdr) -> list[Any]:
    """The column values of ``cdr``, written at ``version + 1``."""
    values: list[Any] = list(msgspec.structs.astuple(cdr))
    values[_NAMES.index("event_ids")] = json.dumps(list(cdr.event_ids))
    values[_NAMES.index("version")] = cdr.version + 1
    return values


def _from_row(row: Sequence[Any]) -> Cdr:
    data = dict(zip(_NAMES, row, strict=True))
    data["event_ids"] = tuple(json.loads(data["event_ids"]))
    data["complete"] = bool(data["complete"])
    data["timed_out"] = bool(data["timed_out"])
    return msgspec.convert(data, Cdr)


def _filters(query: CdrQuery, mark: Any) -> tuple[str, list[Any]]:
    """A WHERE clause (placeholders from ``mark(n)``) and its arguments."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return str(mark(len(args)))

    if query.since is not None:
        where.append(f"start_at >= {arg(query.since)}")
    if query.until is not None:
        where.append(f"start_at < {arg(query.until)}")
    for side, value in (("caller", query.caller), ("callee", query.callee)):
        if value:
            a, b, c = arg(value), arg(value), arg(value)
            where.append(f"({side} = {a} OR {side}_user = {b} OR {side}_number = {c})")
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    return clause, args


def _upsert_sql(mark: Any) -> str:
    cols = ", ".join(_NAMES)
    marks = ", ".join(str(mark(i + 1)) for i in range(len(_NAMES)))
    sets = ", ".join(f"{n} = excluded.{n}" for n in _NAMES if n != "call_id")
    # Constant column names; every value is a bound parameter.
    insert = f"INSERT INTO cdrs ({cols}) VALUES ({marks})"  # noqa: S608
    return (
        f"{insert} ON CONFLICT (call_id) DO UPDATE SET {sets} "
        "WHERE cdrs.version = excluded.version - 1 RETURNING call_id"
    )


_SELECT: Final = f"SELECT {', '.join(_NAMES)} FROM cdrs"  # noqa: S608 - constant names


def default_store_url(data_dir: str | Path) -> str:
    """``sqlite:///<data_dir>/cdr.sqlite3`` (absolute)."""
    return f"sqlite:///{(Path(data_dir) / DEFAULT_FILE).resolve()}"


def open_store(url: str) -> CdrStore:
    """The store for ``url`` (not opened yet: call :meth:`CdrStore.open`).

    Raises:
        StoreError: an unknown scheme.
    """
    scheme, _, rest = url.partition(":")
    if scheme == "sqlite":
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            raise StoreError(f"no file in the SQLite URL {url!r}")
        return SqliteStore(Path(path))
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise StoreError(f"unknown CDR store URL {url!r} (sqlite:///path or postgresql://...)")


class SqliteStore:
    """SQLite in WAL mode, driven from one worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdr-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the SQLite store is not open")
        return self._db

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        self._db = db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_SCHEMA_TABLE)
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for step in MIGRATIONS:
                if step.version > current:
                    for statement in step.sqlite:
                        db.execute(statement)
                    db.execute("INSERT INTO schema_version (version) VALUES (?)", (step.version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    async def schema_version(self) -> int:
        row = await self._run(self._fetchone, "SELECT max(version) FROM schema_version", ())
        return int(row[0] or 0)

    def _fetchone(self, sql: str, args: Sequence[Any]) -> Any:
        return self._conn().execute(sql, args).fetchone()

    def _fetchall(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return self._conn().execute(sql, args).fetchall()

    async def load(self, call_ids: Collection[str]) -> dict[str, Cdr]:
        ids = list(call_ids)
        found: dict[str, Cdr] = {}
        for start in range(0, len(ids), 500):  # SQLite's variable limit
            chunk = ids[start : start + 500]
            sql = f"{_SELECT} WHERE call_id IN ({', '.join('?' * len(chunk))})"
            for row in await self._run(self._fetchall, sql, chunk):
                cdr = _from_row(row)
                found[cdr.call_id] = cdr
        return found

    async def commit(self, rows: Sequence[Cdr]) -> None:
        await self._run(self._commit, [_to_row(r) for r in rows])

    def _commit(self, rows: list[list[Any]]) -> None:
        db = self._conn()
        sql = _upsert_sql(lambda _n: "?")
        db.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                if db.execute(sql, row).fetchone() is None:
                    raise ConflictError(f"call {row[0]!r} changed since it was read")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def open_calls(self, started_before: float, limit: int) -> list[Cdr]:
        sql = f"{_SELECT} WHERE complete = 0 AND start_at < ? ORDER BY start_at LIMIT ?"
        return [_from_row(r) for r in await self._run(self._fetchall, sql, (started_before, limit))]

    async def query(self, query: CdrQuery) -> list[Cdr]:
        clause, args = _filters(query, lambda _n: "?")
        sql = f"{_SELECT}{clause} ORDER BY start_at, call_id LIMIT ? OFFSET ?"
        rows = await self._run(self._fetchall, sql, [*args, query.limit, query.offset])
        return [_from_row(r) for r in rows]

    async def count(self, *, complete: bool | None = None) -> int:
        if complete is None:
            row = await self._run(self._fetchone, "SELECT count(*) FROM cdrs", ())
        else:
            sql = "SELECT count(*) FROM cdrs WHERE complete = ?"
            row = await self._run(self._fetchone, sql, (int(complete),))
        return int(row[0])


class PostgresStore:
    """PostgreSQL through an asyncpg pool."""

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url = url
        self._pool_size = pool_size
        self._pool: Any = None

    def _p(self) -> Any:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._pool

    async def open(self) -> None:
        try:
            # Imported here: only PostgreSQL users need it (and it ships no types).
            asyncpg: Any = importlib.import_module("asyncpg")
        except ImportError:
            raise StoreError("a postgresql:// store needs asyncpg (pip install asyncpg)") from None
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self._pool_size)
        async with self._p().acquire() as conn, conn.transaction():
            # One migrator at a time, whichever replica starts first.
            await conn.execute("SELECT pg_advisory_xact_lock(7431002)")
            await conn.execute(_SCHEMA_TABLE)
            current = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
            for step in MIGRATIONS:
                if step.version > current:
                    for statement in step.postgres:
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO schema_version (version) VALUES ($1)", step.version
                    )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def schema_version(self) -> int:
        return int(await self._p().fetchval("SELECT max(version) FROM schema_version") or 0)

    async def load(self, call_ids: Collection[str]) -> dict[str, Cdr]:
        rows = await self._p().fetch(f"{_SELECT} WHERE call_id = ANY($1::text[])", list(call_ids))
        return {cdr.call_id: cdr for cdr in map(_from_row, rows)}

    async def commit(self, rows: Sequence[Cdr]) -> None:
        sql = _upsert_sql(lambda n: f"${n}")
        values = [_to_row(r) for r in rows]
        async with self._p().acquire() as conn, conn.transaction():
            for row in values:
                if await conn.fetchval(sql, *row) is None:
                    raise ConflictError(f"call {row[0]!r} changed since it was read")

    async def open_calls(self, started_before: float, limit: int) -> list[Cdr]:
        sql = f"{_SELECT} WHERE NOT complete AND start_at < $1 ORDER BY start_at LIMIT $2"
        return [_from_row(r) for r in await self._p().fetch(sql, started_before, limit)]

    async def query(self, query: CdrQuery) -> list[Cdr]:
        clause, args = _filters(query, lambda n: f"${n}")
        n = len(args)
        sql = f"{_SELECT}{clause} ORDER BY start_at, call_id LIMIT ${n + 1} OFFSET ${n + 2}"
        rows = await self._p().fetch(sql, *args, query.limit, query.offset)
        return [_from_row(r) for r in rows]

    async def count(self, *, complete: bool | None = None) -> int:
        if complete is None:
            return int(await self._p().fetchval("SELECT count(*) FROM cdrs"))
        sql = "SELECT count(*) FROM cdrs WHERE complete = $1"
        return int(await self._p().fetchval(sql, complete))
