"""ACKs of 2xx responses that the edge forwards itself, as the router said it would.

An ACK for a 2xx is a transaction of its own (RFC 3261 §17.1.1.3) that a
proxy routes like any in-dialog request. The router routes it by a fixed edit
when the call has no topology hiding and no media anchoring, and then says so
with the 2xx (``schema.SendResponse.ack_route``, an :class:`~sipmesh_bus.schema.AckRoute`;
the router's side is ``sipmesh_router.ackroute``). :class:`AckRoutes` keeps
those hints for 64*T1 (the 2xx is retransmitted that long, §13.3.1.4, and
each retransmission brings an ACK), keyed by the dialog of the 2xx (§13.2.2.4:
the ACK has the INVITE's Call-ID and CSeq number, and the 2xx's From and To
tags). An ACK that matches one exactly (no body, Request-URI and Route values
equal by bytes, arrived over the same transport and socket as the INVITE,
Max-Forwards not 0, no Proxy-Require) is rewritten as the router would
(§16.4: "If the first value in the Route header field indicates this proxy,
the proxy MUST remove that value"; §16.6 step 3 Max-Forwards minus one,
step 8 our Via with the router's stateless branch) and sent to the hint's
target. Anything else returns None, and the ACK goes to the router as before.
"""

from __future__ import annotations

from typing import Final

from sipmesh_bus import schema
from sipmesh_bus.branches import branch_for
from sipmesh_edge.flow import Flow
from sipmesh_edge.wheel import Expiring
from sipmsg import LocalProtocolError, ParseError, Request

__all__ = ["AckRoutes"]

_DEFAULT_MAX_FORWARDS: Final = 70


_TargetFields = tuple[str, str, int, schema.Transport, str | None, str | None, int]
_Hint = tuple[
    str,  # inbound
    tuple[str, int],  # local
    bytes,  # uri
    bytes,  # to_tag
    bytes,  # from_tag
    int,  # cseq
    tuple[bytes, ...],  # routes
    tuple[bytes, ...],  # rest
    bytes,  # via
    _TargetFields,  # target
]
"""A hint as kept: ``schema.AckRoute``'s fields (but ``call_id``, the key), the address the INVITE's
envelope named (its socket, or that socket's reply socket: the router's Via
assumes the ACK's is it).

A tuple of bytes, strings and numbers, not objects: the garbage collector
stops tracking such a tuple once it has examined it, and a hint lives 64*T1
(45,000 of them at 1,200 calls/s; as a class instance holding the decoded
Struct, its lists and its Target, five tracked objects each).
"""


def _kept(hint: schema.AckRoute, local: tuple[str, int]) -> _Hint:
    t = hint.target
    target = (t.uri, t.host, t.port, t.transport, t.connection_id, t.edge_id, t.group)
    return (
        hint.inbound,
        local,
        hint.uri,
        hint.to_tag,
        hint.from_tag,
        hint.cseq,
        tuple(hint.routes),
        tuple(hint.rest),
        hint.via,
        target,
    )


def _target(fields: _TargetFields) -> schema.Target:
    uri, host, port, transport, connection_id, edge_id, group = fields
    return schema.Target(
        uri=uri,
        host=host,
        port=port,
        transport=transport,
        connection_id=connection_id,
        edge_id=edge_id,
        group=group,
    )


class AckRoutes:
    """The ACK hints of recent 2xx responses (see the module docstring).

    Args:
        limit: at most this many hints (past it, new ones are not kept:
            their ACKs go to the router).
    """

    def __init__(self, *, limit: int = 100_000) -> None:
        self._hints: Expiring[bytes, _Hint] = Expiring()
        #: By Call-ID: one hint per call (a second 2xx of a fork replaces the
        #: first, whose ACK then goes to the router); an ACK of no hinted call
        #: costs one lookup. All live ``ttl`` seconds, so Expiring's insertion
        #: order is their expiry order (not the dict's own order: reading a
        #: dict's first key after deleting its first keys walks past every
        #: deleted slot, 10 µs per 2xx at 32,000 hints, 1,000 calls/s).
        self._limit = limit
        self.replies: dict[tuple[str, int], tuple[str, int]] = {}
        #: Shared socket -> this edge's reply socket (``EdgeConfig.reuse_port``):
        #: an INVITE on the one and its ACK on the other (sent to the
        #: Record-Route) got the same address in their envelopes.

    def __len__(self) -> int:
        return len(self._hints)

    def remember(self, hint: schema.AckRoute, flow: Flow, *, now: float, ttl: float) -> None:
        """Keep ``hint`` for ``ttl`` seconds; ``flow`` is the INVITE's server transaction's."""
        self._hints.expire(now)
        if hint.inbound != flow.transport or not hint.routes or len(self._hints) >= self._limit:
            return
        key = hint.call_id
        local = self.replies.get(flow.local, flow.local)
        self._hints.put(key, now + ttl, _kept(hint, local))

    def route(self, req: Request, flow: Flow, now: float) -> tuple[bytes, schema.Target] | None:
        """The ACK ``req`` as the router would forward it, and where; None: ask the router."""
        if not len(self._hints) or req.body:
            return None
        try:
            return self._route(req, flow, now)
        except (ParseError, LocalProtocolError):
            return None  # the router answers malformed input its own way

    def _route(self, req: Request, flow: Flow, now: float) -> tuple[bytes, schema.Target] | None:
        found = self._hints.get(req.call_id, now)
        if found is None:
            return None
        inbound, local, uri, to_tag, from_tag, cseq, hint_routes, rest, via, target = found
        if flow.transport != inbound or req.uri != uri:
            return None
        if self.replies.get(flow.local, flow.local) != local:
            return None
        # §13.2.2.4: the ACK of this 2xx has its dialog's tags and the INVITE's CSeq number.
        if (req.to_tag, req.from_tag, req.cseq.seq) != (to_tag, from_tag, cseq):
            return None
        if req.headers.get_all(b"proxy-require"):
            return None  # §16.3 step 5 is the router's
        routes = tuple(req.headers.get_all(b"route"))
        popped = len(hint_routes)
        if routes[:popped] != hint_routes or routes[popped:] != rest:
            return None
        mf = req.max_forwards
        if mf == 0:
            return None  # the router drops it (§16.3 step 3 answers 483, never to an ACK)
        branch = branch_for(req.via_branch or b"", req.call_id, 0, b"ACK")  # as the router
        value = _DEFAULT_MAX_FORWARDS if mf is None else mf - 1
        return _edited(req, via + branch, rest, b"%d" % value), _target(target)


def _edited(req: Request, via: bytes, rest: tuple[bytes, ...], max_forwards: bytes) -> bytes:
    """The ACK's bytes: ``via`` on top, Route lines out (``rest`` appended), Max-Forwards set.

    In one pass over the header lines, the bytes the router's edits make
    (``remove_header`` of Route, ``with_header`` of the rest, ``replace_header``
    of Max-Forwards, ``prepend_header`` of its Via): every other line as it
    came, Max-Forwards in place of the first such line (appended when there
    was none), ``rest`` as one Route line after the others.

    Raises:
        LocalProtocolError: a value from the hint holds CR or LF.
    """
    route = b", ".join(rest)
    if b"\r" in via or b"\n" in via or b"\r" in route or b"\n" in route:
        raise LocalProtocolError("a header value of the ACK hint holds CR or LF")
    lines = [b"%s %s %s" % (req.method, req.uri, req.version), b"Via: " + via]
    mf_line: bytes | None = b"Max-Forwards: " + max_forwards
    for key, line in zip(req.headers.keys(), req.headers.lines, strict=True):
        if key == b"max-forwards":
            if mf_line is not None:
                lines.append(mf_line)
                mf_line = None
        elif key != b"route":
            lines.append(line)
    if rest:
        lines.append(b"Route: " + route)
    if mf_line is not None:
        lines.append(mf_line)
    lines += (b"", req.body)
    return b"\r\n".join(lines)
