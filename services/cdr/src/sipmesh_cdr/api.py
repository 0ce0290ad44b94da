"""``GET /cdrs``: the CDR rows as JSON, with the filters and paging of the CLI.

Query parameters: ``since``, ``until`` (epoch seconds or ISO 8601, on the start
time), ``caller``, ``callee`` (URI, user part or number), ``limit`` (1-1000,
default 100) and ``offset``. The answer::

    {"cdrs": [...], "limit": 100, "offset": 0, "next_offset": 100}

``next_offset`` is null on the last page. Served by the bus runtime's small
HTTP server (``sipmesh_bus.httpserver``), with JSON error bodies and GET only.
"""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import parse_qs

import msgspec

from sipmesh_bus.httpserver import HttpResponse, HttpServer

from .core import public_dict
from .export import parse_time
from .store import CdrQuery, CdrStore

__all__ = ["MAX_LIMIT", "CdrApi", "parse_query"]

log = logging.getLogger(__name__)

MAX_LIMIT: Final = 1000
_JSON: Final = "application/json"
_json: Final = msgspec.json.Encoder()


class QueryError(ValueError):
    """A query parameter is invalid; the text is the 400's error."""


def parse_query(text: str) -> CdrQuery:
    """The store query from a URL query string.

    Raises:
        QueryError: a bad time, number or limit.
    """
    params = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
    try:
        since = parse_time(params["since"]) if params.get("since") else None
        until = parse_time(params["until"]) if params.get("until") else None
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    limit = _int(params, "limit", 100)
    offset = _int(params, "offset", 0)
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be 1-{MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise QueryError(f"offset must be >= 0, got {offset}")
    return CdrQuery(
        since=since,
        until=until,
        caller=params.get("caller") or None,
        callee=params.get("callee") or None,
        limit=limit,
        offset=offset,
    )


def _int(params: dict[str, str], name: str, default: int) -> int:
    if not params.get(name):
        return default
    try:
        return int(params[name])
    except ValueError:
        raise QueryError(f"{name} must be an integer, got {params[name]!r}") from None


def _json_error(status: int, message: str) -> HttpResponse:
    return status, _json.encode({"error": message}), _JSON


class CdrApi:
    """The ``/cdrs`` endpoint on ``host:port`` (0 picks a free port)."""

    def __init__(self, store: CdrStore, *, host: str, port: int) -> None:
        self._store = store
        self._http = HttpServer(
            {"/cdrs": self._cdrs},
            host=host,
            port=port,
            methods=frozenset({b"GET"}),
            error=_json_error,
        )

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._http.port

    async def start(self) -> None:
        """Bind and serve. Raises ``OSError`` when the port is taken."""
        await self._http.start()

    async def close(self) -> None:
        """Stop serving."""
        await self._http.close()

    async def _cdrs(self, query_string: str) -> HttpResponse:
        try:
            query = parse_query(query_string)
        except QueryError as exc:
            return _json_error(400, str(exc))
        try:
            rows = await self._store.query(query)
        except Exception:
            log.exception("cdr API: the store failed")
            return _json_error(503, "the CDR store failed")
        full = len(rows) == query.limit
        body = {
            "cdrs": [public_dict(r) for r in rows],
            "limit": query.limit,
            "offset": query.offset,
            "next_offset": query.offset + len(rows) if full else None,
        }
        return 200, _json.encode(body), _JSON
