"""Where a message came from and where its answers go: :class:`Flow`.

One is made per message received and per message sent onwards, so it lives in
a module mypyc compiles (``scripts/compile.py``); :mod:`sipmesh_edge.outbound`,
which sends by it, is an asyncio shell and stays Python.
"""

from __future__ import annotations

from typing import Final

from sipmesh_bus import schema
from sipmesh_edge.ports import Connection

__all__ = ["Flow", "Packed", "pack", "unpack"]

Packed = tuple[schema.Transport, str, int, tuple[str, int]]
"""A flow with no connection, owner or connection id, as its transport, host,
port and local address: a tuple of strings and numbers, which the garbage
collector stops tracking once it has seen it (a Flow is walked by every
collection for as long as it lives)."""


class Flow:
    """Where a message came from and where its answers go (a value: never changed).

    A plain class, not a frozen dataclass: mypyc compiles a written
    ``__init__``, where a dataclass's generated one runs interpreted.
    """

    __slots__ = ("connection", "connection_id", "host", "local", "owner", "port", "transport")

    def __init__(
        self,
        *,
        transport: schema.Transport,
        host: str,
        port: int,
        local: tuple[str, int],
        connection: Connection | None = None,
        owner: str | None = None,
        connection_id: str | None = None,
    ) -> None:
        self.transport: Final = transport
        self.host: Final = host
        self.port: Final = port
        self.local: Final = local
        self.connection: Final = connection
        self.owner: Final = owner
        #: Another edge that must send (it holds ``connection_id``, or the NAT binding).
        self.connection_id: Final = connection_id
        #: The stream connection this flow must use (on ``owner``, or here if it closed).

    def __repr__(self) -> str:
        return (
            f"Flow(transport={self.transport!r}, host={self.host!r}, port={self.port!r}, "
            f"local={self.local!r}, owner={self.owner!r}, connection_id={self.connection_id!r})"
        )

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


def pack(flow: Flow) -> Packed | None:
    """``flow`` as a :data:`Packed` tuple; None when it has a connection, owner or connection id."""
    if flow.connection is not None or flow.owner is not None or flow.connection_id is not None:
        return None
    return (flow.transport, flow.host, flow.port, flow.local)


def unpack(packed: Packed) -> Flow:
    """The flow :func:`pack` made ``packed`` of (an equal one, not the same object)."""
    transport, host, port, local = packed
    return Flow(transport=transport, host=host, port=port, local=local)
