"""What the four RFC 3261 §17 transaction machines share.

The machines are sans-I/O, in the style of aioquic: time is an argument
(``now: float``, seconds on any monotonic clock the caller likes), timers are
inputs (:meth:`Transaction.handle_timer`), the bytes to put on the wire come out
of :meth:`Transaction.datagrams_to_send` and what the transaction user (TU) must
know comes out of :meth:`Transaction.next_event`.

Each machine is one table, ``_TRANSITIONS: dict[tuple[State, Input],
tuple[Action | None, State]]``, plus small actions; :class:`Transaction` runs the
table. Two kinds of input are treated differently when the table has no entry:

* a message *received* from the wire (a stray or late response, an ACK where
  none is expected) is absorbed silently: wire input must never raise, and
  RFC 3261 §17 absorbs such messages ("any retransmissions of the final
  response that are received while in the "Completed" state MUST cause the ACK
  to be re-passed ... but the newly received response MUST NOT be passed up");
* a message the TU *sends* where the machine forbids it (a second final
  response, anything after Terminated) raises :class:`LocalProtocolError`:
  RFC 3261 §17.2.2 says such responses "MUST be discarded", and this library
  discards them too, but loudly, because it is a bug in the caller.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeAlias

from sipmsg._errors import LocalProtocolError, ParseError
from sipmsg._native import python_class
from sipmsg.message import Request, Response, parse

__all__ = [
    "AckReceived",
    "ClientTransaction",
    "Input",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "State",
    "Terminated",
    "TimedOut",
    "Transaction",
    "TransactionConfig",
    "TransportFailed",
    "TxEvent",
]


# --------------------------------------------------------------------------- configuration


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionConfig:
    """Timer values, RFC 3261 §17.1.1.1 and Table 4 (A.  Table of Timer Values).

    Passed to a transaction's constructor; never a global, as with h2's
    ``H2Configuration``.
    """

    t1: float = 0.5
    """RTT estimate; "T1 is an estimate of the round-trip time (RTT), and it defaults to 500 ms"."""
    t2: float = 4.0
    """"The maximum retransmit interval for non-INVITE requests and INVITE responses"."""
    t4: float = 5.0
    """"Maximum duration a message will remain in the network"."""
    timer_d: float = 32.0
    """Timer D over unreliable transports: "> 32s for UDP" (0 over reliable ones)."""
    trying_delay: float | None = 0.2
    """Delay after which a server INVITE transaction sends 100 Trying by itself
    when the TU has sent no provisional response (§17.2.1: "the server transaction
    MUST generate a 100 (Trying) response unless it knows that the TU will generate a
    provisional or final response within 200 ms"). 0 sends it at once; None never."""

    def __post_init__(self) -> None:
        if min(self.t1, self.t2, self.t4, self.timer_d) <= 0:
            raise ValueError("T1, T2, T4 and Timer D must be positive")
        if self.trying_delay is not None and self.trying_delay < 0:
            raise ValueError("trying_delay must be None or >= 0")

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J (unreliable), L and M."""
        return 64 * self.t1


DEFAULT_CONFIG: Final = TransactionConfig()


# --------------------------------------------------------------------------- states and inputs


class State(enum.Enum):
    """The states of the four machines (each uses a subset)."""

    # Enum.__hash__ is Python code (hash(self._name_)), run on every table
    # lookup; members are singletons compared by identity, so the C identity
    # hash is consistent with equality and keeps lookups out of the interpreter.
    __hash__ = object.__hash__

    #: Client INVITE: the request was sent, no response yet (Timers A and B run).
    CALLING = enum.auto()
    #: Non-INVITE: client sent / server received the request, no response yet.
    TRYING = enum.auto()
    #: A provisional response was received (client) or sent (server).
    PROCEEDING = enum.auto()
    #: A non-2xx final response (INVITE) or any final response (non-INVITE) went by;
    #: the transaction absorbs retransmissions until its linger timer fires.
    COMPLETED = enum.auto()
    #: Server INVITE: the ACK for a non-2xx final response arrived (Timer I runs).
    CONFIRMED = enum.auto()
    #: RFC 6026 §7.1: a 2xx final response to INVITE went by; further 2xx (client)
    #: or ACKs (server) go to the TU until Timer M (client) or L (server) fires.
    ACCEPTED = enum.auto()
    #: Done: absorbing, no timers, nothing more to send.
    TERMINATED = enum.auto()


class Input(enum.Enum):
    """Everything that can move a machine: messages, timers, transport errors."""

    __hash__ = object.__hash__  # as State's: the C identity hash

    #: A request received: the server transaction's request, retransmitted.
    REQUEST = enum.auto()
    #: An ACK received by a server INVITE transaction.
    ACK = enum.auto()
    #: Responses received by a client transaction.
    RESPONSE_1XX = enum.auto()
    RESPONSE_2XX = enum.auto()
    RESPONSE_3456XX = enum.auto()
    #: Responses the TU passes to a server transaction to send.
    SEND_1XX = enum.auto()
    SEND_2XX = enum.auto()
    SEND_3456XX = enum.auto()
    #: RFC 3261 Table 4 timers, and L and M from RFC 6026 §8.
    TIMER_A = enum.auto()
    TIMER_B = enum.auto()
    TIMER_D = enum.auto()
    TIMER_E = enum.auto()
    TIMER_F = enum.auto()
    TIMER_G = enum.auto()
    TIMER_H = enum.auto()
    TIMER_I = enum.auto()
    TIMER_J = enum.auto()
    TIMER_K = enum.auto()
    TIMER_L = enum.auto()
    TIMER_M = enum.auto()
    #: The unnamed 200 ms timer of §17.2.1 after which a server INVITE
    #: transaction sends 100 Trying itself (:attr:`TransactionConfig.trying_delay`).
    TIMER_TRYING = enum.auto()
    #: The transport could not send (§17.1.4, §17.2.4: "inform the TU").
    TRANSPORT_ERROR = enum.auto()


#: The inputs that come from the wire: when the table has no entry, absorbed.
WIRE_INPUTS: Final = frozenset(
    {Input.REQUEST, Input.ACK, Input.RESPONSE_1XX, Input.RESPONSE_2XX, Input.RESPONSE_3456XX}
)
#: The inputs handle_timer() produces.
TIMERS: Final = frozenset(i for i in Input if i.name.startswith("TIMER_"))


def response_input(status: int, *, sending: bool) -> Input | None:
    """Classify a status code; None when it is not 100-699."""
    if 100 <= status <= 199:
        return Input.SEND_1XX if sending else Input.RESPONSE_1XX
    if 200 <= status <= 299:
        return Input.SEND_2XX if sending else Input.RESPONSE_2XX
    if 300 <= status <= 699:
        return Input.SEND_3456XX if sending else Input.RESPONSE_3456XX
    return None


# --------------------------------------------------------------------------- events


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A server transaction was created for this request: the TU must answer it."""

    request: Request


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """A client transaction passes a response up (never a retransmission, except
    further 2xx to INVITE in Accepted, which RFC 6026 §8.4 passes up)."""

    response: Response


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived:
    """Server INVITE in Accepted: an ACK for the 2xx, passed to the TU (RFC 6026 §8.7)."""

    request: Request


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut:
    """Timer B, F or H fired: the transaction failed (§17.1.1.2, §17.1.2.2, §17.2.1)."""

    timer: Input
    """Which timer fired."""


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class TransportFailed:
    """The transport reported an error; the transaction is terminated (§17.1.4)."""


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Terminated:
    """The transaction reached Terminated; the caller may forget it now."""


TxEvent: TypeAlias = (
    RequestReceived | ResponseReceived | AckReceived | TimedOut | TransportFailed | Terminated
)

#: An action runs after the state has changed; it gets the transaction, the
#: message of the input (None for timers and errors) and the time.
Action: TypeAlias = Callable[[Any, Any, float], None]
Transitions: TypeAlias = Mapping[tuple[State, Input], tuple[Action | None, State]]


# --------------------------------------------------------------------------- the engine


class Transaction:
    """The table-driven engine the four machines share.

    Never instantiated itself; handy as the type of a table of transactions.
    Subclasses set ``_TRANSITIONS`` and ``_STATE_TIMERS`` and add ``receive``
    (and, server side, ``send``).
    """

    __slots__ = (
        "_config",
        "_datagrams",
        "_deadlines",
        "_events",
        "_intervals",
        "_reliable",
        "_request",
        "_request_bytes",
        "_state",
    )

    _TRANSITIONS: ClassVar[Transitions]
    #: The timers that keep running in each state; entering a state cancels the others.
    _STATE_TIMERS: ClassVar[Mapping[State, frozenset[Input]]]

    def __init__(
        self,
        request: Request,
        state: State,
        *,
        reliable: bool,
        config: TransactionConfig | None,
    ) -> None:
        self._request: Request | None = request
        self._request_bytes = bytes(request)
        self._state = state
        self._reliable = reliable
        self._config = DEFAULT_CONFIG if config is None else config
        # The containers below exist only while they hold something: a
        # transaction lingers up to 64*T1 after its final response, and every
        # container a program keeps is one more object the cyclic garbage
        # collector walks on each full collection.
        self._datagrams: list[bytes] | None = None
        self._events: list[TxEvent] | None = None
        self._deadlines: dict[Input, float] = {}
        # Current retransmission interval of Timers A, E and G.
        self._intervals: dict[Input, float] | None = None

    # ----------------------------------------------------------------- public surface

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def request(self) -> Request:
        """The request that created the transaction.

        A client transaction keeps only its bytes once a final response
        arrived (:meth:`ClientTransaction._forget_request`); it is parsed
        again if asked.

        Raises:
            ParseError: the request, parsed again, is not a request (never
                for one that came from :func:`sipmsg.parse`).
        """
        req = self._request
        if req is None:
            msg = parse(self._request_bytes)
            if not isinstance(msg, Request):  # pragma: no cover - it was one
                raise ParseError("not a request when parsed again")
            self._request = req = msg
        return req

    @property
    def reliable(self) -> bool:
        """True over TCP, TLS, WS: no retransmission timers, zero linger timers."""
        return self._reliable

    @property
    def config(self) -> TransactionConfig:
        """The timer configuration."""
        return self._config

    @property
    def terminated(self) -> bool:
        """True once the transaction reached Terminated."""
        return self._state is State.TERMINATED

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``, earliest first.

        Args:
            now: the current time; timers with a deadline <= now fire.
        """
        self._fire_due(now)

    def handle_transport_error(self, now: float) -> None:
        """Tell the transaction the transport failed to send its message.

        §17.1.4 and §17.2.4: the transaction informs the TU and terminates. In
        Terminated this is absorbed.

        Args:
            now: the current time.
        """
        self._fire_due(now)
        if self._state is not State.TERMINATED:
            self._step(Input.TRANSPORT_ERROR, None, now)
        self._fire_due(now)

    def get_timer(self) -> float | None:
        """Return the earliest deadline at which :meth:`handle_timer` must be called, or None."""
        # A loop rather than min(values(), default=None): compiled, it runs on
        # unboxed floats, and most transactions have zero to two timers.
        earliest: float | None = None
        for deadline in self._deadlines.values():
            if earliest is None or deadline < earliest:
                earliest = deadline
        return earliest

    def datagrams_to_send(self) -> list[bytes]:
        """Return, and forget, the messages to put on the wire, in order.

        Initial sends and retransmissions alike; the transport sends them to the
        transaction's peer.
        """
        out = self._datagrams
        if out is None:
            return []
        self._datagrams = None
        return out

    def next_event(self) -> TxEvent | None:
        """Return the next event for the TU, or None when there is none."""
        events = self._events
        if not events:
            return None
        event = events.pop(0)
        if not events:
            self._events = None
        return event

    # ----------------------------------------------------------------- machinery

    def _feed(self, event: Input | None, msg: Request | Response, now: float) -> None:
        """Run a message input: due timers first (they happened before), then it."""
        self._fire_due(now)
        if event is not None:
            self._step(event, msg, now)
        self._fire_due(now)

    def _step(self, event: Input, msg: Request | Response | None, now: float) -> None:
        entry = self._TRANSITIONS.get((self._state, event))
        if entry is None:
            if event in WIRE_INPUTS:
                return  # absorbed: see the module docstring
            raise LocalProtocolError(
                f"{type(self).__name__}: {event.name} not allowed in {self._state.name}"
            )
        action, new_state = entry
        old_state = self._state
        self._state = new_state
        if new_state is not old_state:
            keep = self._STATE_TIMERS.get(new_state, frozenset())
            for timer in [t for t in self._deadlines if t not in keep]:
                del self._deadlines[timer]
            intervals = self._intervals
            if intervals is not None and not any(t in keep for t in intervals):
                self._intervals = None
        if action is not None:
            action(self, msg, now)
        if new_state is State.TERMINATED and old_state is not State.TERMINATED:
            self._emit(Terminated())

    def _fire_due(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines:
            # The timer min(items(), key=deadline) picks (the first of the
            # earliest), when it is due; without a key call per item.
            due: Input | None = None
            earliest = now
            for timer, deadline in deadlines.items():
                if deadline < earliest or (due is None and deadline == earliest):
                    due, earliest = timer, deadline
            if due is None:
                return
            del deadlines[due]
            self._step(due, None, now)

    def _start_timer(self, timer: Input, duration: float, now: float) -> None:
        """Arm ``timer``; a zero duration fires before the current call returns."""
        self._deadlines[timer] = now + duration

    def _start_retransmit(self, timer: Input, interval: float, now: float) -> None:
        if self._intervals is None:
            self._intervals = {timer: interval}
        else:
            self._intervals[timer] = interval
        self._start_timer(timer, interval, now)

    def _interval(self, timer: Input) -> float:
        """The current interval of a retransmission timer that was started."""
        intervals = self._intervals
        if intervals is None:  # pragma: no cover - started before it fires
            raise LocalProtocolError(f"{timer.name} was never started")
        return intervals[timer]

    def _emit(self, event: TxEvent) -> None:
        if self._events is None:
            self._events = [event]
        else:
            self._events.append(event)

    def _send(self, data: bytes) -> None:
        if self._datagrams is None:
            self._datagrams = [data]
        else:
            self._datagrams.append(data)


class ClientTransaction(Transaction):
    """A client transaction: sends its request at creation, receives responses."""

    __slots__ = ()

    def receive(self, response: Response, now: float) -> None:
        """Feed a response the transport matched to this transaction (see :func:`client_key`).

        Never raises: a response the state does not expect (a late 1xx, a
        retransmitted final response, a status outside 100-699) is absorbed.

        Args:
            response: the parsed response.
            now: the time it arrived.
        """
        self._feed(response_input(response.status, sending=False), response, now)

    def _pass_up(self, response: Response, now: float) -> None:
        self._emit(ResponseReceived(response=response))

    def _retransmit(self, timer: Input, now: float, *, cap: float | None) -> None:
        """Re-send the request and re-arm ``timer`` with twice its interval (capped)."""
        self._send(self._request_bytes)
        interval = 2 * self._interval(timer)
        self._start_retransmit(timer, interval if cap is None else min(interval, cap), now)

    def _time_out(self, timer: Input) -> None:
        self._emit(TimedOut(timer=timer))

    def _forget_request(self) -> None:
        """Keep the request as its bytes only, once a final response arrived.

        From then on the transaction only absorbs retransmitted responses (or
        re-sends an ACK it holds as bytes) for up to 64*T1: the parsed
        request (dozens of objects) held that long would cost memory and
        garbage-collector time; :attr:`request` parses it again if asked.
        """
        self._request = None


class ServerTransaction(Transaction):
    """A server transaction: created by a received request, sends the TU's responses."""

    __slots__ = ("_last_response",)

    def __init__(
        self,
        request: Request,
        state: State,
        *,
        reliable: bool,
        config: TransactionConfig | None,
    ) -> None:
        super().__init__(request, state, reliable=reliable, config=config)
        #: The wire form of the last response sent, re-sent on request retransmissions.
        self._last_response: bytes | None = None
        self._emit(RequestReceived(request=request))

    def receive(self, request: Request, now: float) -> None:
        """Feed a request the transport matched to this transaction (see :func:`server_key`).

        A retransmission of the original request, or an ACK. Never raises: what
        the state does not expect is absorbed.

        Args:
            request: the parsed request.
            now: the time it arrived.
        """
        event = Input.ACK if request.method == b"ACK" else Input.REQUEST
        self._feed(event, request, now)

    def send(self, response: Response, now: float) -> None:
        """Send a response from the TU; pick it up with :meth:`datagrams_to_send`.

        Args:
            response: the response to send.
            now: the current time.

        Raises:
            LocalProtocolError: the state does not allow this response (a second
                final response, anything after Terminated) or its status is not
                100-699.
        """
        event = response_input(response.status, sending=True)
        if event is None:
            raise LocalProtocolError(f"cannot send a response with status {response.status}")
        self._feed(event, response, now)

    def _send_response(self, response: Response, now: float) -> None:
        self._last_response = bytes(response)
        self._send(self._last_response)

    def _resend_response(self, request: Request, now: float) -> None:
        if self._last_response is not None:
            self._send(self._last_response)


def _fail_transport(tx: Transaction, msg: None, now: float) -> None:
    tx._emit(TransportFailed())


def transport_error_transitions(
    states: tuple[State, ...],
) -> dict[tuple[State, Input], tuple[Action | None, State]]:
    """TRANSPORT_ERROR in each of ``states``: inform the TU, terminate (§17.1.4, §17.2.4)."""
    return {(state, Input.TRANSPORT_ERROR): (_fail_transport, State.TERMINATED) for state in states}
