"""The INVITE client transaction: RFC 3261 §17.1.1, as corrected by RFC 6026 §8.4.

::

    CALLING ──1xx──> PROCEEDING ──300-699──> COMPLETED ──Timer D──> TERMINATED
       │  └──────────300-699─────────────────────^                      ^
       └──2xx──> ACCEPTED (also from PROCEEDING) ──Timer M─────────────┘
    CALLING ──Timer B or transport error──> TERMINATED

Over an unreliable transport Timer A re-sends the INVITE at T1, 2*T1, 4*T1 ...
until a response arrives or Timer B (64*T1) fires. A non-2xx final response is
acknowledged here (the ACK is hop-by-hop, part of this transaction); a 2xx is
the TU's to acknowledge, and RFC 6026 keeps the transaction in Accepted so that
retransmitted or forked 2xx still reach the TU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sipmsg._errors import LocalProtocolError, ParseError
from sipmsg.builders import make_ack_for_non2xx
from sipmsg.message import Request, Response

from ._common import (
    ClientTransaction,
    Input,
    State,
    TransactionConfig,
    Transitions,
    transport_error_transitions,
)

__all__ = ["AckFactory", "ClientInviteTransaction"]

AckFactory = Callable[[Request, Response], Request]
"""Builds the ACK for a non-2xx final response (§17.1.1.3) from the INVITE and the response."""


class ClientInviteTransaction(ClientTransaction):
    """Sends an INVITE and follows its responses.

    Creating the transaction sends the INVITE: collect it with
    :meth:`datagrams_to_send`.

    Args:
        request: the INVITE, ready for the wire (top Via with its branch).
        now: the current time.
        reliable: True over TCP, TLS, WS (no Timer A, Timer D is 0).
        config: timer values; the RFC defaults when None.
        ack_factory: builds the ACK for a non-2xx final response; defaults to
            ``sipmsg.make_ack_for_non2xx``.
    """

    __slots__ = ("_ack", "_ack_factory")

    def __init__(
        self,
        request: Request,
        *,
        now: float,
        reliable: bool,
        config: TransactionConfig | None = None,
        ack_factory: AckFactory | None = None,
    ) -> None:
        if request.method != b"INVITE":
            raise LocalProtocolError("a client INVITE transaction needs an INVITE")
        super().__init__(request, State.CALLING, reliable=reliable, config=config)
        self._ack_factory = make_ack_for_non2xx if ack_factory is None else ack_factory
        self._ack: bytes | None = None
        # §17.1.1.2: "If an unreliable transport is being used, the client
        # transaction MUST start timer A with a value of T1 ... For any
        # transport, the client transaction MUST start timer B with a value of 64*T1".
        self._send(self._request_bytes)
        if not reliable:
            self._start_retransmit(Input.TIMER_A, self._config.t1, now)
        self._start_timer(Input.TIMER_B, self._config.timeout, now)

    def receive(self, response: Response, now: float) -> None:
        """Feed a response the transport matched to this transaction.

        Never raises: a response the state does not expect is absorbed, and so
        is a 300-699 response that cannot be acknowledged because a header the
        ACK copies (To) is malformed: it is garbage, and the INVITE is
        retransmitted until a well-formed answer or Timer B.

        Args:
            response: the parsed response.
            now: the time it arrived.
        """
        self._fire_due(now)
        if 300 <= response.status <= 699 and self._state in (State.CALLING, State.PROCEEDING):
            try:
                self._ack = bytes(self._ack_factory(self.request, response))
            except ParseError:
                return
        super().receive(response, now)

    @property
    def ack(self) -> bytes | None:
        """The ACK this transaction sent for a non-2xx final response, if any."""
        return self._ack

    # ----------------------------------------------------------------- actions

    def _on_timer_a(self, msg: None, now: float) -> None:
        # "When timer A fires, the client transaction MUST retransmit the request
        # ... and MUST reset the timer with a value of 2*T1" (and so on, doubling).
        self._retransmit(Input.TIMER_A, now, cap=None)

    def _on_timer_b(self, msg: None, now: float) -> None:
        self._time_out(Input.TIMER_B)

    def _on_final(self, response: Response, now: float) -> None:
        # §17.1.1.2: "the client transaction MUST pass the received response up
        # to the TU, and the client transaction MUST generate an ACK request ...
        # Timer D to fire in 32 seconds for unreliable transports, and zero
        # seconds for reliable transports."
        self._pass_up(response, now)
        self._on_final_again(response, now)  # the ACK receive() built
        self._start_timer(Input.TIMER_D, 0.0 if self._reliable else self._config.timer_d, now)
        self._forget_request()  # Completed re-sends the ACK's bytes, nothing else

    def _on_final_again(self, response: Response, now: float) -> None:
        # "Any retransmissions of the final response that are received while in
        # the "Completed" state MUST cause the ACK to be re-passed to the
        # transport layer for retransmission, but the newly received response
        # MUST NOT be passed up to the TU."
        if self._ack is not None:
            self._send(self._ack)

    def _on_2xx(self, response: Response, now: float) -> None:
        # RFC 6026 §8.4: "it MUST transition to the "Accepted" state, pass the 2xx
        # response to the TU, and set Timer M to 64*T1."
        self._pass_up(response, now)
        self._start_timer(Input.TIMER_M, self._config.timeout, now)
        self._forget_request()  # Accepted passes further 2xx up, nothing else


_C = ClientInviteTransaction
_TRANSITIONS: Final[Transitions] = {
    (State.CALLING, Input.TIMER_A): (_C._on_timer_a, State.CALLING),
    (State.CALLING, Input.TIMER_B): (_C._on_timer_b, State.TERMINATED),
    (State.CALLING, Input.RESPONSE_1XX): (_C._pass_up, State.PROCEEDING),
    (State.CALLING, Input.RESPONSE_2XX): (_C._on_2xx, State.ACCEPTED),
    (State.CALLING, Input.RESPONSE_3456XX): (_C._on_final, State.COMPLETED),
    (State.PROCEEDING, Input.RESPONSE_1XX): (_C._pass_up, State.PROCEEDING),
    (State.PROCEEDING, Input.RESPONSE_2XX): (_C._on_2xx, State.ACCEPTED),
    (State.PROCEEDING, Input.RESPONSE_3456XX): (_C._on_final, State.COMPLETED),
    (State.COMPLETED, Input.RESPONSE_3456XX): (_C._on_final_again, State.COMPLETED),
    (State.COMPLETED, Input.TIMER_D): (None, State.TERMINATED),
    # RFC 6026 §8.4: "any 2xx ... received while in the "Accepted" state MUST be
    # passed directly to the TU"; other responses are absorbed.
    (State.ACCEPTED, Input.RESPONSE_2XX): (_C._pass_up, State.ACCEPTED),
    (State.ACCEPTED, Input.TIMER_M): (None, State.TERMINATED),
    **transport_error_transitions(
        (State.CALLING, State.PROCEEDING, State.COMPLETED, State.ACCEPTED)
    ),
}
ClientInviteTransaction._TRANSITIONS = _TRANSITIONS
ClientInviteTransaction._STATE_TIMERS = {
    State.CALLING: frozenset({Input.TIMER_A, Input.TIMER_B}),
    # §17.1.1.2: "In the "Proceeding" state, the client transaction SHOULD NOT
    # retransmit the request any longer"; Timer B belongs to Calling (Figure 5).
    State.COMPLETED: frozenset({Input.TIMER_D}),
    State.ACCEPTED: frozenset({Input.TIMER_M}),
}
