"""The best final response of a fork (RFC 3261 §16.7 steps 6 and 7): pure functions.

When every branch of one ``Forward`` group has a final response and none was a
2xx (a 2xx is passed on at once), the edge asks the router once, with the
response :func:`best_final` picks:

- §16.7 step 6: "It MUST choose from the 6xx class responses if any exist in
  the context. If no 6xx class responses are present, the proxy SHOULD choose
  from the lowest response class stored in the response context. The proxy
  MAY select any response within that chosen class. The proxy SHOULD give
  preference to responses that provide information affecting resubmission of
  this request, such as 401, 407, 415, 420, and 484 if the 4xx class is chosen."
  Within a class this module prefers, in order: those five codes; a response
  a UA sent over one the edge made up (a timeout's 408, a transport failure's
  503); the one received first. So 486 then 404 gives 486, 404 then 486 gives
  404, and a 486 beats the 408 of a branch that never answered (the caller
  hears "busy", not "timeout").
- "If the only response that was received is a 503, the proxy SHOULD generate
  a 500 response and forward that upstream": a chosen 503 becomes a 500 ("a
  503 means that the proxy knows it cannot service any requests").
- §16.7 step 7: "If the selected response is a 401 (Unauthorized) or 407
  (Proxy Authentication Required), the proxy MUST collect any WWW-Authenticate
  and Proxy-Authenticate header field values from all other 401 (Unauthorized)
  and 407 (Proxy Authentication Required) responses received so far in this
  response context and add them to this response without modification".

The records :class:`~sipmesh_edge.proxy.Proxy` keeps for a fork live here too:
the server transaction (:class:`Server`), the response context
(:class:`Fork`) and its client transactions (:class:`Branch`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from typing import Final

from sipmesh_edge.flow import Flow, Packed, pack, unpack
from sipmsg import LocalProtocolError, ParseError, Response, parse
from sipmsg.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
)

__all__ = [
    "Branch",
    "Cancel",
    "Candidate",
    "ClientTx",
    "Fork",
    "Server",
    "ServerTx",
    "best_final",
    "with_challenges",
]

_RESUBMISSION: Final = frozenset({401, 407, 415, 420, 484})
_CHALLENGES: Final = (
    (b"WWW-Authenticate", "www-authenticate"),
    (b"Proxy-Authenticate", "proxy-authenticate"),
)


class Candidate:
    """One branch's final response, in the order they arrived.

    (A plain class, not a frozen dataclass: mypyc compiles a written
    ``__init__``, where a dataclass's generated one runs interpreted.)
    """

    __slots__ = ("local", "response")

    def __init__(self, *, response: Response, local: bool = False) -> None:
        self.response: Final = response
        self.local: Final = local
        #: Made up by the edge (Timer B/C 408, transport failure 503), not sent by a UA.


def best_final(candidates: Sequence[Candidate]) -> tuple[int, Response]:
    """The response to pass upstream for a fork whose branches all failed.

    Args:
        candidates: the non-2xx final responses, in arrival order (not empty).

    Returns:
        The index of the chosen candidate, and the response to send upstream
        (the 503 to 500 conversion and the challenge merge applied).

    Raises:
        ValueError: ``candidates`` is empty (a caller bug, not wire input).
    """
    if not candidates:
        raise ValueError("no final responses to choose from")
    index = min(range(len(candidates)), key=lambda i: _rank(candidates[i], i))
    best = candidates[index].response
    if best.status in (401, 407):
        others = [c.response for i, c in enumerate(candidates) if i != index]
        best = with_challenges(best, others)
    elif best.status == 503:
        best = _as_500(best)
    return index, best


def with_challenges(best: Response, others: Sequence[Response]) -> Response:
    """``best`` with the WWW-/Proxy-Authenticate values of the other 401/407s appended (step 7)."""
    for other in others:
        if other.status not in (401, 407):
            continue
        for name, key in _CHALLENGES:
            for value in other.headers.get_lines(key):
                best = best.with_header(name, value)
    return best


def _rank(candidate: Candidate, arrival: int) -> tuple[int, int, int, int]:
    status = candidate.response.status
    klass = 0 if status >= 600 else status // 100
    return (klass, 0 if status in _RESUBMISSION else 1, int(candidate.local), arrival)


def _as_500(resp: Response) -> Response:
    data = bytes(resp)
    end = data.find(b"\r\n")
    out = parse(b"SIP/2.0 500 Server Internal Error" + data[end:])
    if not isinstance(out, Response):  # pragma: no cover - a status line stays a status line
        raise ParseError("not a response after rewriting the status line")
    return out


ServerTx = ServerInviteTransaction | ServerNonInviteTransaction
ClientTx = ClientInviteTransaction | ClientNonInviteTransaction


class Server:
    """A server transaction of the edge and what the proxy keeps for it.

    (Plain classes, not dataclasses, here: mypyc compiles a written
    ``__init__``, where a dataclass's generated one runs interpreted.)
    """

    __slots__ = (
        "_dest",
        "_flow",
        "_packed_dest",
        "_packed_flow",
        "answered",
        "armed",
        "cancelled",
        "expires",
        "fork",
        "key",
        "kind",
        "sent_2xx",
        "started",
        "tx",
    )

    def __init__(
        self,
        *,
        key: tuple[bytes, ...],
        tx: ServerTx,
        flow: Flow,
        expires: float,
        started: float = 0.0,
    ) -> None:
        self.key = key
        self.tx: ServerTx | None = tx
        #: None once an INVITE transaction is in Accepted (RFC 6026 §8.7) and
        #: its responses go to a plain UDP destination (``dest``): all it has
        #: left to do is absorb retransmissions of the INVITE and pass the
        #: TU's 2xx to the transport until Timer L, which the sink does itself
        #: (Timer L is then ``expires``); not kept 64*T1 for the garbage
        #: collector to walk.
        self._flow: Flow | None = flow
        self._packed_flow: Packed | None = None
        self._dest: Flow | None = None
        self._packed_dest: Packed | None = None
        self.expires = expires
        self.armed = math.inf
        self.fork: Fork | None = None
        #: The response context of the latest Forward (a failover replaces it).
        self.cancelled = False
        #: A CANCEL from upstream matched this INVITE (§16.10).
        self.sent_2xx: tuple[tuple[bytes, bytes], ...] = ()
        #: What went upstream for each 2xx, as (To tag, bytes): a retransmission
        #: replays it. A tuple of bytes: once examined, the garbage collector
        #: stops tracking it (an INVITE's server transaction lives 64*T1 more).
        self.started = started
        #: When the request arrived (the sink's clock), for the transaction histogram.
        self.kind = "service"
        #: ``local`` when the edge answered it itself; ``proxied`` once forwarded.
        self.answered = False
        #: A final response was sent (observed in the histogram once).

    @property
    def flow(self) -> Flow:
        """Where the request came from."""
        flow = self._flow
        if flow is None:
            packed = self._packed_flow
            if packed is None:  # pragma: no cover - one of the two is always set
                raise LocalProtocolError("a server without its flow")
            return unpack(packed)
        return flow

    @property
    def dest(self) -> Flow | None:
        """Where responses go, once known (the Via's address, or a ``SendResponse.target``)."""
        dest = self._dest
        if dest is None and self._packed_dest is not None:
            return unpack(self._packed_dest)
        return dest

    @dest.setter
    def dest(self, dest: Flow | None) -> None:
        self._dest = dest
        self._packed_dest = None

    def pack(self) -> None:
        """Keep ``flow`` and ``dest`` as tuples (:func:`~sipmesh_edge.flow.pack`) where they can be.

        For a transaction that lingers: a Flow is one more object the garbage
        collector walks; the properties build an equal one when asked.
        """
        flow = self._flow
        packed = None if flow is None else pack(flow)
        if packed is not None:
            self._packed_flow, self._flow = packed, None
        dest = self._dest
        packed = None if dest is None else pack(dest)
        if packed is not None:
            self._packed_dest, self._dest = packed, None

    def deadline(self) -> float:
        tx = self.tx
        timer = None if tx is None else tx.get_timer()
        return self.expires if timer is None else min(timer, self.expires)

    @property
    def transaction(self) -> ServerTx:
        """The server transaction, on the paths an INVITE in Accepted never takes.

        Raises:
            LocalProtocolError: the INVITE is in Accepted (a bug of the caller).
        """
        tx = self.tx
        if tx is None:
            raise LocalProtocolError("the INVITE is in Accepted: no transaction kept")
        return tx

    def sent_for(self, tag: bytes) -> bytes | None:
        """The 2xx with To tag ``tag`` that went upstream, or None."""
        for sent_tag, data in self.sent_2xx:
            if sent_tag == tag:
                return data
        return None


class Cancel(enum.Enum):
    """Where a branch is with its CANCEL."""

    NONE = enum.auto()
    WANTED = enum.auto()
    #: To be sent when the first provisional arrives (§9.1).
    SENT = enum.auto()


class Branch:
    """One client transaction: a branch of a Fork, or a CANCEL the edge sent."""

    __slots__ = (
        "_flow",
        "_packed_flow",
        "armed",
        "cancel",
        "expires",
        "final",
        "fork",
        "invite",
        "key",
        "timer_c",
        "tx",
    )

    def __init__(
        self,
        *,
        key: tuple[bytes, bytes],
        tx: ClientTx,
        flow: Flow,
        fork: Fork | None,
        expires: float,
        timer_c: float = math.inf,
    ) -> None:
        self.key = key
        self.tx: ClientTx | None = tx
        #: None once an INVITE branch is in Accepted (RFC 6026 §8.4): all the
        #: transaction has left to do is pass further 2xx up until Timer M,
        #: which the branch does itself (``Proxy.on_response``; Timer M is
        #: then ``expires``), so the transaction and its timer table are not
        #: kept 64*T1 for the garbage collector to walk.
        self.invite = key[1] == b"INVITE"
        #: The request is an INVITE (read here, not from ``tx.request``: a
        #: client transaction keeps its request as bytes after a final response).
        self._flow: Flow | None = flow
        self._packed_flow: Packed | None = None
        self.fork = fork
        #: None for the edge's own CANCEL transactions.
        self.expires = expires
        #: When the entry is dropped whatever its state (a safety net).
        self.armed = math.inf
        self.timer_c = timer_c
        #: §16.6 step 11 Timer C of an INVITE branch; after a CANCEL, the 64*T1 guard.
        self.final = False
        #: The branch has its final response for the fork (received, or made
        #: up); a non-2xx one is in ``Fork.finals`` until the fork is done.
        self.cancel = Cancel.NONE

    @property
    def flow(self) -> Flow:
        """Where the request goes (and its responses came from)."""
        flow = self._flow
        if flow is None:
            packed = self._packed_flow
            if packed is None:  # pragma: no cover - one of the two is always set
                raise LocalProtocolError("a branch without its flow")
            return unpack(packed)
        return flow

    def pack(self) -> None:
        """Keep ``flow`` as a tuple where it can be (as :meth:`Server.pack`)."""
        flow = self._flow
        packed = None if flow is None else pack(flow)
        if packed is not None:
            self._packed_flow, self._flow = packed, None

    def deadline(self) -> float:
        end = min(self.timer_c, self.expires)
        tx = self.tx
        if tx is None:
            return end
        timer = tx.get_timer()
        return end if timer is None else min(timer, end)

    @property
    def transaction(self) -> ClientTx:
        """The client transaction, on the paths a branch in Accepted never takes.

        Raises:
            LocalProtocolError: the branch is in Accepted (a bug of the caller).
        """
        tx = self.tx
        if tx is None:
            raise LocalProtocolError("the INVITE branch is in Accepted: no transaction kept")
        return tx


class Fork:
    """The response context (§16.7) of one Forward: its parallel branches."""

    __slots__ = (
        "all_responses",
        "asked_2xx",
        "branches",
        "context",
        "done",
        "finals",
        "rang",
        "server",
        "timer_c",
    )

    def __init__(
        self, *, server: Server, context: bytes | None, all_responses: bool, timer_c: float
    ) -> None:
        self.server = server
        self.context = context
        self.all_responses = all_responses
        self.timer_c = timer_c
        self.branches: tuple[Branch, ...] = ()
        #: Until the fork is done: then nobody reads them (emptied, so that
        #: the fork and its live branches do not hold each other).
        self.finals: tuple[tuple[Branch, Candidate], ...] = ()
        #: Non-2xx finals in arrival order, until the fork is done (then
        #: nobody reads them: emptied, not to keep their responses 64*T1).
        self.done = False
        #: A 2xx went to the router, or the best final did: nothing else goes but 2xx.
        self.asked_2xx: tuple[bytes, ...] = ()
        #: To tags of the 2xx the router was asked about (few: a tuple, which
        #: the garbage collector stops tracking, not a set).
        self.rang: float | None = None
        #: When (``Proxy`` clock) the first 180/183 went upstream: ``Envelope.ringing_at``.
