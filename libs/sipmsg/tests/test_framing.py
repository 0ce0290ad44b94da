"""Tests for sipmsg.framing: SIP over TCP/TLS stream framing."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipmsg import LocalProtocolError, ParseError
from sipmsg.framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    PING,
    PONG,
    FramingEvent,
    KeepAlive,
    MessageFramed,
    StreamFramer,
)

OPTIONS = (
    b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    b"Call-ID: a@b\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
BODY = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n\r\n\r\ns=-\r\n"  # holds a CRLFCRLF
INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK2\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)
COMPACT = b"SIP/2.0 200 OK\r\nv: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK2\r\nL :  5\r\n\r\nhello"
FOLDED = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length:\r\n \t 3\r\n\r\nabc"


def tr(data: bytes, expected: list[FramingEvent], *, max_message_size: int = 65535) -> None:
    """Feed ``data`` three ways (after h11's tr()) and check the events each time."""
    # Whole.
    framer = StreamFramer(max_message_size)
    framer.feed(data)
    assert list(framer) == expected
    assert framer.pending_bytes == 0
    # One byte at a time.
    framer = StreamFramer(max_message_size)
    events: list[FramingEvent] = []
    for i in range(len(data)):
        framer.feed(data[i : i + 1])
        events.extend(framer)
    assert events == expected
    # With trailing data: the start of the next message stays buffered.
    framer = StreamFramer(max_message_size)
    framer.feed(data + OPTIONS[:20])
    assert list(framer) == expected
    assert framer.pending_bytes == 20
    framer.feed(OPTIONS[20:])
    assert framer.next_event() == MessageFramed(data=OPTIONS)


def msg(data: bytes) -> MessageFramed:
    return MessageFramed(data=data)


PING_EVENT = KeepAlive(pong_needed=True)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(OPTIONS, [msg(OPTIONS)], id="no-body"),
        pytest.param(INVITE, [msg(INVITE)], id="body-with-crlfcrlf"),
        pytest.param(COMPACT, [msg(COMPACT)], id="compact-l-response"),
        pytest.param(FOLDED, [msg(FOLDED)], id="folded-content-length"),
        pytest.param(
            OPTIONS + INVITE + COMPACT, [msg(OPTIONS), msg(INVITE), msg(COMPACT)], id="three"
        ),
        pytest.param(PING, [PING_EVENT], id="ping"),
        pytest.param(PING + PING, [PING_EVENT, PING_EVENT], id="two-pings"),
        pytest.param(
            PING + OPTIONS + PING + INVITE + PING,
            [PING_EVENT, msg(OPTIONS), PING_EVENT, msg(INVITE), PING_EVENT],
            id="pings-interleaved",
        ),
        pytest.param(PONG + OPTIONS, [msg(OPTIONS)], id="pong-skipped"),
        pytest.param(
            PONG + PING + INVITE, [PING_EVENT, msg(INVITE)], id="crlf-before-ping-skipped"
        ),
        pytest.param(b"", [], id="empty"),
    ],
)
def test_stream_framer_frames(data: bytes, expected: list[FramingEvent]) -> None:
    tr(data, expected)


def test_stream_framer_lone_crlf_waits_for_more() -> None:
    framer = StreamFramer()
    framer.feed(PONG)
    assert framer.next_event() is None
    framer.feed(b"\r")
    assert framer.next_event() is None
    framer.feed(b"\n")
    assert framer.next_event() == PING_EVENT
    assert framer.pending_bytes == 0


def test_stream_framer_incomplete_body_waits() -> None:
    framer = StreamFramer()
    framer.feed(INVITE[:-1])
    assert framer.next_event() is None
    framer.feed(INVITE[-1:])
    assert framer.next_event() == msg(INVITE)
    assert framer.next_event() is None


def test_stream_framer_case_insensitive_name_and_leading_zeros() -> None:
    data = b"SIP/2.0 180 Ringing\r\ncOnTeNt-LeNgTh: 002\r\n\r\nok"
    tr(data, [msg(data)])


def test_stream_framer_equal_duplicate_content_length_accepted() -> None:
    data = b"BYE sip:a@b SIP/2.0\r\nContent-Length: 2\r\nl: 02\r\n\r\nok"
    tr(data, [msg(data)])


def test_stream_framer_any_sip_version_is_framed() -> None:
    # The parser answers 505; framing must not hide the message from it.
    data = b"OPTIONS sip:a@b SIP/3.0\r\nContent-Length: 0\r\n\r\n"
    tr(data, [msg(data)])


def test_stream_framer_status_line_without_reason() -> None:
    data = b"SIP/2.0 200\r\nl: 0\r\n\r\n"
    tr(data, [msg(data)])


def test_stream_framer_iter_drains_buffer() -> None:
    framer = StreamFramer()
    framer.feed(OPTIONS * 3)
    assert list(framer) == [msg(OPTIONS)] * 3
    assert list(framer) == []


def raises_parse_error(
    data: bytes, *, max_message_size: int = 65535, byte_by_byte: bool = False
) -> ParseError:
    framer = StreamFramer(max_message_size)
    chunks = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]

    def feed_all() -> None:
        for chunk in chunks:
            framer.feed(chunk)
            list(framer)

    with pytest.raises(ParseError) as exc_info:
        feed_all()
    return exc_info.value


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(
    ("data", "header"),
    [
        pytest.param(
            b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n", "content-length", id="no-cl"
        ),
        pytest.param(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", "content-length", id="no-headers"),
        pytest.param(b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n", "content-length", id="neg-cl"),
        pytest.param(b"OPTIONS sip:a@b SIP/2.0\r\nl: 1 2\r\n\r\n", "content-length", id="cl-space"),
        pytest.param(b"OPTIONS sip:a@b SIP/2.0\r\nl:\r\n\r\n", "content-length", id="cl-empty"),
        pytest.param(
            b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab",
            "content-length",
            id="cl-conflict",
        ),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None, id="http"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01", None, id="tls-hello"),
        pytest.param(b"hello world\r\n", None, id="two-words"),
        pytest.param(b"SIP/2.0 2000 OK\r\n", None, id="bad-status"),
        pytest.param(b"OPTIONS  sip:a@b SIP/2.0\r\n", None, id="double-space"),
        pytest.param(b"\r\n\r\r\n", None, id="cr-after-crlf"),
        pytest.param(b"\n\nOPTIONS sip:a@b SIP/2.0\r\n", None, id="bare-lf"),
    ],
)
def test_stream_framer_rejects_with_400(
    data: bytes, header: str | None, *, byte_by_byte: bool
) -> None:
    error = raises_parse_error(data, byte_by_byte=byte_by_byte)
    assert error.status_hint == 400
    assert error.header == header


def test_stream_framer_rejects_garbage_on_first_octet() -> None:
    framer = StreamFramer()
    framer.feed(b"\x16")
    with pytest.raises(ParseError):
        framer.next_event()


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["whole", "bytewise"])
def test_stream_framer_header_block_over_limit_is_513(*, byte_by_byte: bool) -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 200
    error = raises_parse_error(data, max_message_size=100, byte_by_byte=byte_by_byte)
    assert error.status_hint == 513


def test_stream_framer_start_line_over_limit_is_513() -> None:
    error = raises_parse_error(b"OPTIONS sip:" + b"a" * 200, max_message_size=100)
    assert error.status_hint == 513


def test_stream_framer_limit_is_inclusive() -> None:
    tr(OPTIONS, [msg(OPTIONS)], max_message_size=len(OPTIONS))
    error = raises_parse_error(OPTIONS, max_message_size=len(OPTIONS) - 1)
    assert error.status_hint == 513


def test_stream_framer_large_content_length_rejected_before_body() -> None:
    framer = StreamFramer(1000)
    framer.feed(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
    with pytest.raises(ParseError) as exc_info:
        framer.next_event()
    assert exc_info.value.status_hint == 513
    assert exc_info.value.header is None


def test_stream_framer_huge_content_length_digits_is_513() -> None:
    error = raises_parse_error(b"MESSAGE sip:a@b SIP/2.0\r\nl: " + b"9" * 5000 + b"\r\n\r\n")
    assert error.status_hint == 513


def test_stream_framer_unusable_after_error() -> None:
    framer = StreamFramer()
    framer.feed(b"garbage\r\n")
    with pytest.raises(ParseError):
        framer.next_event()
    assert framer.pending_bytes == 0
    with pytest.raises(LocalProtocolError):
        framer.feed(OPTIONS)
    with pytest.raises(LocalProtocolError):
        framer.next_event()


def test_stream_framer_rejects_nonpositive_limit() -> None:
    with pytest.raises(LocalProtocolError):
        StreamFramer(0)


def test_stream_framer_default_limit() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE == 65535
    framer = StreamFramer()
    framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 65535)
    with pytest.raises(ParseError) as exc_info:
        framer.next_event()
    assert exc_info.value.status_hint == 513


def test_stream_framer_bytewise_is_linear() -> None:
    # A 300 kB header block fed one byte at a time takes well under a second;
    # a framer that searched the whole buffer again on every feed would
    # compare ~4.5e10 octets (about 20 s).
    data = b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 300_000 + b"\r\nl: 0\r\n\r\n"
    framer = StreamFramer(max_message_size=1 << 20)
    start = time.perf_counter()
    events: list[FramingEvent] = []
    for i in range(len(data)):
        framer.feed(data[i : i + 1])
        events.extend(framer)
    assert events == [msg(data)]
    assert time.perf_counter() - start < 4.0


# --- Hypothesis -----------------------------------------------------------

_names = st.sampled_from([b"Content-Length", b"content-length", b"l", b"L", b"CONTENT-LENGTH"])
_start_lines = st.sampled_from(
    [
        b"INVITE sip:bob@example.com SIP/2.0",
        b"ACK sip:1.2.3.4:5060;transport=tcp SIP/2.0",
        b"SIP/2.0 200 OK",
        b"SIP/2.0 486 Busy Here",
        b"FOO tel:+123 SIP/2.0",
    ]
)


@st.composite
def sip_messages(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=200))
    name = draw(_names)
    fold = draw(st.sampled_from([b" ", b"\r\n ", b"\t", b""]))
    cl = name + b":" + fold + str(len(body)).encode()
    others = draw(st.lists(st.sampled_from([b"Call-ID: x", b"v: SIP/2.0/TCP h", b"X-Y:"])))
    position = draw(st.integers(min_value=0, max_value=len(others)))
    headers = [*others[:position], cl, *others[position:]]
    return draw(_start_lines) + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[FramingEvent]]:
    data = b""
    expected: list[FramingEvent] = []
    for kind in draw(st.lists(st.sampled_from(["msg", "ping", "msg-after-pong"]), max_size=6)):
        if kind == "ping":
            data += PING
            expected.append(PING_EVENT)
            continue
        message = draw(sip_messages())
        data += (PONG if kind == "msg-after-pong" else b"") + message
        expected.append(msg(message))
    return data, expected


@settings(max_examples=300)
@given(stream=streams(), cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_stream_framer_any_split_yields_the_messages(
    stream: tuple[bytes, list[FramingEvent]], cuts: list[int]
) -> None:
    data, expected = stream
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    framer = StreamFramer()
    events: list[FramingEvent] = []
    for a, b in itertools.pairwise(points):
        framer.feed(data[a:b])
        events.extend(framer)
    assert events == expected
    assert framer.pending_bytes == 0


@settings(max_examples=500)
@given(chunks=st.lists(st.binary(max_size=64), max_size=8))
def test_stream_framer_any_bytes_give_events_or_parse_error(chunks: list[bytes]) -> None:
    framer = StreamFramer(max_message_size=128)
    status = None
    try:
        for chunk in chunks:
            framer.feed(chunk)
            for event in framer:
                assert isinstance(event, MessageFramed | KeepAlive)
    except ParseError as error:
        status = error.status_hint
    assert status in {None, 400, 513}


@given(prefix=st.sampled_from([b"OPTIONS", b"SIP/2.0 ", b"\r\n"]), junk=st.binary(max_size=64))
def test_stream_framer_fuzz_after_plausible_prefix(prefix: bytes, junk: bytes) -> None:
    framer = StreamFramer(max_message_size=64)
    framer.feed(prefix + junk)
    status = None
    try:
        list(framer)
    except ParseError as error:
        status = error.status_hint
    assert status in {None, 400, 513}


def test_framing_exported_members() -> None:
    import sipmsg.framing

    assert set(sipmsg.framing.__all__) == {
        "DEFAULT_MAX_MESSAGE_SIZE",
        "PING",
        "PONG",
        "FramingEvent",
        "KeepAlive",
        "MessageFramed",
        "StreamFramer",
    }
    assert PING == b"\r\n\r\n"
    assert PONG == b"\r\n"
