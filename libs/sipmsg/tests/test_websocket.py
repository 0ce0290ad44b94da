"""Tests for sipmsg.websocket: RFC 6455 server side with RFC 7118 (SIP over WebSocket)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipmsg import LocalProtocolError, ParseError
from sipmsg.websocket import (
    SIP_SUBPROTOCOL,
    BinaryMessage,
    CloseReceived,
    HandshakeParser,
    HandshakeRequest,
    Ping,
    Pong,
    TextMessage,
    WebSocketConnection,
    WebSocketEvent,
    WebSocketProtocolError,
    accept_key,
    accept_response,
    reject_response,
)

# --- Handshake ----------------------------------------------------------------

RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
REQUEST_LINES = [
    b"GET /ws?x=1 HTTP/1.1",
    b"Host: sip.example.com",
    b"Upgrade: websocket",
    b"Connection: keep-alive, Upgrade",
    b"Sec-WebSocket-Key: " + RFC_KEY,
    b"Origin: https://www.example.com",
    b"Sec-WebSocket-Protocol: foo, sip",
    b"Sec-WebSocket-Version: 13",
    b"X-Forwarded-For: 198.51.100.7",
]


def request_bytes(lines: list[bytes]) -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n"


REQUEST = request_bytes(REQUEST_LINES)


def handshake(data: bytes, *, max_size: int = 8192) -> HandshakeRequest:
    parser = HandshakeParser(max_size)
    parser.feed(data)
    request = parser.next_request()
    assert request is not None
    return request


def refused(data: bytes, *, max_size: int = 8192) -> ParseError:
    parser = HandshakeParser(max_size)
    parser.feed(data)
    with pytest.raises(ParseError) as exc_info:
        parser.next_request()
    return exc_info.value


def test_accept_key_rfc6455_example() -> None:
    # RFC 6455 §1.3.
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_handshake_parser_accepts_rfc7118_request() -> None:
    request = handshake(REQUEST)
    assert request.target == b"/ws?x=1"
    assert request.key == RFC_KEY
    assert request.subprotocols == (b"foo", b"sip")
    assert request.header(b"X-Forwarded-For") == b"198.51.100.7"
    assert request.header(b"origin") == b"https://www.example.com"
    assert request.header(b"missing") is None
    assert request.headers[0] == (b"host", b"sip.example.com")


def test_accept_response_bytes() -> None:
    response = accept_response(handshake(REQUEST), ((b"Server", b"sipmesh"),))
    assert response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + RFC_ACCEPT + b"\r\n"
        b"Sec-WebSocket-Protocol: sip\r\n"
        b"Server: sipmesh\r\n"
        b"\r\n"
    )


def test_handshake_parser_byte_by_byte_and_trailing_data() -> None:
    parser = HandshakeParser()
    trailing = client_frame(0x1, b"hi")
    data = REQUEST + trailing
    request = None
    for i in range(len(REQUEST)):
        assert request is None
        parser.feed(data[i : i + 1])
        request = parser.next_request()
    assert request is not None
    assert request.key == RFC_KEY
    assert parser.trailing_data == b""
    parser2 = HandshakeParser()
    parser2.feed(data)
    assert parser2.next_request() is not None
    assert parser2.trailing_data == trailing


def test_handshake_parser_done_after_request() -> None:
    parser = HandshakeParser()
    parser.feed(REQUEST)
    assert parser.next_request() is not None
    with pytest.raises(LocalProtocolError):
        parser.next_request()
    with pytest.raises(LocalProtocolError):
        parser.feed(b"x")


def test_handshake_parser_tolerates_leading_crlf_and_case() -> None:
    lines = [line.lower() if line.startswith(b"Upgrade") else line for line in REQUEST_LINES]
    lines[3] = b"connection: UPGRADE"
    assert handshake(b"\r\n" + request_bytes(lines)).key == RFC_KEY


def replaced(index: int, line: bytes | None) -> bytes:
    lines = list(REQUEST_LINES)
    if line is None:
        del lines[index]
    else:
        lines[index] = line
    return request_bytes(lines)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(replaced(0, b"POST /ws HTTP/1.1"), 400, id="post"),
        pytest.param(replaced(0, b"GET /ws HTTP/1.0"), 400, id="http10"),
        pytest.param(replaced(0, b"GET /ws"), 400, id="short-line"),
        pytest.param(replaced(0, b"GET  /ws HTTP/1.1"), 400, id="double-space"),
        pytest.param(replaced(1, None), 400, id="no-host"),
        pytest.param(replaced(2, b"Upgrade: h2c"), 400, id="upgrade-h2c"),
        pytest.param(replaced(2, None), 400, id="no-upgrade"),
        pytest.param(replaced(3, b"Connection: keep-alive"), 400, id="no-conn-upgrade"),
        pytest.param(replaced(4, None), 400, id="no-key"),
        pytest.param(replaced(4, b"Sec-WebSocket-Key: c2hvcnQ="), 400, id="short-key"),
        pytest.param(replaced(4, b"Sec-WebSocket-Key: !!!"), 400, id="non-base64-key"),
        pytest.param(replaced(6, None), 400, id="no-subprotocol"),
        pytest.param(replaced(6, b"Sec-WebSocket-Protocol: xmpp"), 400, id="not-sip"),
        pytest.param(replaced(6, b"Sec-WebSocket-Protocol: s i p"), 400, id="bad-token"),
        pytest.param(replaced(7, None), 400, id="no-version"),
        pytest.param(replaced(7, b"Sec-WebSocket-Version: 8"), 426, id="version-8"),
        pytest.param(replaced(8, b" folded"), 400, id="obs-fold"),
        pytest.param(replaced(8, b"Bad Header : x"), 400, id="space-in-name"),
        pytest.param(request_bytes([*REQUEST_LINES, REQUEST_LINES[4]]), 400, id="two-keys"),
    ],
)
def test_handshake_parser_refuses(data: bytes, status: int) -> None:
    assert refused(data).status_hint == status


def test_handshake_parser_size_cap_is_431() -> None:
    parser = HandshakeParser(100)
    parser.feed(b"GET /" + b"a" * 200)
    with pytest.raises(ParseError) as exc_info:
        parser.next_request()
    assert exc_info.value.status_hint == 431
    assert refused(REQUEST, max_size=len(REQUEST) - 1).status_hint == 431
    assert handshake(REQUEST, max_size=len(REQUEST)).key == RFC_KEY


def test_handshake_parser_incomplete_returns_none() -> None:
    parser = HandshakeParser()
    parser.feed(REQUEST[:-1])
    assert parser.next_request() is None


def test_reject_response_426_names_version() -> None:
    response = reject_response(ParseError("v", status_hint=426))
    assert response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in response
    assert response.endswith(b"Content-Length: 0\r\n\r\n")


def test_reject_response_unknown_status_becomes_400() -> None:
    response = reject_response(ParseError("x", status_hint=513))
    assert response == (
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )


@settings(max_examples=300)
@given(data=st.binary(max_size=300))
def test_handshake_parser_any_bytes_request_or_parse_error(data: bytes) -> None:
    parser = HandshakeParser(256)
    parser.feed(data + b"\r\n\r\n")
    status = None
    try:
        request = parser.next_request()
    except ParseError as error:
        status = error.status_hint
    else:
        assert request is None or SIP_SUBPROTOCOL in request.subprotocols
    assert status in {None, 400, 426, 431}


# --- Frames -------------------------------------------------------------------

MASK = b"\x37\xfa\x21\x3d"


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = MASK, rsv: int = 0
) -> bytes:
    """A client frame, masked as RFC 6455 §5.3 requires unless mask is None."""
    first = bytes(((0x80 if fin else 0) | rsv | opcode,))
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if n < 126:
        length = bytes((bit | n,))
    elif n < 0x10000:
        length = bytes((bit | 126,)) + n.to_bytes(2, "big")
    else:
        length = bytes((bit | 127,)) + n.to_bytes(8, "big")
    if mask is None:
        return first + length + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return first + length + mask + masked


def events_of(data: bytes, *, max_message_size: int = 65535) -> list[WebSocketEvent]:
    """Feed whole and byte by byte; both must give the same events."""
    conn = WebSocketConnection(max_message_size)
    conn.feed(data)
    whole = list(conn)
    conn = WebSocketConnection(max_message_size)
    bytewise: list[WebSocketEvent] = []
    for i in range(len(data)):
        conn.feed(data[i : i + 1])
        bytewise.extend(conn)
    assert bytewise == whole
    return whole


def fails(data: bytes, *, max_message_size: int = 65535) -> WebSocketProtocolError:
    conn = WebSocketConnection(max_message_size)
    conn.feed(data)
    with pytest.raises(WebSocketProtocolError) as exc_info:
        list(conn)
    return exc_info.value


SIP = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"


def test_websocket_text_and_binary_messages() -> None:
    data = client_frame(0x1, SIP) + client_frame(0x2, b"\x00\xff" + SIP)
    assert events_of(data) == [TextMessage(data=SIP), BinaryMessage(data=b"\x00\xff" + SIP)]


def test_websocket_rfc6455_masked_hello_example() -> None:
    # RFC 6455 §5.7: "A single-frame masked text message".
    data = bytes.fromhex("818537fa213d7f9f4d5158")
    assert events_of(data) == [TextMessage(data=b"Hello")]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_websocket_payload_length_encodings(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    conn = WebSocketConnection(max_message_size=70000)
    conn.feed(client_frame(0x2, payload))
    assert list(conn) == [BinaryMessage(data=payload)]


def test_websocket_fragmented_with_interleaved_control_frames() -> None:
    text = "ünïcødé ".encode() * 3
    data = (
        client_frame(0x1, text[:5], fin=False)  # splits a UTF-8 sequence
        + client_frame(0x9, b"are you there")
        + client_frame(0x0, text[5:20], fin=False)
        + client_frame(0xA, b"")
        + client_frame(0x0, text[20:])
        + client_frame(0x2, b"b1", fin=False)
        + client_frame(0x0, b"b2")
    )
    assert events_of(data) == [
        Ping(payload=b"are you there"),
        Pong(payload=b""),
        TextMessage(data=text),
        BinaryMessage(data=b"b1b2"),
    ]


def test_websocket_close_with_code_and_reason() -> None:
    data = client_frame(0x8, (1001).to_bytes(2, "big") + "bye ✓".encode())
    assert events_of(data) == [CloseReceived(code=1001, reason="bye ✓")]


def test_websocket_close_without_code_is_1005() -> None:
    assert events_of(client_frame(0x8, b"")) == [CloseReceived(code=1005, reason="")]


def test_websocket_nothing_read_after_close() -> None:
    conn = WebSocketConnection()
    conn.feed(client_frame(0x8, b"\x03\xe8") + client_frame(0x1, b"late"))
    assert conn.next_event() == CloseReceived(code=1000, reason="")
    conn.feed(client_frame(0x1, b"later"))
    assert conn.next_event() is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(client_frame(0x1, b"x", mask=None), 1002, id="unmasked"),
        pytest.param(client_frame(0x1, b"x", rsv=0x40), 1002, id="rsv1"),
        pytest.param(client_frame(0x3, b"x"), 1002, id="opcode-3"),
        pytest.param(client_frame(0xB, b"x"), 1002, id="opcode-b"),
        pytest.param(client_frame(0x9, b"x" * 126), 1002, id="ping-126"),
        pytest.param(client_frame(0x9, b"x", fin=False), 1002, id="fragmented-ping"),
        pytest.param(client_frame(0x0, b"x"), 1002, id="lone-continuation"),
        pytest.param(
            client_frame(0x1, b"a", fin=False) + client_frame(0x1, b"b"), 1002, id="nested-text"
        ),
        pytest.param(b"\x82\xfe\x00\x05" + MASK + b"x" * 5, 1002, id="non-minimal-16"),
        pytest.param(b"\x82\xff" + (200).to_bytes(8, "big"), 1002, id="non-minimal-64"),
        pytest.param(b"\x82\xff" + (1 << 63).to_bytes(8, "big"), 1002, id="length-msb"),
        pytest.param(client_frame(0x8, b"\x03"), 1002, id="close-one-octet"),
        pytest.param(client_frame(0x8, (999).to_bytes(2, "big")), 1002, id="close-999"),
        pytest.param(client_frame(0x8, (1005).to_bytes(2, "big")), 1002, id="close-1005"),
        pytest.param(client_frame(0x8, (5000).to_bytes(2, "big")), 1002, id="close-5000"),
        pytest.param(client_frame(0x8, b"\x03\xe8\xff"), 1007, id="close-bad-utf8"),
        pytest.param(client_frame(0x1, b"\xc3\x28"), 1007, id="bad-utf8"),
        pytest.param(client_frame(0x1, b"\xc3"), 1007, id="truncated-utf8"),
        pytest.param(client_frame(0x1, b"\xff", fin=False), 1007, id="bad-utf8-fragment"),
    ],
)
def test_websocket_protocol_errors(data: bytes, code: int) -> None:
    error = fails(data)
    assert error.close_code == code
    assert isinstance(error, ParseError)


def test_websocket_close_codes_accepted() -> None:
    for code in (1000, 1003, 1011, 1014, 3000, 4999):
        data = client_frame(0x8, code.to_bytes(2, "big"))
        assert events_of(data) == [CloseReceived(code=code, reason="")]


def test_websocket_too_big_rejected_from_header() -> None:
    # Only the frame header arrives: the size is refused before buffering.
    header = client_frame(0x2, b"x" * 200)[:8]
    assert fails(header, max_message_size=100).close_code == 1009


def test_websocket_too_big_across_fragments() -> None:
    data = client_frame(0x2, b"x" * 60, fin=False) + client_frame(0x0, b"x" * 60)
    assert fails(data, max_message_size=100).close_code == 1009
    exact = client_frame(0x2, b"x" * 50, fin=False) + client_frame(0x0, b"x" * 50)
    assert events_of(exact, max_message_size=100) == [BinaryMessage(data=b"x" * 100)]


def test_websocket_unusable_after_error_but_can_send_close() -> None:
    conn = WebSocketConnection()
    conn.feed(client_frame(0x1, b"x", mask=None))
    with pytest.raises(WebSocketProtocolError) as exc_info:
        conn.next_event()
    assert conn.send_close(exc_info.value.close_code) == b"\x88\x02\x03\xea"
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.feed(b"x")


# --- Sending --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "header"),
    [(0, b"\x81\x00"), (125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"), (65536, b"\x81\x7f")],
)
def test_websocket_send_text_unmasked_lengths(size: int, header: bytes) -> None:
    frame = WebSocketConnection().send_text(b"a" * size)
    assert frame.startswith(header)
    assert frame.endswith(b"a" * size)
    assert len(frame) == size + (2 if size < 126 else 4 if size < 65536 else 10)


def test_websocket_send_binary_ping_pong() -> None:
    conn = WebSocketConnection()
    assert conn.send_binary(b"\xff") == b"\x82\x01\xff"
    assert conn.send_ping(b"p") == b"\x89\x01p"
    assert conn.send_pong(b"p") == b"\x8a\x01p"


def test_websocket_send_rejects_misuse() -> None:
    conn = WebSocketConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_text(b"\xff")
    with pytest.raises(LocalProtocolError):
        conn.send_pong(b"x" * 126)
    with pytest.raises(LocalProtocolError):
        conn.send_close(1000, "r" * 124)
    with pytest.raises(LocalProtocolError):
        conn.send_close(999)
    with pytest.raises(LocalProtocolError):
        conn.send_close(None, "reason")


def test_websocket_send_close_then_nothing() -> None:
    conn = WebSocketConnection()
    assert conn.send_close(1000, "done") == b"\x88\x06\x03\xe8done"
    with pytest.raises(LocalProtocolError):
        conn.send_text(SIP)
    with pytest.raises(LocalProtocolError):
        conn.send_close()
    assert conn.close_reply(CloseReceived(code=1000, reason="")) == b""


def test_websocket_close_reply_echoes_code() -> None:
    conn = WebSocketConnection()
    conn.feed(client_frame(0x8, (1001).to_bytes(2, "big")))
    event = conn.next_event()
    assert isinstance(event, CloseReceived)
    assert conn.close_reply(event) == b"\x88\x02\x03\xe9"
    conn2 = WebSocketConnection()
    assert conn2.close_reply(CloseReceived(code=1005, reason="")) == b"\x88\x00"


def test_websocket_round_trip_through_client_masking() -> None:
    # A server frame, masked as a client would send it, reads back the same.
    frame = WebSocketConnection().send_text(SIP)
    conn = WebSocketConnection()
    conn.feed(client_frame(frame[0] & 0x0F, frame[2:]))
    assert list(conn) == [TextMessage(data=SIP)]


# --- Hypothesis -----------------------------------------------------------------


@settings(max_examples=500)
@given(chunks=st.lists(st.binary(max_size=40), max_size=8))
def test_websocket_any_bytes_events_or_protocol_error(chunks: list[bytes]) -> None:
    conn = WebSocketConnection(max_message_size=200)
    code = None
    try:
        for chunk in chunks:
            conn.feed(chunk)
            for event in conn:
                assert isinstance(event, TextMessage | BinaryMessage | Ping | Pong | CloseReceived)
    except WebSocketProtocolError as error:
        code = error.close_code
    assert code in {None, 1002, 1007, 1009}


@st.composite
def masked_frames(draw: st.DrawFn) -> bytes:
    opcode = draw(st.integers(min_value=0, max_value=15))
    payload = draw(st.binary(max_size=140))
    mask = draw(st.binary(min_size=4, max_size=4))
    return client_frame(opcode, payload, fin=draw(st.booleans()), mask=mask)


@settings(max_examples=300)
@given(frames=st.lists(masked_frames(), max_size=6), cut=st.integers(min_value=1, max_value=7))
def test_websocket_well_formed_frames_any_split(frames: list[bytes], cut: int) -> None:
    data = b"".join(frames)
    whole_conn = WebSocketConnection()
    whole_conn.feed(data)
    split_conn = WebSocketConnection()
    whole: list[WebSocketEvent] | int
    split: list[WebSocketEvent] | int
    try:
        whole = list(whole_conn)
    except WebSocketProtocolError as error:
        whole = error.close_code
    try:
        split = []
        for i in range(0, len(data), cut):
            split_conn.feed(data[i : i + cut])
            split.extend(split_conn)
    except WebSocketProtocolError as error:
        split = error.close_code
    assert split == whole


def test_websocket_exported_members() -> None:
    import sipmsg.websocket

    assert set(sipmsg.websocket.__all__) == {
        "SIP_SUBPROTOCOL",
        "BinaryMessage",
        "CloseReceived",
        "HandshakeParser",
        "HandshakeRequest",
        "Ping",
        "Pong",
        "TextMessage",
        "WebSocketConnection",
        "WebSocketEvent",
        "WebSocketProtocolError",
        "accept_key",
        "accept_response",
        "reject_response",
    }
    assert SIP_SUBPROTOCOL == b"sip"


def test_websocket_limits_must_be_positive() -> None:
    with pytest.raises(LocalProtocolError):
        HandshakeParser(0)
    with pytest.raises(LocalProtocolError):
        WebSocketConnection(0)
