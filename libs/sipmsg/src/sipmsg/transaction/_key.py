"""Transaction keys: which transaction a message belongs to (RFC 3261 §17.1.3, §17.2.3).

The edge keeps its transactions in dicts keyed by these tuples: a received
request is looked up with :func:`server_key`, a received response with
:func:`client_key`. Both read only the top Via, CSeq and (for RFC 2543 peers)
a few more headers, so they are cheap on a lazily parsed message.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from sipmsg._errors import ParseError
from sipmsg.message import Request, Response
from sipmsg.via import Via

__all__ = ["MAGIC_COOKIE", "ClientKey", "ServerKey", "client_key", "server_key"]

#: §8.1.1.7: "The branch ID inserted by an element compliant with this
#: specification MUST always begin with the characters "z9hG4bK"."
MAGIC_COOKIE: Final = b"z9hG4bK"

ServerKey: TypeAlias = tuple[bytes, ...]
"""Opaque and hashable; equal keys mean the same server transaction."""
ClientKey: TypeAlias = tuple[bytes, bytes]
"""(branch, method): equal keys mean the same client transaction."""


def server_key(request: Request, *, method: bytes | None = None) -> ServerKey:
    """The key of the server transaction ``request`` belongs to (§17.2.3).

    With an RFC 3261 branch (magic cookie): "the branch parameter in the request
    is equal to the one in the top Via header field of the request that created
    the transaction, and the sent-by value in the top Via of the request is equal
    to the one in the request that created the transaction, and the method of the
    request matches the one that created the transaction, except for ACK, where
    the method of the request that created the transaction is INVITE."

    Without one (RFC 2543 peers), the Request-URI, From tag, Call-ID, CSeq and
    top Via; the To tag too, except for INVITE and ACK: RFC 3261 matches the
    ACK's To tag against the tag of the *response*, which the INVITE that made
    the key did not carry, so the key leaves it out for both and an ACK finds
    its INVITE's transaction.

    Args:
        request: the received request.
        method: match as if the request had this method; ``method=b"INVITE"``
            finds the INVITE transaction a CANCEL cancels (§9.2: "the
            transaction to be cancelled ... the same matching procedure").

    Returns:
        A hashable key; the request that created the transaction has the same.

    Raises:
        ParseError: a header the key reads (Via, and for RFC 2543 peers From,
            To, Call-ID, CSeq) is missing or malformed.
    """
    if method is None:
        method = request.method
    if method == b"ACK":
        method = b"INVITE"
    top = _top_via(request)
    branch = top.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        # Host names compare case-insensitively (§19.1.4 for the hostport rule).
        port = b"" if top.port is None else b"%d" % top.port
        return (branch, top.host.lower(), port, method)
    cseq = request.cseq
    to_tag = b"" if method == b"INVITE" else (request.to.tag or b"")
    return (
        b"rfc2543",
        request.uri,
        request.from_.tag or b"",
        to_tag,
        request.call_id,
        b"%d" % cseq.seq,
        method,
        bytes(top),
    )


def client_key(message: Request | Response) -> ClientKey | None:
    """The key of the client transaction a message belongs to (§17.1.3).

    For the request the client transaction sends: its top Via branch and
    method. For a response: "the same value of the branch parameter in the top
    Via header field as the branch parameter in the top Via header field of the
    request that created the transaction ... [and] the method parameter in the
    CSeq header field matches the method of the request". The CSeq method keeps
    the responses to a CANCEL apart from those to its INVITE (same branch).

    Args:
        message: the request sent, or a response received.

    Returns:
        The key, or None when the top Via has no branch (no transaction of
        ours sent it; the response is stray).

    Raises:
        ParseError: Via (or, for a response, CSeq) is missing or malformed.
    """
    branch = _top_via(message).branch
    if branch is None:
        return None
    method = message.method if isinstance(message, Request) else message.cseq.method
    return (branch, method)


def _top_via(message: Request | Response) -> Via:
    # Only the top value: a key never reads the Vias below it.
    top = message.top_via
    if top is None:
        # §8.1.1.7: every request carries a Via; §18.1.2 discards responses without one.
        raise ParseError("missing Via header", header="via")
    return top
