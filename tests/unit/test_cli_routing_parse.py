"""sipmesh.routing_cli: destinations, billing increments and rate decks, parsed without NATS."""

from __future__ import annotations

import pytest

from sipmesh.routing_cli import parse_destination, parse_increments, parse_rate_deck
from sipmesh.users import InputError
from sipmesh_bus.routing import Route


@pytest.mark.parametrize(
    ("text", "uri", "host", "port", "transport"),
    [
        ("10.0.0.5", "sip:10.0.0.5:5060", "10.0.0.5", 5060, "udp"),
        ("10.0.0.5:5080", "sip:10.0.0.5:5080", "10.0.0.5", 5080, "udp"),
        ("sip:PBX.example.com;transport=TCP", "sip:pbx.example.com:5060;transport=tcp",
         "pbx.example.com", 5060, "tcp"),
        ("[2001:db8::1]:5062", "sip:[2001:db8::1]:5062", "2001:db8::1", 5062, "udp"),
        ("2001:db8::1", "sip:[2001:db8::1]:5060", "2001:db8::1", 5060, "udp"),
    ],
)  # fmt: skip
def test_parse_destination(text: str, uri: str, host: str, port: int, transport: str) -> None:
    d = parse_destination(text)
    assert (d.uri.lower(), d.host, d.port, d.transport) == (uri, host, port, transport)


@pytest.mark.parametrize(
    "text", ["", "sip:", "h:0", "h:70000", "h:x", "h;transport=sctp", "user@h"]
)
def test_parse_destination_rejects(text: str) -> None:
    with pytest.raises(InputError, match="bad"):
        parse_destination(text)


@pytest.mark.parametrize(
    ("text", "increments"),
    [("60/60", (60, 60)), ("30/6", (30, 6)), (" 1/1 ", (1, 1)), ("1", (1, 1))],
)
def test_parse_increments(text: str, increments: tuple[int, int]) -> None:
    assert parse_increments(text) == increments


@pytest.mark.parametrize("text", ["0/60", "60/0", "60/", "a/b", "", "-1/1", "60/60/60"])
def test_parse_increments_rejects(text: str) -> None:
    with pytest.raises(InputError, match="bad billing increments"):
        parse_increments(text)


def test_parse_rate_deck_single_increment_means_both() -> None:
    assert parse_rate_deck("49,acme,1,6", source="d.csv")[0].increments == (6, 6)


def test_parse_rate_deck() -> None:
    text = (
        "prefix,carrier,rate,increments,priority\r\n+4930,acme,0.01,30/6,2\n\n# note\n1,bolt,0.5\n"
    )
    assert parse_rate_deck(text, source="d.csv", currency="EUR") == [
        Route(prefix="4930", carrier="acme", rate_per_minute=0.01, increments=(30, 6),
              priority=2, currency="EUR"),
        Route(prefix="1", carrier="bolt", rate_per_minute=0.5, currency="EUR"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("49,acme", "d.csv:1: expected prefix,carrier,rate"),
        ("49,acme,1\n4x,acme,1", "d.csv:2: bad prefix '4x'"),
        ("49,ac me,1", "d.csv:1: bad carrier id 'ac me'"),
        ("49,acme,-1", "d.csv:1: bad rate '-1'"),
        ("49,acme,nan", "d.csv:1: bad rate 'nan'"),
        ("49,acme,1,0/1", "d.csv:1: bad billing increments '0/1'"),
        ("49,acme,1,60/60,high", "d.csv:1: bad priority 'high'"),
        ("49,acme,1\n49,bolt,1\n+49,acme,2", "d.csv:3: prefix 49 of acme is already on line 1"),
        ("1234567890123456,acme,1", "d.csv:1: bad prefix"),
    ],
)
def test_parse_rate_deck_names_the_bad_line(text: str, message: str) -> None:
    with pytest.raises(InputError) as exc_info:
        parse_rate_deck(text, source="d.csv")
    assert str(exc_info.value).startswith(message)
