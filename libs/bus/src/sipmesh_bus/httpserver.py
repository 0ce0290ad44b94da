"""A tiny asyncio HTTP/1.1 server for ``/metrics``, ``/healthz`` and ``/readyz``.

Stdlib only: GET (and HEAD where allowed), one request per connection, no
request bodies. Prometheus scrapes it and the kubelet probes it; the CDR service
serves its ``/cdrs`` JSON API with it too (routes get the query string).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

__all__ = ["ErrorBody", "HttpResponse", "HttpServer", "Route", "text_error"]

log = logging.getLogger(__name__)

HttpResponse = tuple[int, bytes, str]
#: ``(status, body, content type)``.
Route = Callable[[str], Awaitable[HttpResponse]]
#: Called with the request's query string (``""`` when it has none).
ErrorBody = Callable[[int, str], HttpResponse]
#: The response for an error the server answers itself: ``(status, message)``.

_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Unavailable",
}
_REASONS_FALLBACK: Final = "Error"
_MAX_HEAD: Final = 8192
_READ_TIMEOUT: Final = 5.0


def text_error(status: int, message: str) -> HttpResponse:
    """An error as one line of plain text (the default)."""
    return status, f"{message}\n".encode(), "text/plain; charset=utf-8"


class HttpServer:
    """Serve a fixed set of GET routes on ``host:port`` (0 picks a free port)."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        host: str,
        port: int,
        methods: frozenset[bytes] = frozenset({b"GET", b"HEAD"}),
        error: ErrorBody = text_error,
    ) -> None:
        self._routes = dict(routes)
        self._methods = methods
        self._error = error
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
        """Bind and start accepting. Raises ``OSError`` when the port is taken."""
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=_MAX_HEAD
        )

    async def close(self) -> None:
        """Stop accepting and close the listening socket."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            status, body, ctype, head_only = await self._dispatch(head)
            reason = _REASONS.get(status, _REASONS_FALLBACK)
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii")
            )
            if not head_only:
                writer.write(body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # a scanner or a half-open probe: nothing worth answering
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _dispatch(self, head: bytes) -> tuple[int, bytes, str, bool]:
        method, _, rest = head.partition(b" ")
        path, _, query = rest.partition(b" ")[0].decode("latin-1").partition("?")
        if method not in self._methods:
            return (*self._error(405, "method not allowed"), False)
        head_only = method == b"HEAD"
        route = self._routes.get(path)
        if route is None:
            return (*self._error(404, "not found"), head_only)
        try:
            status, body, ctype = await route(query)
        except Exception:
            log.exception("HTTP route %s failed", path)
            status, body, ctype = self._error(503, "internal error")
        return status, body, ctype, head_only
