"""``GET /cdrs``: the CDR rows as JSON, with the filters and paging of the CLI.

Query parameters: ``since``, ``until`` (epoch seconds or ISO 8601, on the start
time), ``caller``, ``callee`` (URI, user part or number), ``limit`` (1-1000,
default 100) and ``offset``. The answer::

    {"cdrs": [...], "limit": 100, "offset": 0, "next_offset": 100}

``next_offset`` is null on the last page. Its own small stdlib HTTP server: the
bus runtime's one serves fixed routes without a query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final
from urllib.parse import parse_qs, urlsplit

import msgspec

from .core import public_dict
from .export import parse_time
from .store import CdrQuery, CdrStore

__all__ = ["MAX_LIMIT", "CdrApi", "parse_query"]

log = logging.getLogger(__name__)

MAX_LIMIT: Final = 1000
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    503: "Unavailable",
    404: "Not Found",
    405: "Method Not Allowed",
}
_JSON: Final = "application/json"
_json: Final = msgspec.json.Encoder()
_READ_TIMEOUT: Final = 5.0


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


class CdrApi:
    """The ``/cdrs`` endpoint on ``host:port`` (0 picks a free port)."""

    def __init__(self, store: CdrStore, *, host: str, port: int) -> None:
        self._store = store
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind and serve. Raises ``OSError`` when the port is taken."""
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=8192)

    async def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            status, body = await self._dispatch(head)
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {_JSON}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode("ascii")
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _dispatch(self, head: bytes) -> tuple[int, bytes]:
        method, _, rest = head.partition(b" ")
        target = urlsplit(rest.partition(b" ")[0].decode("latin-1"))
        if method != b"GET":
            return 405, _json.encode({"error": "method not allowed"})
        if target.path != "/cdrs":
            return 404, _json.encode({"error": "not found"})
        try:
            query = parse_query(target.query)
        except QueryError as exc:
            return 400, _json.encode({"error": str(exc)})
        try:
            rows = await self._store.query(query)
        except Exception:
            log.exception("cdr API: the store failed")
            return 503, _json.encode({"error": "the CDR store failed"})
        full = len(rows) == query.limit
        return 200, _json.encode(
            {
                "cdrs": [public_dict(r) for r in rows],
                "limit": query.limit,
                "offset": query.offset,
                "next_offset": query.offset + len(rows) if full else None,
            }
        )
