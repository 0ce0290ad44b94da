"""sipmesh_bus.wire.Parser without a network: frames whole, split at every byte, many per read."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


_PIECES = st.sampled_from(
    [
        *(b"MSG ", b"HMSG ", b"PING", b"+OK", b"-ERR x", b"INFO {}", b" ", b"\r\n", b"\r", b"\n"),
        *(b"s", b"1", b"_INBOX.x.1", b"0", b"3", b"12", b"-1", b"99", b"NATS/1.0", b"\xff", b"\0"),
    ]
)


def _msg(payload: bytes) -> tuple[bytes, Event]:
    return b"MSG s 1 %d\r\n%b\r\n" % (len(payload), payload), (b"s", b"1", b"", payload, b"")


def _msg_reply(payload: bytes) -> tuple[bytes, Event]:
    frame = b"MSG s 2 _INBOX.x.1 %d\r\n%b\r\n" % (len(payload), payload)
    return frame, (b"s", b"2", b"_INBOX.x.1", payload, b"")


def _hmsg(payload: bytes) -> tuple[bytes, Event]:
    frame = b"HMSG s 3 r 12 %d\r\nNATS/1.0\r\n\r\n%b\r\n" % (12 + len(payload), payload)
    return frame, (b"s", b"3", b"r", payload, b"NATS/1.0\r\n\r\n")


_FRAMES = st.one_of(
    st.binary(max_size=20).map(_msg),
    st.binary(max_size=20).map(_msg_reply),
    st.binary(max_size=20).map(_hmsg),
    st.sampled_from([b"PING", b"PONG", b"+OK", b'INFO {"a":1}']).map(
        lambda line: (line + b"\r\n", (line,))
    ),
)


def _feed_in_chunks(data: bytes, cuts: list[int]) -> tuple[list[Event], bool]:
    """The events of ``data`` fed in reads split at ``cuts``, and whether it raised."""
    parser, events = _parser()
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    try:
        for start, stop in itertools.pairwise(bounds):
            parser.feed(data[start:stop])
    except WireProtocolError:
        return events, True
    return events, False


_CUTS = st.lists(st.integers(min_value=0, max_value=600), max_size=8)


@settings(max_examples=300)
@given(frames=st.lists(_FRAMES, max_size=20), cuts=_CUTS)
def test_parser_valid_frames_in_any_chunks_give_their_events(
    frames: list[tuple[bytes, Event]], cuts: list[int]
) -> None:
    data = b"".join(frame for frame, _ in frames)
    assert _feed_in_chunks(data, cuts) == ([event for _, event in frames], False)


@settings(max_examples=300)
@given(
    pieces=st.lists(
        st.one_of(_FRAMES.map(lambda f: f[0]), _PIECES, st.binary(max_size=8)), max_size=40
    ),
    cuts=_CUTS,
)
def test_parser_any_input_in_any_chunks_gives_frames_or_a_protocol_error(
    pieces: list[bytes], cuts: list[int]
) -> None:
    # Whatever the server sends, the (compiled) parser calls back or raises
    # WireProtocolError, never anything else; and how the bytes are split
    # into reads changes neither the frames read nor the verdict.
    data = b"".join(pieces)
    assert _feed_in_chunks(data, cuts) == _feed_in_chunks(data, [])


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
