"""Envelope.listeners: what the edge advertises per transport, built once, on every envelope."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from sipmesh_bus import schema
from sipmesh_edge.app import advertised_listeners
from sipmesh_edge.bus import BusFailure
from sipmesh_edge.core import EdgeIdentity
from sipmesh_edge.metrics import EdgeMetrics
from sipmesh_edge.outbound import Flow
from sipmesh_edge.sink import EdgeSink, SinkConfig

BOUND = [
    ("udp", "192.0.2.10", 5060),
    ("tcp", "192.0.2.10", 5060),
    ("tls", "192.0.2.10", 5061),
    ("ws", "192.0.2.10", 8080),
    ("wss", "192.0.2.10", 8443),
]


@pytest.mark.parametrize(
    ("bound", "advertised", "expected"),
    [
        (
            BOUND,
            [],
            {
                "udp": "192.0.2.10:5060",
                "tcp": "192.0.2.10:5060",
                "tls": "192.0.2.10:5061",
                "ws": "192.0.2.10:8080",
                "wss": "192.0.2.10:8443",
            },
        ),
        (
            [("udp", "0.0.0.0", 5060), ("tls", "0.0.0.0", 5061)],
            ["sbc.example.com", "198.51.100.1"],
            {"udp": "sbc.example.com:5060", "tls": "sbc.example.com:5061"},
        ),
        ([("udp", "0.0.0.0", 5060), ("tcp", "::", 5060)], [], {}),
        ([("udp", "2001:db8::10", 5060)], [], {"udp": "[2001:db8::10]:5060"}),
        ([("udp", "0.0.0.0", 5060)], ["[2001:db8::1]"], {"udp": "[2001:db8::1]:5060"}),
        (
            [("udp", "192.0.2.10", 5060), ("udp", "192.0.2.11", 5070)],
            [],
            {"udp": "192.0.2.10:5060"},
        ),
    ],
    ids=["bound", "advertised", "wildcard-left-out", "ipv6", "advertised-ipv6", "first-wins"],
)
def test_advertised_listeners(
    bound: list[tuple[str, str, int]], advertised: list[str], expected: dict[str, str]
) -> None:
    assert advertised_listeners(bound, advertised) == expected


class _Bus:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def request(
        self, subject: str, payload: bytes, callback: Callable[[bytes | BusFailure], None]
    ) -> bool:
        self.payloads.append(payload)
        return True

    def publish(self, subject: str, payload: bytes) -> bool:
        self.payloads.append(payload)
        return True


class _Udp:
    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        pass


def _register(n: int) -> bytes:
    return (
        f"REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-r{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=a{n}\r\nTo: <sip:a@example.com>\r\n"
        f"Call-ID: r{n}@198.51.100.7\r\nCSeq: {n} REGISTER\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_sink_every_envelope_carries_the_listeners_built_once() -> None:
    listeners = advertised_listeners(BOUND, [])
    me = EdgeIdentity(edge_id="e1", hosts=frozenset({b"192.0.2.10"}), ports=frozenset({5060}))
    sink = EdgeSink(
        SinkConfig(identity=me, listeners=listeners),
        EdgeMetrics(CollectorRegistry()),
        clock=lambda: 1000.0,
    )
    bus = _Bus()
    sink.bus = bus
    sink.udp[("192.0.2.10", 5060)] = _Udp()
    for n in (1, 2):
        sink.on_message(
            _register(n),
            transport="udp",
            source=("198.51.100.7", 5062),
            local=("192.0.2.10", 5060),
            connection=None,
        )
    envelopes = [schema.decode_envelope(p) for p in bus.payloads]
    assert [e.listeners for e in envelopes] == [listeners, listeners]
    # The same dict object goes into each envelope: nothing rebuilt per message.
    flow = Flow(transport="udp", host="198.51.100.7", port=5062, local=("192.0.2.10", 5060))
    assert sink._envelope(b"x", flow, None).listeners is listeners
