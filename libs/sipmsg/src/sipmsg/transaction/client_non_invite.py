"""The non-INVITE client transaction: RFC 3261 §17.1.2.

::

    TRYING ──1xx──> PROCEEDING ──200-699──> COMPLETED ──Timer K──> TERMINATED
       └─────────────200-699──────────────────^                      ^
    TRYING, PROCEEDING ──Timer F or transport error──────────────────┘

Over an unreliable transport Timer E re-sends the request at T1, then doubling
up to T2; once a provisional response arrived, every T2. Timer F (64*T1) ends
the wait whatever the transport.
"""

from __future__ import annotations

from typing import Final

from sipmsg._errors import LocalProtocolError
from sipmsg.message import Request, Response

from ._common import (
    ClientTransaction,
    Input,
    State,
    TransactionConfig,
    Transitions,
    transport_error_transitions,
)

__all__ = ["ClientNonInviteTransaction"]


class ClientNonInviteTransaction(ClientTransaction):
    """Sends a non-INVITE request (not ACK: ACK has no transaction) and follows its responses.

    Creating the transaction sends the request: collect it with
    :meth:`datagrams_to_send`.

    Args:
        request: the request, ready for the wire (top Via with its branch).
        now: the current time.
        reliable: True over TCP, TLS, WS (no Timer E, Timer K is 0).
        config: timer values; the RFC defaults when None.
    """

    __slots__ = ()

    def __init__(
        self,
        request: Request,
        *,
        now: float,
        reliable: bool,
        config: TransactionConfig | None = None,
    ) -> None:
        if request.method in (b"INVITE", b"ACK"):
            # §17: INVITE has its own machines; "ACK ... is not a transaction" of its own.
            raise LocalProtocolError(f"no non-INVITE transaction for {request.method!r}")
        super().__init__(request, State.TRYING, reliable=reliable, config=config)
        # §17.1.2.2: "The "Trying" state is entered when the TU initiates a new
        # client transaction with a request. When entering this state, the client
        # transaction SHOULD set timer F to fire in 64*T1 seconds ... If an
        # unreliable transport is in use, the client transaction MUST set timer E
        # to fire in T1 seconds."
        self._send(self._request_bytes)
        if not reliable:
            self._start_retransmit(Input.TIMER_E, self._config.t1, now)
        self._start_timer(Input.TIMER_F, self._config.timeout, now)

    # ----------------------------------------------------------------- actions

    def _on_timer_e_trying(self, msg: None, now: float) -> None:
        # "If timer E fires while still in this state, the timer is reset, but
        # this time with a value of MIN(2*T1, T2)" (and so on, doubling to T2).
        self._retransmit(Input.TIMER_E, now, cap=self._config.t2)

    def _on_timer_e_proceeding(self, msg: None, now: float) -> None:
        # "If Timer E fires while in the "Proceeding" state, the request MUST be
        # passed to the transport layer for retransmission, and Timer E MUST be
        # reset with a value of T2 seconds."
        self._send(self._request_bytes)
        self._start_retransmit(Input.TIMER_E, self._config.t2, now)

    def _on_timer_f(self, msg: None, now: float) -> None:
        self._time_out(Input.TIMER_F)

    def _on_final(self, response: Response, now: float) -> None:
        # "the client transaction MUST pass the response to the TU ... Timer K to
        # fire in T4 seconds for unreliable transports, and zero seconds for
        # reliable transports."
        self._pass_up(response, now)
        self._start_timer(Input.TIMER_K, 0.0 if self._reliable else self._config.t4, now)
        self._forget_request()  # Completed absorbs retransmissions, nothing else


_C = ClientNonInviteTransaction
_TRANSITIONS: Final[Transitions] = {
    (State.TRYING, Input.TIMER_E): (_C._on_timer_e_trying, State.TRYING),
    (State.TRYING, Input.TIMER_F): (_C._on_timer_f, State.TERMINATED),
    (State.TRYING, Input.RESPONSE_1XX): (_C._pass_up, State.PROCEEDING),
    (State.TRYING, Input.RESPONSE_2XX): (_C._on_final, State.COMPLETED),
    (State.TRYING, Input.RESPONSE_3456XX): (_C._on_final, State.COMPLETED),
    (State.PROCEEDING, Input.TIMER_E): (_C._on_timer_e_proceeding, State.PROCEEDING),
    (State.PROCEEDING, Input.TIMER_F): (_C._on_timer_f, State.TERMINATED),
    (State.PROCEEDING, Input.RESPONSE_1XX): (_C._pass_up, State.PROCEEDING),
    (State.PROCEEDING, Input.RESPONSE_2XX): (_C._on_final, State.COMPLETED),
    (State.PROCEEDING, Input.RESPONSE_3456XX): (_C._on_final, State.COMPLETED),
    # §17.1.2.2: "The "Completed" state exists to buffer any additional response
    # retransmissions that may be received": they are absorbed (no entry).
    (State.COMPLETED, Input.TIMER_K): (None, State.TERMINATED),
    **transport_error_transitions((State.TRYING, State.PROCEEDING, State.COMPLETED)),
}
ClientNonInviteTransaction._TRANSITIONS = _TRANSITIONS
ClientNonInviteTransaction._STATE_TIMERS = {
    State.TRYING: frozenset({Input.TIMER_E, Input.TIMER_F}),
    State.PROCEEDING: frozenset({Input.TIMER_E, Input.TIMER_F}),
    State.COMPLETED: frozenset({Input.TIMER_K}),
}
