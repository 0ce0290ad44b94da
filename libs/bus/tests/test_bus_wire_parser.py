"""sipmesh_bus.wire.Parser without a network: frames whole, split at every byte, many per read."""

from __future__ import annotations

import pytest

from sipmesh_bus.wire import Parser, Reply, WireProtocolError, encode_headers

Event = tuple[bytes, ...]

STREAM = (
    b'INFO {"server_id":"x","max_payload":1048576}\r\n'
    b"MSG a.b 1 5\r\nhello\r\n"
    b"PING\r\n"
    b"MSG a.b 2 _INBOX.x.1 4\r\nab\r\n\r\n"  # a payload holding CRLF
    b"HMSG _INBOX.x.2 3 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    b"HMSG s 4 r 22 25\r\nNATS/1.0\r\nK: value\r\n\r\nxyz\r\n"
    b"MSG empty 5 0\r\n\r\n"
    b"+OK\r\n"
    b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n"
    b"PONG\r\n"
)
EXPECTED: list[Event] = [
    (b'INFO {"server_id":"x","max_payload":1048576}',),
    (b"a.b", b"1", b"", b"hello", b""),
    (b"PING",),
    (b"a.b", b"2", b"_INBOX.x.1", b"ab\r\n", b""),
    (b"_INBOX.x.2", b"3", b"", b"", b"NATS/1.0 503\r\n\r\n"),
    (b"s", b"4", b"r", b"xyz", b"NATS/1.0\r\nK: value\r\n\r\n"),
    (b"empty", b"5", b"", b"", b""),
    (b"+OK",),
    (b"-ERR 'Permissions Violation for Publish to \"x\"'",),
    (b"PONG",),
]


def _parser() -> tuple[Parser, list[Event]]:
    events: list[Event] = []

    def on_msg(subject: bytes, sid: bytes, reply: bytes, payload: bytes, hdr: bytes) -> None:
        events.append((subject, sid, reply, payload, hdr))

    def on_control(line: bytes) -> None:
        events.append((line,))

    return Parser(on_msg, on_control), events


def test_parser_reads_a_whole_stream_in_one_feed() -> None:
    parser, events = _parser()
    parser.feed(STREAM)
    assert events == EXPECTED


def test_parser_frames_split_at_every_byte_boundary() -> None:
    for cut in range(1, len(STREAM)):
        parser, events = _parser()
        parser.feed(STREAM[:cut])
        parser.feed(STREAM[cut:])
        assert events == EXPECTED, cut


def test_parser_one_byte_at_a_time() -> None:
    parser, events = _parser()
    for i in range(len(STREAM)):
        parser.feed(STREAM[i : i + 1])
    assert events == EXPECTED


def test_parser_keeps_an_incomplete_payload_until_it_is_complete() -> None:
    parser, events = _parser()
    parser.feed(b"MSG s 1 10\r\n01234")
    assert events == []
    parser.feed(b"56789\r\nPING\r\n")
    assert events == [(b"s", b"1", b"", b"0123456789", b""), (b"PING",)]


def test_parser_a_large_payload_in_many_reads_then_more_frames() -> None:
    parser, events = _parser()
    payload = bytes(range(256)) * 400  # CRLF pairs inside, 100 kB
    stream = b"HMSG s 7 r 12 %d\r\nNATS/1.0\r\n\r\n" % (12 + len(payload))
    stream += payload + b"\r\nMSG t 8 2\r\nok\r\nPING\r\n"
    for at in range(0, len(stream), 4096):
        parser.feed(stream[at : at + 4096])
        if at + 4096 < len(stream) - 40:
            assert events == []
    assert events == [
        (b"s", b"7", b"r", payload, b"NATS/1.0\r\n\r\n"),
        (b"t", b"8", b"", b"ok", b""),
        (b"PING",),
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"MSG s 1 -3\r\nabc\r\n",
        b"MSG s 1 x\r\n",
        b"MSG s\r\n",
        b"MSG s 1 3\r\nabcd\r\n",
        b"HMSG s 1 9 3\r\nabc\r\n",
        b"HMSG s 1 3\r\nabc\r\n",
        b"X" * (64 * 1024 + 1),
    ],
    ids=["negative", "not-a-size", "too-few", "no-crlf", "header-over-total", "hmsg-few", "long"],
)
def test_parser_malformed_input_raises_protocol_error(data: bytes) -> None:
    parser, _ = _parser()
    with pytest.raises(WireProtocolError):
        parser.feed(data)


def test_wire_public_surface() -> None:
    from sipmesh_bus import wire

    assert sorted(wire.__all__) == [
        "ConnectionCallback",
        "HeaderBlock",
        "MsgCallback",
        "NO_RESPONDERS",
        "Parser",
        "PayloadTooLargeError",
        "RawMsgCallback",
        "Reply",
        "ReplyCallback",
        "RequestFailure",
        "WireAuthError",
        "WireClient",
        "WireClosedError",
        "WireError",
        "WireProtocolError",
        "WireServerError",
        "encode_headers",
    ]
    assert issubclass(wire.WireAuthError, wire.WireServerError)
    assert all(
        issubclass(e, wire.WireError)
        for e in (wire.WireClosedError, wire.WireProtocolError, wire.PayloadTooLargeError)
    )


def test_encode_headers_builds_the_nats_block() -> None:
    block = encode_headers({"Nats-Msg-Id": "a1", "KV-Operation": "DEL", "X": ""})
    assert block == b"NATS/1.0\r\nNats-Msg-Id: a1\r\nKV-Operation: DEL\r\nX: \r\n\r\n"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("A\r\nB", "v"),
        ("A B", "v"),
        ("A\tB", "v"),
        ("A\x7f", "v"),
        ("A:B", "v"),
        ("", "v"),
        ("Ä", "v"),
        ("A", "x\r\nForged: 1"),
        ("A", "x\ny"),
        ("A", "x\ry"),
    ],
)
def test_encode_headers_refuses_names_and_values_that_break_the_block(
    name: str, value: str
) -> None:
    with pytest.raises(ValueError, match="NATS header"):
        encode_headers({name: value})


def test_reply_reads_status_description_and_values_on_demand() -> None:
    reply = Reply(b"", b"NATS/1.0 503 No Responders\r\n\r\n")
    assert (reply.status, reply.description, reply.header("Status")) == (
        503,
        "No Responders",
        None,
    )
    block = b"NATS/1.0\r\nNats-Sequence: 42\r\nKV-Operation:DEL\r\nX: a\r\nx: b\r\n\r\n"
    reply = Reply(b"v", block)
    assert (reply.status, reply.description) == (None, "")
    assert reply.header("nats-sequence") == "42"
    assert reply.header("KV-Operation") == "DEL"
    assert reply.header("X") == "a"  # the first of two
    assert reply.header("Missing") is None
    plain = Reply(b"{}")
    assert (plain.status, plain.description, plain.header("X")) == (None, "", None)


def test_reply_no_responders_is_an_empty_503() -> None:
    assert Reply(b"", b"NATS/1.0 503\r\n\r\n").no_responders
    assert not Reply(b"busy", b"NATS/1.0 503\r\n\r\n").no_responders  # someone's reply
    assert not Reply(b"", b"NATS/1.0 408 Request Timeout\r\n\r\n").no_responders
    assert not Reply(b"").no_responders
