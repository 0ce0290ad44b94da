"""The router's helpers on the bus runtime's wire connection (:mod:`sipmesh_bus.wire`).

:class:`WireRequests` sends the requests the router awaits on a call's path
(nonce claims, media commands) as ``WireClient.request`` does, a plain
callback settling one future, failing with nats-py's errors so that the
callers handle both clients alike. :class:`Fold` feeds the entries of a
:class:`~sipmesh_bus.wirewatch.KvWatch` to the router's folds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec
import nats.errors

from sipmesh_bus.wire import PayloadTooLargeError, Reply, RequestFailure, WireClient

from .mediabus import Requester

__all__ = ["PUB_ACK", "Answer", "Fold", "PubAck", "WireRequests"]


class PubAck(msgspec.Struct):
    """A JetStream publish ack: ``{"stream": ..., "seq": N}`` or ``{"error": {...}}``."""

    seq: int = 0
    error: dict[str, Any] | None = None


PUB_ACK: Final = msgspec.json.Decoder(PubAck)


class Answer:
    """A reply as :class:`~.mediabus.MediaBus` reads it (``data``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class WireRequests:
    """Requests on the wire connection, failing as nats-py's would; nats-py while it is down.

    Args:
        wire: the bus runtime's wire connection.
        nc: nats-py's client, for :meth:`request` while ``wire`` is down.
    """

    def __init__(self, wire: WireClient, nc: Requester | None) -> None:
        self._wire = wire
        self._nc = nc

    async def ask(
        self, subject: str, payload: bytes, timeout: float, headers: bytes | None = None
    ) -> Reply | None:
        """The reply on the wire connection; None when it is down.

        Raises:
            nats.errors.TimeoutError: no reply in time.
            nats.errors.ConnectionClosedError: the connection dropped meanwhile.
            nats.errors.NoRespondersError: nobody subscribes to ``subject``.
            nats.errors.MaxPayloadError: ``payload`` is over the server's max_payload.
        """
        try:
            reply = await self._wire.ask(subject, payload, timeout=timeout, headers=headers)
        except PayloadTooLargeError:
            raise nats.errors.MaxPayloadError from None
        if reply is None:
            return None
        if reply is RequestFailure.TIMEOUT:
            raise nats.errors.TimeoutError
        if reply is RequestFailure.UNAVAILABLE:
            raise nats.errors.ConnectionClosedError
        assert isinstance(reply, Reply)
        if reply.no_responders:
            raise nats.errors.NoRespondersError
        return reply

    async def request(self, subject: str, payload: bytes = b"", timeout: float = 0.5) -> Answer:
        """:class:`~.mediabus.Requester`: the reply's payload (nats-py's while the wire is down).

        Raises:
            nats.errors.Error: as :meth:`ask`, or nats-py's errors.
        """
        reply = await self.ask(subject, payload, timeout)
        if reply is not None:
            return Answer(reply.payload)
        if self._nc is None:
            raise nats.errors.ConnectionClosedError
        return Answer((await self._nc.request(subject, payload, timeout=timeout)).data)


class Fold:
    """A wire watch's entries to a fold: ``initial`` until the bucket is loaded.

    Args:
        fold: ``(key, value, initial)``, as the nats-py watch calls it.
        loaded: called once the initial entries are folded and swapped in.
    """

    __slots__ = ("_fold", "_initial", "_loaded")

    def __init__(
        self, fold: Callable[[str, bytes | None, bool], None], loaded: Callable[[], None]
    ) -> None:
        self._fold = fold
        self._loaded = loaded
        self._initial = True

    def entry(self, key: str, value: bytes | None, revision: int) -> None:
        # An empty value is taken as deleted, as with the nats-py watch.
        self._fold(key, value or None, self._initial)

    def loaded(self) -> None:
        self._fold("", None, True)  # the initial values are all in: swap
        self._initial = False
        self._loaded()
