"""The four RFC 3261 §17 transaction state machines, with the RFC 6026 corrections.

Sans-I/O: the caller feeds received messages (``receive``), the TU's responses
(``send``, server side), timer expiries (``handle_timer`` at ``get_timer()``) and
transport errors, then collects ``datagrams_to_send()`` and ``next_event()``.
"""

from __future__ import annotations

from ._common import (
    AckReceived,
    ClientTransaction,
    Input,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    State,
    Terminated,
    TimedOut,
    Transaction,
    TransactionConfig,
    TransportFailed,
    TxEvent,
)
from ._key import MAGIC_COOKIE, ClientKey, ServerKey, client_key, server_key
from .client_invite import AckFactory, ClientInviteTransaction
from .client_non_invite import ClientNonInviteTransaction
from .server_invite import ServerInviteTransaction, TryingFactory
from .server_non_invite import ServerNonInviteTransaction

__all__ = [
    "MAGIC_COOKIE",
    "AckFactory",
    "AckReceived",
    "ClientInviteTransaction",
    "ClientKey",
    "ClientNonInviteTransaction",
    "ClientTransaction",
    "Input",
    "RequestReceived",
    "ResponseReceived",
    "ServerInviteTransaction",
    "ServerKey",
    "ServerNonInviteTransaction",
    "ServerTransaction",
    "State",
    "Terminated",
    "TimedOut",
    "Transaction",
    "TransactionConfig",
    "TransportFailed",
    "TryingFactory",
    "TxEvent",
    "client_key",
    "server_key",
]
