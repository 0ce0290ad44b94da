"""Sending over a stream connection that is still to be opened: the asyncio half of sending.

:class:`~sipmesh_edge.outbound.Outbound` is compiled with mypyc
(``scripts/compile.py``), and a compiled module imports no asyncio or logging
(``tests/test_compiled_build.py``): the one send that has to wait, a message
to a TCP/TLS peer the edge holds no connection to, starts here as a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from sipmesh_edge.flow import Flow
from sipmesh_edge.ports import Connection

__all__ = ["Connector", "PendingSends"]

# The records keep the name they had when this lived in outbound.py.
log = logging.getLogger("sipmesh_edge.outbound")


class Connector(Protocol):
    """Opens (or reuses) outbound stream connections (``streams.StreamListeners``)."""

    async def connect(self, transport: str, host: str, port: int) -> Connection: ...


class PendingSends:
    """The sends waiting for a connection to open (their tasks are kept until done)."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self,
        connector: Connector,
        flow: Flow,
        data: bytes,
        on_error: Callable[[], None] | None,
    ) -> None:
        """Open (or reuse) a connection to the flow's peer and send ``data`` on it.

        A failure is logged and reported through ``on_error`` (RFC 3261 §18.4:
        the caller tells its transaction). Needs a running event loop.
        """

        async def connect_and_send() -> None:
            try:
                connection = await connector.connect(flow.transport, flow.host, flow.port)
                connection.send(data)
            except (OSError, ValueError) as exc:  # ConnectionError and TimeoutError included
                log.info("edge: %s %s:%s: %s", flow.transport, flow.host, flow.port, exc)
                if on_error is not None:
                    on_error()

        task = asyncio.get_running_loop().create_task(connect_and_send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
