"""The public surface of sipmsg.transaction, pinned (after httpx's exported-members test)."""

from __future__ import annotations

from typing import assert_type

import pytest

import sipmsg.transaction as tx_module
from sipmsg.message import Request, parse
from sipmsg.transaction import (
    ClientKey,
    ClientNonInviteTransaction,
    ServerKey,
    ServerNonInviteTransaction,
    State,
    TransactionConfig,
    TxEvent,
    client_key,
    server_key,
)


def _options() -> Request:
    msg = parse(
        b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: <sip:carol@chicago.example.com>\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710\r\n"
        b"CSeq: 63104 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(msg, Request)
    return msg


OPTIONS = _options()


def test_transaction_exports() -> None:
    assert sorted(tx_module.__all__) == sorted(
        [
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
    )
    for name in tx_module.__all__:
        assert getattr(tx_module, name) is not None


def test_transaction_types() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, now=0.0, reliable=True)
    assert_type(tx.get_timer(), float | None)
    assert_type(tx.datagrams_to_send(), list[bytes])
    assert_type(tx.next_event(), TxEvent | None)
    assert_type(tx.state, State)
    assert_type(client_key(OPTIONS), ClientKey | None)
    assert_type(server_key(OPTIONS), ServerKey)
    server = ServerNonInviteTransaction(OPTIONS, now=0.0, reliable=True)
    assert_type(server.request, Request)


def test_transaction_config_defaults() -> None:
    config = TransactionConfig()
    assert (config.t1, config.t2, config.t4, config.timer_d) == (0.5, 4.0, 5.0, 32.0)
    assert config.timeout == 32.0
    assert config.trying_delay == 0.2


@pytest.mark.parametrize(
    "config",
    [{"t1": 0.0}, {"t2": -1.0}, {"timer_d": 0.0}, {"trying_delay": -0.1}],
    ids=["t1", "t2", "timer_d", "trying_delay"],
)
def test_transaction_config_rejects_nonsense(config: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        TransactionConfig(**config)
