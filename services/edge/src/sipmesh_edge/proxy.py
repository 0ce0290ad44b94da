"""The client side of the edge's stateful proxy (RFC 3261 §16.6-§16.10): a Forward's branches.

The router decides where a request goes (``schema.Forward``); :class:`Proxy`
runs it. Each target of the lowest ``Target.group`` gets a client transaction
(a :class:`Branch`); together they are one response context (a :class:`Fork`,
§16.7) of the server transaction that asked:

- provisional responses but 100 go upstream at once (§16.7 step 5); the edge
  strips its Via and relays them itself, unless they carry SDP or the Forward
  set ``all_responses`` (topology hiding), then the router rewrites them;
- every distinct 2xx goes to the router and upstream at once (§16.7 step 5,
  RFC 6026), and the other pending INVITE branches are cancelled (§16.7 step
  10: "If a 2xx was forwarded, the proxy SHOULD cancel all other pending
  client transactions"); a retransmitted 2xx replays what went upstream;
- the final response of a non-INVITE request (a BYE's 200) goes upstream
  from the edge itself, like a provisional, unless it carries SDP or the
  Forward set ``all_responses``: the router has nothing to decide there (no
  failover, no call event, no dialog record for a non-INVITE; it would only
  remove our Via), and a call saves a bus round trip;
- a 6xx cancels the other pending branches (§16.7 step 5 "If a 6xx response
  is received, it is not immediately forwarded, but the stateful proxy SHOULD
  cancel all client pending transactions");
- the other finals are kept; once every branch has one, the router is asked
  once with the best (:mod:`sipmesh_edge.forking`), and answers with the
  response to send upstream or a new Forward (failover to the next leg);
- Timer C (§16.8): "If the client transaction has received a provisional
  response, the proxy MUST generate a CANCEL request matching that
  transaction. If the client transaction has not received a provisional
  response, the proxy MUST behave as if the transaction received a 408". The
  edge does both in the second way too: a branch whose Timer C fired counts as
  a 408 at once (the 487 its CANCEL brings is then ignored), so the router sees
  the 408 and can fail over, as Kamailio's ``fr_inv_timer`` does;
- a CANCEL from upstream cancels every pending branch (§16.10); a branch that
  has had no provisional yet is not sent one (§9.1 "If no provisional response
  has been received, the CANCEL request MUST NOT be sent; rather, the client
  MUST wait for the arrival of a provisional response") but counts as a 487 at
  once; the INVITE gets a 487 when the branches are done.

After a CANCEL is sent, a branch that brings no final within 64*T1 counts as a
408 and is destroyed (§9.1: "If there is no final response for the original
request in 64*T1 seconds ... the client SHOULD then consider the original
transaction cancelled and SHOULD destroy the client transaction").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Final

from sipmesh_bus import schema, subjects
from sipmesh_edge import core
from sipmesh_edge.branch import BranchMaker, parse_branch
from sipmesh_edge.flow import Flow
from sipmesh_edge.forking import (
    Branch,
    Cancel,
    Candidate,
    ClientTx,
    Fork,
    Server,
    best_final,
)
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.outbound import Outbound
from sipmesh_edge.wheel import Expiring
from sipmsg import (
    LocalProtocolError,
    ParseError,
    Request,
    Response,
    make_cancel,
    make_response,
    parse,
)
from sipmsg._abnf import split_comma
from sipmsg.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ResponseReceived,
    State,
    Terminated,
    TimedOut,
    TransactionConfig,
    TransportFailed,
    client_key,
)

__all__ = ["Branch", "Cancel", "Fork", "Proxy", "Server"]

_PENDING: Final = frozenset({State.CALLING, State.PROCEEDING})

_Completed = tuple[bytes | None, str, int, tuple[str, int]]
"""A client transaction in Completed, as kept until Timer K or D: for an
INVITE the ACK it sent for its non-2xx final response, with the host, port
and local socket it went to (None and empty for a non-INVITE). A tuple
of bytes, strings and numbers, which the garbage collector stops tracking once
it has seen it: a rejected call's branch waits 32 s (Timer D over UDP) and
kept its transaction, fork and server, eight objects, that long.
"""

Respond = Callable[[Server, Response], None]
Replay = Callable[[Server, bytes], None]
Ask = Callable[[Server, Branch, Response], None]


class Proxy:
    """Runs the Forwards of one edge; see the module docstring.

    Args:
        edge_id: this edge's id (for the Via branches).
        out: the sending half.
        metrics: where to count.
        timers: T1 and friends for the client transactions.
        clock: monotonic time.
        arm: schedules a branch's next deadline (``Branch.deadline``).
        respond: sends a response on a server transaction.
        replay: sends a 2xx that went upstream before (its bytes) again.
        ask: asks the router (``sip.route.response``) about a branch's response.
        internal_error: logs and counts a bug caught where nobody else would.
    """

    def __init__(
        self,
        *,
        edge_id: str,
        out: Outbound,
        metrics: EdgeMetrics,
        timers: TransactionConfig,
        clock: Callable[[], float],
        arm: Callable[[Branch], None],
        respond: Respond,
        replay: Replay,
        ask: Ask,
        internal_error: Callable[[str], None],
    ) -> None:
        self.edge_id = edge_id
        self.timers = timers
        self.clients: dict[tuple[bytes, bytes], Branch] = {}
        #: The client transactions alive, by ``client_key``.
        self._absorbing: Expiring[tuple[bytes, bytes], _Completed] = Expiring()
        #: Non-INVITE client transactions in Completed until Timer K, by key.
        self._acking: Expiring[tuple[bytes, bytes], _Completed] = Expiring()
        #: INVITE client transactions in Completed until Timer D, by key (two
        #: tables: each ends its entries in the order they were put).
        self._out = out
        self._metrics = metrics
        self._clock = clock
        self._arm = arm
        self._respond = respond
        self._replay = replay
        self._ask = ask
        self._internal_error = internal_error
        self._branches = BranchMaker(edge_id)

    def reconfigure(self, edge_id: str, timers: TransactionConfig) -> None:
        """New settings (the app learns its ports after binding)."""
        if edge_id != self.edge_id:
            self._branches = BranchMaker(edge_id)
            self.edge_id = edge_id
        self.timers = timers

    @property
    def alive(self) -> int:
        """The client transactions alive (in Completed, absorbing, too)."""
        return len(self.clients) + len(self._absorbing) + len(self._acking)

    def tick(self, now: float) -> None:
        """End the client transactions in Completed whose Timer K or D fired."""
        self._absorbing.expire(now)
        self._acking.expire(now)

    # -- Forward -------------------------------------------------------------

    def forward(self, server: Server, fwd: schema.Forward) -> None:
        """Start the branches of a Forward's first group (§16.6)."""
        tx = server.tx
        if tx is None or tx.terminated:
            return  # answered with a 2xx already, or gone
        if server.cancelled:
            # §16.10: the caller cancelled while the router decided: no new
            # branches; "the UAS ... SHOULD ... respond to the INVITE with a 487".
            self._respond(server, make_response(tx.request, 487))
            return
        req = parse(fwd.data)
        if not isinstance(req, Request) or not fwd.targets:
            self._metrics.dropped.labels("bad_forward").inc()
            return
        now = self._clock()
        invite = req.method == b"INVITE"
        fork = Fork(
            server=server,
            context=fwd.context,
            all_responses=fwd.all_responses,
            timer_c=fwd.timer_c if invite else math.inf,
        )
        server.fork = fork
        first = min(t.group for t in fwd.targets)
        for target in fwd.targets:
            if target.group == first:
                self._start(fork, req, target, now)
        if not fork.branches:
            # §16.7 step 6: "If there are no final responses in the context,
            # the proxy MUST send a 408 (Request Timeout) response".
            self._respond(server, make_response(tx.request, 408))
            return
        server.expires = max(server.expires, *(b.expires for b in fork.branches))
        # Flushed once all exist: a branch failing at once must not look like
        # the whole fork being done.
        for branch in fork.branches:
            self._flush(branch)

    def _start(self, fork: Fork, req: Request, target: schema.Target, now: float) -> None:
        # Our Via's branch: unique, naming this edge, with the loop hash of the
        # request as received (sipmesh_edge.branch).
        branch_id = self._branches.make(fork.server.transaction.request)
        try:
            branch_req = _for_branch(req, target, branch_id)
        except (ParseError, LocalProtocolError):
            self._metrics.dropped.labels("bad_forward").inc()
            return
        # client_key(branch_req), known without reading the new Via back (§17.1.3).
        key = (branch_id, branch_req.method)
        flow = self._out.target_flow(target, request=True)
        tx: ClientTx
        timer_c = math.inf
        if branch_req.method == b"INVITE":
            tx = ClientInviteTransaction(
                branch_req, now=now, reliable=flow.reliable, config=self.timers
            )
            timer_c = now + fork.timer_c
            expires = timer_c + 2 * self.timers.timeout
        else:
            tx = ClientNonInviteTransaction(
                branch_req, now=now, reliable=flow.reliable, config=self.timers
            )
            expires = now + 2 * self.timers.timeout
        branch = Branch(key=key, tx=tx, flow=flow, fork=fork, expires=expires, timer_c=timer_c)
        self.clients[key] = branch
        fork.branches += (branch,)

    # -- responses -------------------------------------------------------------

    def on_response(self, resp: Response, flow: Flow) -> None:
        """A response from the network (or handed over by another edge)."""
        key = client_key(resp)
        branch = None if key is None else self.clients.get(key)
        if branch is None:
            if key is not None and self._absorbed(key, resp):
                return  # §17.1.1.2, §17.1.2.2: a retransmission, buffered by Completed
            self._stray(resp, flow)
            return
        tx = branch.tx
        if tx is None:
            # Accepted (RFC 6026 §8.4): "any 2xx ... MUST be passed directly to
            # the TU"; anything else is absorbed.
            if 200 <= resp.status <= 299:
                self._on_branch_response(branch, resp)
            return
        tx.receive(resp, self._clock())
        self._flush(branch)

    def _absorbed(self, key: tuple[bytes, bytes], resp: Response) -> bool:
        now = self._clock()
        completed = self._absorbing.get(key, now)
        if completed is None:
            completed = self._acking.get(key, now)
            if completed is None:
                return False
        ack, host, port, local = completed
        if ack is not None and resp.status >= 300:
            # §17.1.1.2: "Any retransmissions of the final response that are
            # received while in the "Completed" state MUST cause the ACK to be
            # re-passed to the transport layer for retransmission".
            self._out.send(Flow(transport="udp", host=host, port=port, local=local), ack)
        return True

    def _absorb_completed(self, branch: Branch, tx: ClientTx) -> bool:
        """Keep a client transaction in Completed as a ``_Completed`` tuple; False if it cannot.

        A non-INVITE one only absorbs (§17.1.2.2: "The "Completed" state
        exists to buffer any additional response retransmissions"); an
        INVITE one re-sends its ACK, kept as bytes, over UDP to a plain
        address (anything else stays a Branch).
        """
        timer = tx.get_timer()
        end = branch.expires if timer is None else min(timer, branch.expires)
        flow = branch.flow
        if not branch.invite:
            table = self._absorbing
            completed: _Completed = (None, "", 0, ("", 0))
        elif (
            isinstance(tx, ClientInviteTransaction)
            and flow.transport == "udp"
            and flow.owner is None
            and flow.connection is None
            and flow.connection_id is None
        ):
            table = self._acking
            completed = (tx.ack, flow.host, flow.port, flow.local)
        else:
            return False
        del self.clients[branch.key]
        fork = branch.fork
        if fork is None or fork.done:
            # As _retire; a fork not done yet may still ask the router with
            # this branch's final (``_ask_best``, which reads ``Branch.fork``):
            # it lets go of its branches once done.
            branch.fork = None
        table.put(branch.key, end, completed)
        return True

    def _stray(self, resp: Response, flow: Flow) -> None:
        """A response with no client transaction here: hand it to its owner, or drop it."""
        info = parse_branch(resp.via_branch or b"")
        owner = None if info is None else info.edge_id
        bus = self._out.bus
        if owner is None or owner == self.edge_id or bus is None or flow.owner:
            self._metrics.dropped.labels("stray_response").inc()
            return
        handoff = schema.EdgeSend(
            data=bytes(resp),
            transport=flow.transport,
            host=flow.host,
            port=flow.port,
            received=True,
        )
        self._metrics.handoffs.labels("response").inc()
        bus.publish(subjects.edge_send(owner), schema.encode(handoff))

    def _on_branch_response(self, branch: Branch, resp: Response) -> None:
        fork = branch.fork
        if fork is None:
            return  # a response to our own CANCEL
        status = resp.status
        if status == 100:
            return  # §16.7 step 5: "Any provisional response other than 100 (Trying)"
        if status < 200:
            self._provisional(fork, branch, resp)
        elif status < 300:
            self._success(fork, branch, resp)
        else:
            self._settle(branch, Candidate(response=resp))

    def _provisional(self, fork: Fork, branch: Branch, resp: Response) -> None:
        if not branch.final and branch.cancel is Cancel.NONE and fork.timer_c < math.inf:
            # §16.7 step 2: "if the response is a provisional response with
            # status codes 101 to 199 inclusive ... the proxy MUST reset timer C".
            now = self._clock()
            branch.timer_c = now + fork.timer_c
            branch.expires = branch.timer_c + 2 * self.timers.timeout
            fork.server.expires = max(fork.server.expires, branch.expires)
        if branch.cancel is Cancel.WANTED:
            self._send_cancel(branch)
        server_tx = fork.server.tx
        if fork.done or branch.final or server_tx is None or server_tx.terminated:
            return
        if fork.rang is None and resp.status in (180, 183):
            fork.rang = self._clock()
        if _router_decides(fork, resp):
            self._ask(fork.server, branch, resp)
        else:
            self._relay(fork.server, resp)

    def _success(self, fork: Fork, branch: Branch, resp: Response) -> None:
        invite = branch.invite
        if not branch.final:
            branch.final = True
            branch.timer_c = math.inf
        tag = resp.to_tag or b""
        sent = fork.server.sent_for(tag)
        if sent is not None:
            self._replay(fork.server, sent)  # a retransmission: replay (RFC 6026)
            return
        if tag in fork.asked_2xx or (fork.done and not invite):
            return
        fork.asked_2xx += (tag,)
        fork.done = True
        fork.finals = ()
        if invite or _router_decides(fork, resp):
            self._ask(fork.server, branch, resp)
        else:
            self._relay(fork.server, resp)
        if invite:
            self._cancel_pending(fork)
            latest = fork.server.fork
            if latest is not None and latest is not fork:
                # A late 2xx of a branch given up before a failover: the
                # branches of the next leg are "other pending" ones too.
                latest.done = True
                latest.finals = ()
                self._cancel_pending(latest)
                latest.branches = ()
        fork.branches = ()

    def _settle(self, branch: Branch, candidate: Candidate) -> None:
        """Record a branch's non-2xx final; ask the router with the best once all are in."""
        if branch.final:
            return
        branch.final = True
        branch.timer_c = math.inf
        fork = branch.fork
        if fork is None or fork.done:
            return  # a late final: nothing reads it
        fork.finals += ((branch, candidate),)
        if candidate.response.status >= 600 and branch.invite:
            self._cancel_pending(fork)  # may settle other branches, and finish the fork
        if not fork.done and all(b.final for b in fork.branches):
            fork.done = True
            fork.branches = ()
            self._ask_best(fork)

    def _ask_best(self, fork: Fork) -> None:
        server = fork.server
        finals, fork.finals = fork.finals, ()
        index, best = best_final([c for _, c in finals])
        branch = finals[index][0]
        if server.cancelled and best.status < 600:
            # §16.10: the caller cancelled; what it hears is the 487.
            received = [(b, c) for b, c in finals if c.response.status == 487]
            if received:
                branch, best = received[0][0], received[0][1].response
            else:
                best = make_response(branch.transaction.request, 487)
        if not branch.invite and not _router_decides(fork, best):
            self._relay(server, best)
            return
        self._ask(server, branch, best)

    def _relay(self, server: Server, resp: Response) -> None:
        try:
            upstream = _without_top_via(resp)
        except ParseError:
            self._metrics.dropped.labels("bad_response").inc()
            return
        self._respond(server, upstream)

    # -- CANCEL ----------------------------------------------------------------

    def cancel(self, server: Server) -> bool:
        """A CANCEL from upstream (§16.10): cancel every pending branch of ``server``.

        Returns:
            False when nothing is pending (the caller answers the INVITE 487 itself).
        """
        fork = server.fork
        if fork is None or fork.done:
            return False
        self._cancel_pending(fork)
        return True

    def _cancel_pending(self, fork: Fork) -> None:
        """CANCEL every branch that has no final response yet (§9.1 waits for a provisional)."""
        pending = [
            b for b in fork.branches
            if b.cancel is Cancel.NONE and b.tx is not None and b.tx.state in _PENDING
            and self.clients.get(b.key) is b
        ]  # fmt: skip
        for branch in pending:
            if branch.transaction.state is State.PROCEEDING:
                self._send_cancel(branch)
                continue
            # No provisional yet, so no CANCEL yet; rather than wait up to
            # Timer B for it, the branch counts as a 487 now (its first
            # provisional, if any, gets the CANCEL).
            branch.cancel = Cancel.WANTED
            terminated = make_response(branch.transaction.request, 487)
            self._settle(branch, Candidate(response=terminated, local=True))

    def _send_cancel(self, branch: Branch) -> None:
        now = self._clock()
        branch.cancel = Cancel.SENT
        if not branch.final:
            branch.timer_c = min(branch.timer_c, now + self.timers.timeout)
            self._arm(branch)
        try:
            cancel = make_cancel(branch.transaction.request)
        except ParseError:
            return
        key = client_key(cancel)
        if key is None:
            return
        tx = ClientNonInviteTransaction(
            cancel, now=now, reliable=branch.flow.reliable, config=self.timers
        )
        client = Branch(key=key, tx=tx, flow=branch.flow, fork=None, expires=branch.expires)
        self.clients[key] = client
        self._flush(client)

    # -- timers and transport ----------------------------------------------------

    def fire(self, branch: Branch, now: float) -> None:
        """A deadline of ``branch`` is due (called from the sink's timer heap)."""
        if self.clients.get(branch.key) is not branch:
            return
        if now >= branch.expires:
            self._retire(branch)
            return
        if now >= branch.timer_c:
            self._timer_c(branch, now)
            if self.clients.get(branch.key) is not branch:
                return
        elif now < branch.deadline():
            # Nothing is due (a deadline moved later without a new arm; the
            # sink skips the entries an arm superseded): only the next armed.
            self._arm(branch)
            return
        tx = branch.tx
        if tx is None:
            self._arm(branch)  # Accepted: only ``expires`` (Timer M) is left
            return
        tx.handle_timer(now)
        self._flush(branch)

    def _timer_c(self, branch: Branch, now: float) -> None:
        branch.timer_c = math.inf
        timeout = Candidate(response=make_response(branch.transaction.request, 408), local=True)
        given_up = branch.cancel is Cancel.SENT
        if given_up:
            # The CANCEL brought no final in 64*T1 (§9.1): give the branch up.
            del self.clients[branch.key]
        elif branch.transaction.state is State.PROCEEDING:
            self._send_cancel(branch)
        else:
            branch.cancel = Cancel.WANTED
        self._settle(branch, timeout)
        fork = branch.fork
        if given_up and (fork is None or fork.done):
            branch.fork = None  # settled: see _retire

    def transport_failed(self, branch: Branch) -> None:
        """A send started earlier failed (§18.4): tell the transaction."""
        try:
            tx = branch.tx
            if tx is None:
                return  # Accepted sends nothing: an error of an earlier send, now moot
            tx.handle_transport_error(self._clock())
            if self.clients.get(branch.key) is branch:
                self._flush(branch)
        except Exception:  # called back from a task: nobody above would catch it
            self._internal_error("transport error")

    def _flush(self, branch: Branch) -> None:
        tx = branch.tx
        if tx is None:
            self._arm(branch)
            return
        now = self._clock()
        datagrams = tx.datagrams_to_send()
        if datagrams:
            failed = functools.partial(self.transport_failed, branch)
            for data in datagrams:
                if not self._out.send(branch.flow, data, failed):
                    tx.handle_transport_error(now)
        while (event := tx.next_event()) is not None:
            if isinstance(event, ResponseReceived):
                self._on_branch_response(branch, event.response)
            elif isinstance(event, TimedOut | TransportFailed):
                # §16.7 step 6 and §16.8: a timeout counts as a 408, a
                # transport failure as a 503, for choosing the best response.
                status = 408 if isinstance(event, TimedOut) else 503
                if branch.key[1] != b"ACK":
                    response = make_response(tx.request, status)
                    self._settle(branch, Candidate(response=response, local=True))
            elif isinstance(event, Terminated):
                if self.clients.get(branch.key) is branch:
                    self._retire(branch)
                return
        if self.clients.get(branch.key) is branch:
            state = tx.state
            if state is State.ACCEPTED:
                # RFC 6026 §8.4: in Accepted the INVITE client transaction only
                # passes 2xx up until Timer M; the branch does that itself from
                # now on (``on_response``), with Timer M as its end.
                timer_m = tx.get_timer()
                if timer_m is not None:
                    branch.expires = min(branch.expires, timer_m)
                branch.tx = None
                branch.pack()
            elif state is State.COMPLETED and self._absorb_completed(branch, tx):
                return
        self._arm(branch)

    def _retire(self, branch: Branch) -> None:
        """Take a finished client transaction out of the table, and out of its fork.

        A fork and its branches point at each other (``Fork.branches``,
        ``Branch.fork``): left so, reference counting never frees a finished
        call (see the sink's ``_retire``). A branch out of the table gets no
        more responses; the fork keeps it in ``branches`` and ``finals`` for
        the best-response choice until done, and the router is then asked
        with the chosen branch's fork context: a branch lets go of a fork not
        done yet only when the fork lets go of it (``Fork.branches``).
        """
        del self.clients[branch.key]
        fork = branch.fork
        if fork is None or fork.done:
            branch.fork = None


def _router_decides(fork: Fork, resp: Response) -> bool:
    """Whether a response the edge could relay itself goes to the router instead.

    ``all_responses`` (topology hiding) and SDP (the media anchor rewrites it)
    need the router; see the module docstring for which responses are asked
    about whatever this says.
    """
    return fork.all_responses or core.carries_sdp(resp)


def _without_top_via(resp: Response) -> Response:
    """The response a proxy passes upstream: its own (top) Via value removed.

    §16.7 step 3: "The proxy removes the topmost Via header field value from
    the response." As :func:`core.without_top_via`, but by editing the one
    header line that holds it (``replace_line``/``remove_line``: every other
    line stays as it came, nothing is parsed again).

    Raises:
        ParseError: no Via is left to send it to (it was meant for us), or a
            Via line is malformed.
    """
    keys = resp.headers.keys()
    index = _via_index(keys)
    rest = _split_via_line(resp.headers[index][2])[1:]
    if rest:
        return resp.replace_line(index, b", ".join(rest))
    if keys.count(b"via") < 2:
        raise ParseError("response has no Via left to send it to", header="via")
    return resp.remove_line(index)


def _via_index(keys: tuple[bytes, ...]) -> int:
    """The index of the first Via line (the top Via value is its first)."""
    try:
        return keys.index(b"via")
    except ValueError:
        raise ParseError("missing Via header", header="via") from None


def _for_branch(req: Request, target: schema.Target, branch: bytes) -> Request:
    """The request for one target: its Request-URI, and this edge's branch on the top Via.

    Built from ``req``'s header lines without parsing the whole message again:
    only the line of the top Via changes (its branch parameter), by
    ``Headers.replace_line``; every other line stays as it came.

    Raises:
        ParseError: the top Via is malformed.
    """
    uri = target.uri.encode() or req.uri
    headers = req.headers
    index = _via_index(headers.keys())
    values = _split_via_line(headers[index][2])
    top = _with_branch(values[0], req.via_branch, branch)
    if top is None:
        top = bytes(req.via[0].with_param(b"branch", branch))
    line = b", ".join([top, *values[1:]]) if len(values) > 1 else top
    return Request(
        method=req.method,
        uri=uri,
        headers=headers.replace_line(index, line),
        body=req.body,
        version=req.version,
    )


def _split_via_line(line: bytes) -> list[bytes]:
    """The Via values of one header line (most lines hold one)."""
    if b"," not in line:
        return [line]
    try:
        return split_comma(line)
    except ParseError as exc:
        raise ParseError(f"bad Via header: {exc.reason}", header="via") from exc


def _with_branch(top: bytes, old: bytes | None, new: bytes) -> bytes | None:
    """``top`` (one Via value) with its branch ``old`` spliced to ``new``; None if not plain."""
    if not old or b'"' in top:
        return None  # a quoted parameter value could hold the marker
    marker = b";branch=" + old
    at = top.find(marker)
    end = at + len(marker)
    if at < 0 or (end < len(top) and top[end : end + 1] not in _PARAM_END):
        return None
    return top[: at + 8] + new + top[end:]


_PARAM_END: Final = frozenset({b";", b" ", b"\t"})
