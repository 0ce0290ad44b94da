"""The non-INVITE server transaction: RFC 3261 §17.2.2.

::

    TRYING ──1xx from TU──> PROCEEDING ──200-699 from TU──> COMPLETED ──Timer J──> TERMINATED
       └──────────────────200-699 from TU─────────────────────^                      ^
    TRYING, PROCEEDING, COMPLETED ──transport error──────────────────────────────────┘

The server never retransmits on its own: it answers each retransmission of the
request with the last response it sent, and Timer J (64*T1 over unreliable
transports, 0 over reliable ones) keeps the final response around for that.
"""

from __future__ import annotations

from typing import Final

from sipmsg._errors import LocalProtocolError
from sipmsg.message import Request, Response

from ._common import (
    Input,
    ServerTransaction,
    State,
    TransactionConfig,
    Transitions,
    transport_error_transitions,
)

__all__ = ["ServerNonInviteTransaction"]


class ServerNonInviteTransaction(ServerTransaction):
    """Answers a received non-INVITE request: the TU sends responses through :meth:`send`.

    Creating the transaction queues :class:`RequestReceived` for the TU.

    Args:
        request: the request that created the transaction.
        now: the time it arrived (unused; kept for symmetry with the others).
        reliable: True over TCP, TLS, WS (Timer J is 0).
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

    def _on_final(self, response: Response, now: float) -> None:
        # §17.2.2: "When the server transaction enters the "Completed" state, it
        # MUST set Timer J to fire in 64*T1 seconds for unreliable transports,
        # and zero seconds for reliable transports."
        self._send_response(response, now)
        self._start_timer(Input.TIMER_J, 0.0 if self._reliable else self._config.timeout, now)


_S = ServerNonInviteTransaction
_TRANSITIONS: Final[Transitions] = {
    # §17.2.2: "Once in the "Trying" state, any further request retransmissions
    # are discarded."
    (State.TRYING, Input.REQUEST): (None, State.TRYING),
    (State.TRYING, Input.SEND_1XX): (_S._send_response, State.PROCEEDING),
    (State.TRYING, Input.SEND_2XX): (_S._on_final, State.COMPLETED),
    (State.TRYING, Input.SEND_3456XX): (_S._on_final, State.COMPLETED),
    # "If a retransmission of the request is received while in the "Proceeding"
    # state, the most recently sent provisional response MUST be passed to the
    # transport layer for retransmission."
    (State.PROCEEDING, Input.REQUEST): (_S._resend_response, State.PROCEEDING),
    (State.PROCEEDING, Input.SEND_1XX): (_S._send_response, State.PROCEEDING),
    (State.PROCEEDING, Input.SEND_2XX): (_S._on_final, State.COMPLETED),
    (State.PROCEEDING, Input.SEND_3456XX): (_S._on_final, State.COMPLETED),
    # "While in the "Completed" state, the server transaction MUST pass the final
    # response to the transport layer for retransmission whenever a
    # retransmission of the request is received. Any other final responses
    # passed by the TU ... MUST be discarded": here they raise (module docstring
    # of _common).
    (State.COMPLETED, Input.REQUEST): (_S._resend_response, State.COMPLETED),
    (State.COMPLETED, Input.TIMER_J): (None, State.TERMINATED),
    **transport_error_transitions((State.TRYING, State.PROCEEDING, State.COMPLETED)),
}
ServerNonInviteTransaction._TRANSITIONS = _TRANSITIONS
ServerNonInviteTransaction._STATE_TIMERS = {
    State.COMPLETED: frozenset({Input.TIMER_J}),
}
