"""``sipmesh cdr list`` and ``sipmesh cdr export``: read the CDR store directly.

The store is ``--db-url``, else ``$SIPMESH_CDR_STORE_URL``, else the SQLite file
the CDR service writes in the data dir (``DATA_DIR/cdr.sqlite3``). Filters:
``--since``/``--until`` on the call's start (epoch seconds or ISO 8601, UTC when
no zone is given), ``--caller``/``--callee`` (URI, user part or number).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from sipmesh._console import format_table
from sipmesh_bus.config import redact_url
from sipmesh_cdr.core import Cdr
from sipmesh_cdr.export import iso, parse_time, to_csv, to_json
from sipmesh_cdr.store import CdrQuery, StoreError, default_store_url, open_store

__all__ = ["add_cdr_parser", "store_url"]

_PAGE: Final = 1000


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_cdr_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cdr list`` and ``cdr export`` under ``sipmesh cdr``.

    Call it after the service subcommands: it extends their ``cdr`` parser.

    Args:
        sub: the ``add_subparsers()`` object of the top parser.
        common: the parent parser with ``--data-dir`` and ``--nats-url``.
    """
    # ``sipmesh cdr`` alone runs the CDR service (when the services table has
    # it); ``sipmesh cdr list|export`` are actions under the same word.
    cdr = sub.choices.get("cdr") or sub.add_parser("cdr", help="call detail records")
    actions = cdr.add_subparsers(
        dest="cdr_command", required=False, metavar="ACTION", title="CDR actions"
    )
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument(
        "--since", type=_time, help="calls started at or after (ISO 8601 or epoch)"
    )
    filters.add_argument("--until", type=_time, help="calls started before (ISO 8601 or epoch)")
    filters.add_argument("--caller", help="caller URI, user or number")
    filters.add_argument("--callee", help="callee URI, user or number")
    filters.add_argument(
        "--db-url",
        default=os.environ.get("SIPMESH_CDR_STORE_URL") or None,
        help="sqlite:///path or postgresql://... (default: $SIPMESH_CDR_STORE_URL, "
        "else DATA_DIR/cdr.sqlite3)",
    )
    ls = actions.add_parser("list", parents=[common, filters], help="print CDRs as a table")
    ls.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    ls.add_argument("--offset", type=int, default=0, help="rows to skip")
    ls.set_defaults(run=_run_list)
    export = actions.add_parser(
        "export", parents=[common, filters], help="write every matching CDR as CSV or JSON"
    )
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.set_defaults(run=_run_export)


def store_url(args: argparse.Namespace) -> str:
    """The store the arguments point to.

    Raises:
        sipmesh.cli.CliError: the default SQLite file does not exist.
    """
    if args.db_url:
        return str(args.db_url)
    path = Path(args.data_dir) / "cdr.sqlite3"
    if not path.exists():
        raise _error(
            f"no CDR database at {path}: the CDR service has written none yet "
            "(or pass --db-url / set SIPMESH_CDR_STORE_URL)"
        )
    return default_store_url(args.data_dir)


def _error(message: str) -> Exception:
    from sipmesh.cli import CliError  # noqa: PLC0415 - cli imports this module

    return CliError(message)


def _query(args: argparse.Namespace, *, limit: int, offset: int) -> CdrQuery:
    return CdrQuery(
        since=args.since,
        until=args.until,
        caller=args.caller,
        callee=args.callee,
        limit=limit,
        offset=offset,
    )


async def _rows(args: argparse.Namespace, limit: int | None, offset: int) -> AsyncIterator[Cdr]:
    url = store_url(args)
    store = open_store(url)
    try:
        await store.open()
    except (StoreError, OSError) as exc:
        raise _error(f"cannot open the CDR store {redact_url(url)}: {exc}") from None
    try:
        while limit is None or limit > 0:
            page = _PAGE if limit is None else min(limit, _PAGE)
            rows = await store.query(_query(args, limit=page, offset=offset))
            for row in rows:
                yield row
            offset += len(rows)
            if limit is not None:
                limit -= len(rows)
            if len(rows) < page:
                break
    finally:
        await store.close()


async def _collect(args: argparse.Namespace, limit: int | None, offset: int) -> list[Cdr]:
    try:
        return [row async for row in _rows(args, limit, offset)]
    except StoreError as exc:
        raise _error(f"the CDR store failed: {exc}") from None


def _money(cdr: Cdr) -> str:
    if cdr.cost is None:
        return "-"
    return f"{cdr.cost:.4f} {cdr.currency or ''}".rstrip()


def _run_list(args: argparse.Namespace) -> None:
    if args.limit < 1 or args.offset < 0:
        raise _error("--limit must be >= 1 and --offset >= 0")
    rows = asyncio.run(_collect(args, args.limit, args.offset))
    if not rows:
        print("no CDRs", file=sys.stderr)
        return
    headers = ("START", "CALLER", "CALLEE", "DISPOSITION", "CODE", "DURATION", "BILLABLE", "COST")
    table = [
        (
            iso(c.start_at),
            c.caller,
            c.callee_number or c.callee,
            c.disposition or "in progress",
            str(c.status_code or "-"),
            "-" if c.duration is None else f"{c.duration:.1f}",
            "-" if c.billable is None else str(c.billable),
            _money(c),
        )
        for c in rows
    ]
    print(format_table(headers, table))


def _run_export(args: argparse.Namespace) -> None:
    rows = asyncio.run(_collect(args, None, 0))
    if args.format == "json":
        sys.stdout.write(to_json(rows).decode() + "\n")
    else:
        sys.stdout.write(to_csv(rows))
