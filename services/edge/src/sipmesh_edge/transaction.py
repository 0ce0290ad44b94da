"""The edge's lean non-INVITE server transaction (RFC 3261 §17.2.2), sent as bytes.

:class:`NonInviteServer` behaves as :class:`sipmsg.transaction.ServerNonInviteTransaction`
(``services/edge/tests/test_transaction.py`` runs both on the same timelines)
with two differences made for the edge's hot path, where every REGISTER makes
one and a UDP one lives Timer J (64*T1) to absorb retransmissions:

- :meth:`NonInviteServer.send_bytes` sends a response as the bytes a service
  returned, with the status read from its status line: the edge never parses
  the registrar's or the router's response to pass it on;
- it is a few plain slots (no timer table, no event queue until an event
  happens) and emits no ``RequestReceived`` (the edge creates the transaction
  because it received the request and acts on it at once);
- once the final response is sent it keeps the request as its bytes only
  (one object), not the parsed ``Request`` (dozens): a UDP transaction lives
  32 s more to absorb retransmissions, and at a thousand REGISTERs a second
  the parsed copies held that long cost memory and garbage-collector time.
  :attr:`NonInviteServer.request` parses them again if it is asked.

::

    TRYING ──1xx──> PROCEEDING ──200-699──> COMPLETED ──Timer J──> TERMINATED
       └──────────200-699───────────────────────^                      ^
    TRYING, PROCEEDING, COMPLETED ──transport error────────────────────┘
"""

from __future__ import annotations

from typing import Final

from sipmsg import LocalProtocolError, ParseError, ParserConfig, Request, Response, parse
from sipmsg.transaction import (
    State,
    Terminated,
    TransactionConfig,
    TransportFailed,
    TxEvent,
)

__all__ = ["LeanServerTransaction", "NonInviteServer", "status_of"]

_DEFAULT: Final = TransactionConfig()
_TERMINATED: Final = (Terminated(),)
_FAILED: Final = (TransportFailed(), Terminated())
_OPEN: Final = frozenset({State.TRYING, State.PROCEEDING})


def status_of(data: bytes) -> int | None:
    """The status code of a response's bytes, or None when they do not start with a Status-Line.

    ``Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF`` (§25.1),
    the code three digits, 100-699; the header block must be terminated
    (the message is passed on as it is, never parsed here).
    """
    if data[:8] != b"SIP/2.0 " or data[11:12] != b" ":
        return None
    code = data[8:11]
    if not code.isdigit() or not 0x31 <= code[0] <= 0x36 or b"\r\n\r\n" not in data:
        return None
    return int(code)


class LeanServerTransaction:
    """What the edge's lean server transactions share: the request as bytes, output, events.

    :class:`NonInviteServer` and :class:`~sipmesh_edge.invite_server.InviteServer`
    set every slot in their ``__init__``; this class holds no state machine.
    """

    __slots__ = (
        "_data",
        "_events",
        "_last",
        "_out",
        "_parser",
        "_reliable",
        "_request",
        "_state",
    )

    _data: bytes
    _events: tuple[TxEvent, ...]
    _last: bytes | None
    _out: list[bytes] | None
    _parser: ParserConfig | None
    _reliable: bool
    _request: Request | None
    _state: State

    @property
    def request(self) -> Request:
        """The request that created the transaction (parsed again after the final response)."""
        req = self._request
        if req is None:
            msg = parse(self._data, self._parser)
            if not isinstance(msg, Request):  # it was one: never in practice
                raise ParseError("not a request when parsed again")
            self._request = req = msg
        return req

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def last_response(self) -> bytes | None:
        """The last response sent (what a retransmitted request gets again), or None."""
        return self._last

    @property
    def reliable(self) -> bool:
        """True over TCP, TLS, WS."""
        return self._reliable

    @property
    def terminated(self) -> bool:
        """True once the transaction reached Terminated."""
        return self._state is State.TERMINATED

    def send(self, response: Response, now: float) -> None:
        """Send a response from the TU (as ``send_bytes``)."""
        self.send_bytes(response.status, bytes(response), now)

    def send_bytes(self, status: int, data: bytes, now: float) -> None:
        """Send a response given as its bytes and its status code."""
        raise NotImplementedError

    def datagrams_to_send(self) -> list[bytes]:
        """Return, and forget, the messages to put on the wire."""
        out = self._out
        if out is None:
            return []
        self._out = None
        return out

    def next_event(self) -> TxEvent | None:
        """The next event for the TU, or None.

        ``TransportFailed`` and ``Terminated``; an INVITE's also ``AckReceived``
        and ``TimedOut``.
        """
        events = self._events
        if not events:
            return None
        self._events = events[1:]
        return events[0]

    def _queue(self, data: bytes) -> None:
        if self._out is None:
            self._out = [data]
        else:
            self._out.append(data)


class NonInviteServer(LeanServerTransaction):
    """A non-INVITE server transaction; see the module docstring.

    Args:
        request: the request that created it (not ACK or INVITE).
        now: when it arrived (unused, as in sipmsg).
        reliable: True over TCP, TLS, WS (Timer J is 0).
        config: timer values; the RFC defaults when None.
        parser: the limits ``request`` was parsed with (to parse it again).

    Raises:
        LocalProtocolError: ``request`` is an INVITE or an ACK.
    """

    __slots__ = ("_linger", "_timer")

    def __init__(
        self,
        request: Request,
        *,
        now: float,
        reliable: bool,
        config: TransactionConfig | None = None,
        parser: ParserConfig | None = None,
    ) -> None:
        if request.method in (b"INVITE", b"ACK"):
            # §17: INVITE has its own machines; "ACK ... is not a transaction" of its own.
            raise LocalProtocolError(f"no non-INVITE transaction for {request.method!r}")
        self._request: Request | None = request
        self._data = bytes(request)
        self._parser = parser
        self._reliable = reliable
        # §17.2.2: "it MUST set Timer J to fire in 64*T1 seconds for unreliable
        # transports, and zero seconds for reliable transports".
        self._linger = 0.0 if reliable else (_DEFAULT if config is None else config).timeout
        self._state = State.TRYING
        self._last: bytes | None = None
        self._out: list[bytes] | None = None
        self._timer: float | None = None
        self._events: tuple[TxEvent, ...] = ()

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next (Timer J), or None."""
        return self._timer

    def handle_timer(self, now: float) -> None:
        """Fire Timer J when it is due."""
        timer = self._timer
        if timer is not None and timer <= now:
            self._timer = None
            self._state = State.TERMINATED
            self._events += _TERMINATED

    def handle_transport_error(self, now: float) -> None:
        """§17.2.4: the transport failed; inform the TU and terminate (absorbed once Terminated)."""
        self.handle_timer(now)
        if self._state is not State.TERMINATED:
            self._timer = None
            self._state = State.TERMINATED
            self._events += _FAILED

    def receive(self, request: Request, now: float) -> None:
        """A retransmission of the request: re-send the last response (§17.2.2).

        "Once in the "Trying" state, any further request retransmissions are
        discarded"; in Proceeding the last provisional and in Completed the
        final response "MUST be passed to the transport layer for
        retransmission". Never raises.
        """
        self.retransmitted(now)

    def retransmitted(self, now: float) -> None:
        """As :meth:`receive`, for a retransmission matched to this transaction by its key."""
        self.handle_timer(now)
        last = self._last
        if last is not None and self._state is not State.TERMINATED:
            self._queue(last)

    def send_bytes(self, status: int, data: bytes, now: float) -> None:
        """Send a response given as its bytes and its status code.

        Raises:
            LocalProtocolError: a response after the final one, or a status
                outside 100-699 (§17.2.2: the TU's later final responses "MUST
                be discarded"; passing one is a bug of the caller).
        """
        self.handle_timer(now)
        if self._state not in _OPEN or not 100 <= status <= 699:
            raise LocalProtocolError(f"NonInviteServer: cannot send {status} in {self._state.name}")
        self._last = data
        self._queue(data)
        if status < 200:
            self._state = State.PROCEEDING
            return
        self._state = State.COMPLETED
        self._timer = now + self._linger
        self._request = None  # its bytes stay (see the module docstring)
        self.handle_timer(now)
