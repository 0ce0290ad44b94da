"""The INVITE server transaction: RFC 3261 §17.2.1, as corrected by RFC 6026 §8.5-8.7.

::

    PROCEEDING ──300-699 from TU──> COMPLETED ──ACK──> CONFIRMED ──Timer I──> TERMINATED
        │                              └──Timer H or transport error─────────────^
        └──2xx from TU──> ACCEPTED ──Timer L───────────────────────────────────────┘

The transaction is created in Proceeding by a received INVITE. It re-sends the
last provisional response when the INVITE is retransmitted, and sends 100
Trying by itself when the TU is slow (:attr:`TransactionConfig.trying_delay`).
A non-2xx final response is retransmitted by Timer G (unreliable transports)
until the ACK arrives or Timer H gives up. A 2xx moves to Accepted (RFC 6026):
the TU retransmits the 2xx itself (§13.3.1.4) through :meth:`send`, and the
ACKs for it are passed up as :class:`AckReceived`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sipmsg._errors import LocalProtocolError, ParseError
from sipmsg.builders import make_response
from sipmsg.message import Request, Response

from ._common import (
    AckReceived,
    Input,
    ServerTransaction,
    State,
    TimedOut,
    TransactionConfig,
    Transitions,
    transport_error_transitions,
)

__all__ = ["ServerInviteTransaction", "TryingFactory"]

TryingFactory = Callable[[Request], Response]
"""Builds the 100 Trying for an INVITE (§8.2.6.1)."""


def _trying(invite: Request) -> Response:
    return make_response(invite, 100)


class ServerInviteTransaction(ServerTransaction):
    """Answers a received INVITE: the TU sends responses through :meth:`send`.

    Creating the transaction queues :class:`RequestReceived` for the TU.

    Args:
        request: the INVITE that created the transaction.
        now: the time it arrived.
        reliable: True over TCP, TLS, WS (no Timer G, Timer I is 0).
        config: timer values and the 100 Trying delay; the RFC defaults when None.
        trying_factory: builds the automatic 100 Trying; defaults to
            ``sipmsg.make_response(invite, 100)``. Unused when
            ``config.trying_delay`` is None.
    """

    __slots__ = ("_trying_factory",)

    def __init__(
        self,
        request: Request,
        *,
        now: float,
        reliable: bool,
        config: TransactionConfig | None = None,
        trying_factory: TryingFactory | None = None,
    ) -> None:
        if request.method != b"INVITE":
            raise LocalProtocolError("a server INVITE transaction needs an INVITE")
        super().__init__(request, State.PROCEEDING, reliable=reliable, config=config)
        self._trying_factory = _trying if trying_factory is None else trying_factory
        # §17.2.1: "the server transaction MUST generate a 100 (Trying) response
        # unless it knows that the TU will generate a provisional or final
        # response within 200 ms".
        if self._config.trying_delay is not None:
            self._start_timer(Input.TIMER_TRYING, self._config.trying_delay, now)
        self._fire_due(now)

    # ----------------------------------------------------------------- actions

    def _on_timer_trying(self, msg: None, now: float) -> None:
        try:
            trying = self._trying_factory(self.request)
        except ParseError:
            # The INVITE came from the wire: a header the 100 copies is
            # malformed. A timer must not raise; the TU's answer (or the edge's
            # 400) is what the peer will get.
            return
        self._send_response(trying, now)

    def _on_provisional(self, response: Response, now: float) -> None:
        # The TU answered in time: no automatic 100 Trying.
        self._deadlines.pop(Input.TIMER_TRYING, None)
        self._send_response(response, now)

    def _on_final(self, response: Response, now: float) -> None:
        # §17.2.1: "For unreliable transports, timer G is set to fire in T1
        # seconds ... For any transport, timer H MUST be set to fire in 64*T1
        # seconds."
        self._send_response(response, now)
        if not self._reliable:
            self._start_retransmit(Input.TIMER_G, self._config.t1, now)
        self._start_timer(Input.TIMER_H, self._config.timeout, now)

    def _on_timer_g(self, msg: None, now: float) -> None:
        # "If timer G fires, the response is passed to the transport layer once
        # more for retransmission, and timer G is set to fire in MIN(2*T1, T2)
        # seconds" (and so on, doubling to T2).
        self._resend_response(self.request, now)
        interval = min(2 * self._interval(Input.TIMER_G), self._config.t2)
        self._start_retransmit(Input.TIMER_G, interval, now)

    def _on_timer_h(self, msg: None, now: float) -> None:
        # "If timer H fires while in the "Completed" state, it implies that the
        # ACK was never received ... MUST indicate to the TU that a transaction
        # failure has occurred."
        self._emit(TimedOut(timer=Input.TIMER_H))

    def _on_ack(self, ack: Request, now: float) -> None:
        # "If an ACK is received while the server transaction is in the
        # "Completed" state, the server transaction MUST transition to the
        # "Confirmed" state ... timer I is set to fire in T4 seconds for
        # unreliable transports, and zero seconds for reliable transports."
        self._start_timer(Input.TIMER_I, 0.0 if self._reliable else self._config.t4, now)

    def _on_2xx(self, response: Response, now: float) -> None:
        # RFC 6026 §8.5: "If, while in the "Proceeding" state, the TU passes a 2xx
        # response to the server transaction, the server transaction MUST pass
        # this response to the transport layer for transmission ... The server
        # transaction MUST then transition to the "Accepted" state" and §8.7:
        # "Timer L ... 64*T1".
        self._send_response(response, now)
        self._start_timer(Input.TIMER_L, self._config.timeout, now)

    def _on_2xx_ack(self, ack: Request, now: float) -> None:
        # RFC 6026 §8.7: "passing any received ACKs to the TU".
        self._emit(AckReceived(request=ack))


_S = ServerInviteTransaction
_TRANSITIONS: Final[Transitions] = {
    (State.PROCEEDING, Input.TIMER_TRYING): (_S._on_timer_trying, State.PROCEEDING),
    # §17.2.1: "If a request retransmission is received while in the
    # "Proceeding" state, the most recent provisional response that was received
    # from the TU MUST be passed to the transport layer for retransmission."
    (State.PROCEEDING, Input.REQUEST): (_S._resend_response, State.PROCEEDING),
    (State.PROCEEDING, Input.SEND_1XX): (_S._on_provisional, State.PROCEEDING),
    (State.PROCEEDING, Input.SEND_2XX): (_S._on_2xx, State.ACCEPTED),
    (State.PROCEEDING, Input.SEND_3456XX): (_S._on_final, State.COMPLETED),
    # "while in the "Completed" state, if a request retransmission is received,
    # the server SHOULD pass the response to the transport for retransmission."
    (State.COMPLETED, Input.REQUEST): (_S._resend_response, State.COMPLETED),
    (State.COMPLETED, Input.TIMER_G): (_S._on_timer_g, State.COMPLETED),
    (State.COMPLETED, Input.TIMER_H): (_S._on_timer_h, State.TERMINATED),
    (State.COMPLETED, Input.ACK): (_S._on_ack, State.CONFIRMED),
    # "The purpose of the "Confirmed" state is to absorb any additional ACK
    # messages that arrive, triggered from retransmissions of the final response."
    (State.CONFIRMED, Input.ACK): (None, State.CONFIRMED),
    (State.CONFIRMED, Input.REQUEST): (None, State.CONFIRMED),
    (State.CONFIRMED, Input.TIMER_I): (None, State.TERMINATED),
    # RFC 6026 §8.7: "Any retransmission of the 2xx response passed from the TU to
    # the transaction while in the "Accepted" state MUST be passed to the
    # transport layer ... Any INVITEs received ... MUST be absorbed".
    (State.ACCEPTED, Input.SEND_2XX): (_S._send_response, State.ACCEPTED),
    (State.ACCEPTED, Input.REQUEST): (None, State.ACCEPTED),
    (State.ACCEPTED, Input.ACK): (_S._on_2xx_ack, State.ACCEPTED),
    (State.ACCEPTED, Input.TIMER_L): (None, State.TERMINATED),
    **transport_error_transitions(
        (State.PROCEEDING, State.COMPLETED, State.CONFIRMED, State.ACCEPTED)
    ),
}
ServerInviteTransaction._TRANSITIONS = _TRANSITIONS
ServerInviteTransaction._STATE_TIMERS = {
    State.PROCEEDING: frozenset({Input.TIMER_TRYING}),
    State.COMPLETED: frozenset({Input.TIMER_G, Input.TIMER_H}),
    State.CONFIRMED: frozenset({Input.TIMER_I}),
    State.ACCEPTED: frozenset({Input.TIMER_L}),
}
