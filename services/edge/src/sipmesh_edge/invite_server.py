"""The edge's lean INVITE server transaction (RFC 3261 §17.2.1 as corrected by RFC 6026).

:class:`InviteServer` behaves as :class:`sipmsg.transaction.ServerInviteTransaction`
with ``trying_delay`` 0 or None (``services/edge/tests/test_invite_server.py``
runs both on the same timelines), made for the edge's hot path, where every
call makes one and it lives Timer L (64*T1) after the 2xx:

- a few plain slots instead of a timer table and an event list, and one
  attribute test per input instead of a transition-table lookup keyed by
  enums (whose hash runs in Python);
- :meth:`InviteServer.send_bytes` sends a response as bytes with its status;
- no ``RequestReceived`` (the edge acts on the INVITE when it creates this);
- once a final response is sent it keeps the INVITE as its bytes only (as
  :class:`~sipmesh_edge.transaction.NonInviteServer` does), parsed again if
  :attr:`InviteServer.request` is asked; :meth:`InviteServer.retransmitted`
  absorbs a retransmitted INVITE without it.

::

    PROCEEDING ──300-699──> COMPLETED ──ACK──> CONFIRMED ──Timer I──> TERMINATED
        │                       └──Timer H or transport error────────────^
        └──2xx──> ACCEPTED ──Timer L───────────────────────────────────────┘
"""

from __future__ import annotations

from typing import Final

from sipmsg import LocalProtocolError, ParseError, ParserConfig, Request
from sipmsg import make_response as _make_response
from sipmsg.transaction import (
    AckReceived,
    Input,
    State,
    Terminated,
    TimedOut,
    TransactionConfig,
    TransportFailed,
    TxEvent,
)

from .transaction import LeanServerTransaction

__all__ = ["InviteServer"]

_DEFAULT: Final = TransactionConfig()
_TIMED_OUT: Final = (TimedOut(timer=Input.TIMER_H), Terminated())
_TERMINATED: Final = (Terminated(),)
_FAILED: Final = (TransportFailed(), Terminated())


class InviteServer(LeanServerTransaction):
    """An INVITE server transaction; see the module docstring.

    Args:
        request: the INVITE that created it.
        now: when it arrived.
        reliable: True over TCP, TLS, WS (no Timer G, Timer I is 0).
        config: timer values; the RFC defaults when None. A ``trying_delay``
            of None sends no 100 Trying; any other value sends it at once
            (the edge's setting is 0: §17.2.1 "MUST generate a 100 (Trying)
            response unless it knows that the TU will generate a provisional
            or final response within 200 ms").
        parser: the limits ``request`` was parsed with (to parse it again).

    Raises:
        LocalProtocolError: ``request`` is not an INVITE.
    """

    __slots__ = ("_config", "_end", "_g", "_g_interval", "_h")

    def __init__(
        self,
        request: Request,
        *,
        now: float,
        reliable: bool,
        config: TransactionConfig | None = None,
        parser: ParserConfig | None = None,
    ) -> None:
        if request.method != b"INVITE":
            raise LocalProtocolError("a server INVITE transaction needs an INVITE")
        self._request: Request | None = request
        self._data = bytes(request)
        self._parser = parser
        self._reliable = reliable
        self._config = _DEFAULT if config is None else config
        self._state = State.PROCEEDING
        self._last: bytes | None = None
        self._out: list[bytes] | None = None
        self._events: tuple[TxEvent, ...] = ()
        self._g: float | None = None
        #: Timer G (Completed, unreliable): the final response again.
        self._g_interval = 0.0
        self._h: float | None = None
        #: Timer H (Completed): no ACK came.
        self._end: float | None = None
        #: Timer I (Confirmed) or Timer L (Accepted): to Terminated.
        if self._config.trying_delay is not None:
            try:
                trying = bytes(_make_response(request, 100))
            except ParseError:
                # A header the 100 copies is malformed; the TU's answer (or the
                # edge's 400) is what the peer gets.
                return
            self._last = trying
            self._out = [trying]

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next, or None."""
        g, h, end = self._g, self._h, self._end
        if g is None:
            return h if end is None else end
        return g if h is None or g < h else h

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``, earliest first."""
        while True:
            g, h = self._g, self._h
            # On a tie H fires first, as in sipmsg (a re-armed G is queued after H);
            # the first G (T1) never ties with H (64*T1).
            if h is not None and h <= now and (g is None or h <= g):
                # §17.2.1: "If timer H fires while in the "Completed" state, it
                # implies that the ACK was never received. In this case, the
                # server transaction MUST transition to the "Terminated" state,
                # and MUST indicate to the TU that a transaction failure has occurred."
                self._terminate(_TIMED_OUT)
                return
            if g is not None and g <= now:
                # "If timer G fires, the response is passed to the transport
                # layer once more for retransmission, and timer G is set to fire
                # in MIN(2*T1, T2) seconds" (and so on, doubling to T2).
                if self._last is not None:
                    self._queue(self._last)
                self._g_interval = min(2 * self._g_interval, self._config.t2)
                self._g = now + self._g_interval
                continue
            end = self._end
            if end is not None and end <= now:
                # Timer I (Confirmed) or Timer L (Accepted, RFC 6026 §8.7).
                self._terminate(_TERMINATED)
            return

    def handle_transport_error(self, now: float) -> None:
        """§17.2.4: the transport failed; inform the TU and terminate (absorbed once Terminated)."""
        self.handle_timer(now)
        if self._state is not State.TERMINATED:
            self._terminate(_FAILED)

    def receive(self, request: Request, now: float) -> None:
        """A retransmission of the INVITE, or an ACK. Never raises."""
        if request.method == b"ACK":
            self.acknowledged(request, now)
        else:
            self.retransmitted(now)

    def retransmitted(self, now: float) -> None:
        """A retransmission of the INVITE (matched to this transaction by its key).

        §17.2.1: in Proceeding "the most recent provisional response that was
        received from the TU MUST be passed to the transport layer for
        retransmission"; in Completed "the server SHOULD pass the response to
        the transport for retransmission"; in Accepted (RFC 6026 §8.7) and
        Confirmed it is absorbed.
        """
        self.handle_timer(now)
        state = self._state
        if (state is State.PROCEEDING or state is State.COMPLETED) and self._last is not None:
            self._queue(self._last)

    def acknowledged(self, ack: Request, now: float) -> None:
        """An ACK matched to this transaction."""
        self.handle_timer(now)
        state = self._state
        if state is State.COMPLETED:
            # §17.2.1: "If an ACK is received while the server transaction is in
            # the "Completed" state, the server transaction MUST transition to
            # the "Confirmed" state ... timer I is set to fire in T4 seconds for
            # unreliable transports, and zero seconds for reliable transports."
            self._state = State.CONFIRMED
            self._g = self._h = None
            self._end = now + (0.0 if self._reliable else self._config.t4)
            self.handle_timer(now)
        elif state is State.ACCEPTED:
            # RFC 6026 §8.7: "passing any received ACKs to the TU".
            self._events += (AckReceived(request=ack),)

    def send_bytes(self, status: int, data: bytes, now: float) -> None:
        """Send a response given as its bytes and its status code.

        Raises:
            LocalProtocolError: the state does not allow it (anything but a 2xx
                after the 2xx, anything after a non-2xx final) or the status is
                outside 100-699.
        """
        if not 100 <= status <= 699:
            raise LocalProtocolError(f"cannot send a response with status {status}")
        self.handle_timer(now)
        state = self._state
        if state is State.ACCEPTED and 200 <= status <= 299:
            # RFC 6026 §8.7: "Any retransmission of the 2xx response passed from
            # the TU to the transaction while in the "Accepted" state MUST be
            # passed to the transport layer for transmission."
            self._last = data
            self._queue(data)
            return
        if state is not State.PROCEEDING:
            raise LocalProtocolError(f"InviteServer: cannot send {status} in {state.name}")
        self._last = data
        self._queue(data)
        if status < 200:
            return
        self._request = None  # its bytes stay (see the module docstring)
        if status < 300:
            # RFC 6026 §8.5: "the server transaction MUST then transition to the
            # "Accepted" state" and §8.7 "Timer L ... 64*T1".
            self._state = State.ACCEPTED
            self._end = now + self._config.timeout
        else:
            # §17.2.1: "For unreliable transports, timer G is set to fire in T1
            # seconds ... For any transport, timer H MUST be set to fire in 64*T1."
            self._state = State.COMPLETED
            if not self._reliable:
                self._g_interval = self._config.t1
                self._g = now + self._g_interval
            self._h = now + self._config.timeout
        self.handle_timer(now)

    def _terminate(self, events: tuple[TxEvent, ...]) -> None:
        self._state = State.TERMINATED
        self._g = self._h = self._end = None
        self._events += events
