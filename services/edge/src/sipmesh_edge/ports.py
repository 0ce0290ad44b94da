"""The seams inside the edge: what the stream listeners and the message core see of each other.

``streams.py`` (TCP, TLS, WebSocket) and ``udp.py`` own sockets; ``sink.py`` owns what
happens to a message. They meet only through the protocols below::

    socket --framing--> MessageSink.on_message(data, transport=, source=, local=, connection=)
                                  |
    MessageSink --(answers, forwards)--> Connection.send(data)  (streams)
                                         UDP transport.sendto    (udp)

Contract for ``streams.py`` (the app imports it if present)::

    class StreamConfig(msgspec.Struct, frozen=True, kw_only=True): ...
        # every field has a default; the default config opens no listener
    async def start_stream_listeners(
        config: StreamConfig, sink: MessageSink, *, reuse_port: bool = False
    ) -> StreamListeners

The app keeps the stream settings as a plain mapping and converts it with
``msgspec.convert(raw, streams.StreamConfig)``, so the two files never import each
other's config at class-definition time.
"""

from __future__ import annotations

from typing import Protocol

from sipmsg import ParseError

__all__ = [
    "Connection",
    "ConnectionRegistry",
    "MessageSink",
    "StreamListeners",
]


class Connection(Protocol):
    """One accepted or opened TCP/TLS/WS connection (``streams.py`` implements it)."""

    id: str
    #: Unique within this edge and a valid NATS subject token (letters, digits, ``_``, ``-``).
    transport: str
    #: ``"tcp"``, ``"tls"``, ``"ws"`` or ``"wss"``.
    peer: tuple[str, int]
    #: The remote (host, port).
    local: tuple[str, int]
    #: The local (host, port) the connection arrived on.

    @property
    def is_open(self) -> bool:
        """Whether messages can still be sent (not closed nor closing)."""

    def send(self, data: bytes) -> None:
        """Queue one complete SIP message (over WebSocket: one frame). Never blocks.

        Raises:
            ConnectionError: the connection is closed or closing.
        """

    def close(self) -> None:
        """Close the connection; the registry forgets it."""


class MessageSink(Protocol):
    """Takes every framed SIP message from any transport (``sink.py`` implements it)."""

    def on_message(
        self,
        data: bytes,
        *,
        transport: str,
        source: tuple[str, int],
        local: tuple[str, int],
        connection: Connection | None,
    ) -> None:
        """Handle one complete SIP message; ``connection`` is None for UDP. Never raises."""

    def on_parse_error(
        self, error: ParseError, *, connection: Connection, data: bytes = b""
    ) -> None:
        """The stream framer rejected the byte stream (bad Content-Length, too large ...).

        ``data`` holds the octets the framer had not yet framed (the start of
        the offending message; empty for a WebSocket protocol error). The sink
        answers on ``connection`` when it can; the stream listener then closes
        the connection, as framing is lost.
        """


class ConnectionRegistry(Protocol):
    """The live stream connections of this edge, by id (``streams.Connections``)."""

    def get(self, connection_id: str) -> Connection | None:
        """The connection with this id, or None if it is closed or unknown."""


class StreamListeners(Protocol):
    """What ``start_stream_listeners`` returns: running TCP/TLS/WS servers."""

    @property
    def connections(self) -> ConnectionRegistry:
        """The registry of connections accepted by these listeners."""

    @property
    def addresses(self) -> list[tuple[str, str, int]]:
        """The bound ``(transport, host, port)`` triples (port 0 resolved)."""

    async def connect(self, transport: str, host: str, port: int) -> Connection:
        """An open connection to ``host:port`` over TCP or TLS, reused or new.

        Raises:
            OSError: the connection failed.
            ValueError: an unsupported transport.
        """

    async def close(self) -> None:
        """Stop accepting, close every connection, wait for the servers to end."""
