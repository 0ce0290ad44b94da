"""Headers keeps lines and names only: values cut on demand read as the parsed triples did."""

from __future__ import annotations

import gc

from sipmsg import Request, make_response, parse

FOLDED = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n"
    b"  SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n"
    b"From  :\t<sip:alice@example.com>;tag=1 \r\n"
    b"To:<sip:bob@example.com>\r\n"
    b"Subject\r\n : lunch\r\n"
    b"Call-ID: x1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)

PLAIN = FOLDED.replace(b",\r\n  SIP", b", SIP").replace(b"Subject\r\n :", b"Subject:")


def test_values_and_names_from_folded_and_padded_lines() -> None:
    msg = parse(FOLDED)
    headers = msg.headers
    assert headers.get(b"via") == (
        b"SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2"
    )
    assert headers.get(b"from") == b"<sip:alice@example.com>;tag=1"
    assert headers.get(b"to") == b"<sip:bob@example.com>"
    assert headers.get(b"subject") == b"lunch"
    assert headers[1] == (b"From", b"from", b"<sip:alice@example.com>;tag=1")
    assert headers[3] == (b"Subject", b"subject", b"lunch")
    assert list(headers) == [headers[i] for i in range(len(headers))]
    assert len(msg.via) == 2
    # The wire form is untouched, folding included.
    assert bytes(msg) == FOLDED
    # The same message unfolded reads alike, line for line.
    assert list(parse(PLAIN).headers) == list(headers)


def test_edits_of_a_folded_message_keep_reading_values_unfolded() -> None:
    msg = parse(FOLDED)
    edited = msg.replace_line(msg.headers.keys().index(b"from"), b"<sip:carol@example.com>")
    assert edited.headers.get(b"via") == msg.headers.get(b"via")
    assert edited.headers[1] == (b"From", b"from", b"<sip:carol@example.com>")
    ours = b"SIP/2.0/UDP p.example.com;branch=z9hG4bK0"
    again = parse(bytes(edited.prepend_header(b"Via", ours)))
    assert [v.host for v in again.via] == [b"p.example.com", b"a.example.com", b"b.example.com"]


def test_response_copies_are_unfolded_and_unpadded() -> None:
    msg = parse(FOLDED)
    assert isinstance(msg, Request)
    resp = make_response(msg, 200, to_tag=b"t9")
    lines = bytes(resp).split(b"\r\n")
    assert lines[1:6] == [
        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, "
        b"SIP/2.0/UDP b.example.com;branch=z9hG4bK2",
        b"From: <sip:alice@example.com>;tag=1",
        b"To: <sip:bob@example.com>;tag=t9",
        b"Call-ID: x1",
        b"CSeq: 1 INVITE",
    ]
    assert resp.headers.keys()[:5] == (b"via", b"from", b"to", b"call-id", b"cseq")
    assert bytes(make_response(parse(PLAIN), 200, to_tag=b"t9")) == bytes(resp)  # type: ignore[arg-type]


def test_a_parsed_message_allocates_few_tracked_objects() -> None:
    # The point of the lazy storage: no triple per header line. The message
    # and its Headers, the lines and names tuples (the tuples of bytes are
    # untracked by the next collection): 4, whatever the number of headers.
    data = PLAIN
    parse(data)
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        kept = [parse(data) for _ in range(100)]
        after = len(gc.get_objects())
    finally:
        gc.enable()
    assert len(kept) == 100
    assert (after - before - 1) / 100 <= 4
