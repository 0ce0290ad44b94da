"""peek() against its definition: parse() plus the typed accessors (differential tests).

``_peek_general`` is peek's definition (parse, the top Via, the accessors);
``_peek_fast`` is the one-pass path. On every input the fast path either
declines (None) or gives exactly the general result, and ``peek`` gives the
general result or the same ParseError (reason and status hint).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import sipmsg
from sipmsg import ParseError, ParserConfig, Request, Summary, parse, peek
from sipmsg._message_base import _quick_tag
from sipmsg._peek import _peek_fast, _peek_general, _tag, _top_via
from sipmsg.via import parse_via_list

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "vectors"
BENCH = HERE.parents[2] / "bench" / "parse" / "messages"
CFG = ParserConfig()


def _outcome(fn: object, data: bytes) -> object:
    try:
        return fn(data, CFG)  # type: ignore[operator]
    except ParseError as exc:
        return ("error", exc.reason, exc.status_hint, exc.header)


def _check(data: bytes) -> object:
    general = _outcome(_peek_general, data)
    fast = _peek_fast(data, CFG)
    if fast is not None:
        assert fast == general
    assert _outcome(peek, data) == general
    return general


def test_peek_bench_messages_take_the_fast_path() -> None:
    files = sorted(BENCH.glob("*.sip"))
    assert len(files) == 4
    for path in files:
        data = path.read_bytes()
        fast = _peek_fast(data, CFG)
        assert fast is not None, path.name
        msg = parse(data)
        assert fast == _peek_general(data, CFG)
        assert fast.call_id == msg.call_id
        assert (fast.cseq_seq, fast.cseq_method) == (msg.cseq.seq, msg.cseq.method)
        assert fast.via_branch == msg.via[0].branch
        assert (fast.via_host, fast.via_port) == (msg.via[0].host, msg.via[0].port)
        assert data[fast.body_start : fast.body_start + fast.content_length] == msg.body
        assert fast.is_request == isinstance(msg, Request)


def test_peek_invite_fields() -> None:
    s = peek((BENCH / "invite.sip").read_bytes())
    assert s == Summary(
        method=b"INVITE",
        uri=b"sip:1001@203.0.113.5:5060;transport=udp",
        status=None,
        via_transport=b"UDP",
        via_host=b"203.0.113.20",
        via_port=5060,
        via_branch=b"z9hG4bK4a1e.b0c6c1f2d9a7e3f18b4c2d6e0a9f5b71.0",
        call_id=b"47f1d9c5e3b2a1f0",
        cseq_seq=24716,
        cseq_method=b"INVITE",
        from_tag=b"5e1b0f7c9a2d4e36",
        to_tag=None,
        max_forwards=69,
        content_length=391,
        body_start=823,
    )


ALL_VECTORS = sorted(p for p in VECTORS.rglob("*") if p.suffix in (".sip", ".dat"))


@pytest.mark.parametrize("path", ALL_VECTORS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_peek_vectors_agree_with_general(path: Path) -> None:
    _check(path.read_bytes())


def test_peek_vectors_are_many() -> None:
    assert len(ALL_VECTORS) > 60


def test_peek_errors_are_parse_errors() -> None:
    base = (BENCH / "ringing-180.sip").read_bytes()
    with pytest.raises(ParseError) as info:
        peek(base.replace(b"SIP/2.0 180", b"SIP/3.0 180", 1))
    assert info.value.status_hint == 505
    with pytest.raises(ParseError, match="missing Via header"):
        peek(base.replace(b"Via:", b"X-Via:"))
    with pytest.raises(ParseError, match="more than one Call-ID"):
        peek(base.replace(b"\r\n\r\n", b"\r\ni: other\r\n\r\n", 1))
    with pytest.raises(ParseError) as info:
        peek(base, ParserConfig(max_headers=3))
    assert info.value.status_hint == 513


def test_peek_compact_lower_case_and_folding() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
        b"VIA: SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKy\r\n"
        b"f: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: abc\r\ncseq: 7 OPTIONS\r\nl: 0\r\n\r\n"
    )
    s = peek(data)
    assert (s.via_transport, s.via_host, s.via_port, s.via_branch) == (
        b"UDP",
        b"192.0.2.1",
        None,
        b"z9hG4bKx",
    )
    assert (s.from_tag, s.to_tag, s.call_id, s.cseq_seq) == (b"1", None, b"abc", 7)
    assert _peek_fast(data, CFG) is not None
    folded = data.replace(b"i: abc", b"i:\r\n abc")
    assert _peek_fast(folded, CFG) is None
    assert peek(folded).call_id == b"abc"


# -- Hypothesis: messages built from pieces that make the two paths disagree --

_START = st.sampled_from(
    [
        b"INVITE sip:a@b SIP/2.0",
        b"REGISTER sip:b SIP/2.0",
        b"FOO.BAR sip:a@b SIP/2.0",
        b"INVITE sip:a@b sip/2.0",
        b"INVITE  sip:a@b SIP/2.0",
        b"INVITE <sip:a@b> SIP/2.0",
        b"INV@ITE sip:a@b SIP/2.0",
        b"SIP/2.0 200 OK",
        b"SIP/2.0 180",
        b"SIP/2.0 099 Bad",
        b"SIP/2.0 1800 Bad",
        b"SIP/3.0 200 OK",
        b"sip/2.0 200 OK",
    ]
)
_VIA = st.sampled_from(
    [
        b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport",
        b"SIP/2.0/TCP 192.0.2.1;received=192.0.2.9;rport=65535;branch=z9hG4bKb",
        b"SIP/2.0/UDP 192.0.2.1:65536;branch=z9hG4bKa",
        b"SIP/2.0/UDP 256.0.2.1;branch=z9hG4bKa",
        b"SIP/2.0/UDP 010.0.2.1;branch=z9hG4bKa",
        b"SIP/2.0/UDP host.example.com:5061;branch=z9hG4bKc",
        b"SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKd",
        b"SIP/2.0/UDP 192.0.2.1;branch=a;branch=b",
        b"SIP/2.0/UDP 192.0.2.1;Branch=z9hG4bKe",
        b"SIP/2.0/UDP 192.0.2.1;branch",
        b"SIP/2.0/UDP 192.0.2.1;received=999.1.1.1",
        b"SIP/2.0/UDP 192.0.2.1;ttl=300",
        b"sip/2.0/udp 192.0.2.1;branch=z9hG4bKf",
        b"SIP / 2.0 / UDP 192.0.2.1 ; branch = z9hG4bKg",
        b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKh, SIP/2.0/UDP 192.0.2.2",
        b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKi, bad",
        b"SIP/2.0/FOO 192.0.2.1;branch=z9hG4bKj",
        b"SIP/2.0/UDP",
        b"",
    ]
)
_NAME_ADDR = st.sampled_from(
    [
        b"<sip:a@b>;tag=1",
        b'"Bob" <sip:a@b>;tag=2',
        b'"B>o<b" <sip:a@b>;tag=3',
        b'"B\\"ob" <sip:a@b>;tag=4',
        b"Bob <sip:a@b>;tag=5",
        b"<sip:a@b>",
        b"<sip:a@b>;TAG=6",
        b"<sip:a@b>;tag=7;foo",
        b"<sip:a@b>;foo;tag=8",
        b"<sip:a@b>;tag=",
        b"<sip:a@b>;tag = 9",
        b"sip:a@b;tag=10",
        b'"unterminated <sip:a@b>;tag=11',
        b"<sip:a@b;tag=12>",
        b"<sip:a@b>;tag=1\x0b3",
        b"",
    ]
)
_HEADER = st.one_of(
    st.tuples(st.sampled_from([b"Via", b"v", b"VIA", b"Via "]), _VIA),
    st.tuples(st.sampled_from([b"From", b"f", b"FROM", b"To", b"t", b"tO"]), _NAME_ADDR),
    st.tuples(
        st.sampled_from([b"Call-ID", b"i", b"call-id"]),
        st.sampled_from([b"abc@host", b"a b", b"", b"x\x01", b"abc "]),
    ),
    st.tuples(
        st.sampled_from([b"CSeq", b"cseq"]),
        st.sampled_from(
            [b"1 INVITE", b"2147483648 INVITE", b"1  BYE", b"x INVITE", b"1", b"01 FOO"]
        ),
    ),
    st.tuples(
        st.sampled_from([b"Max-Forwards", b"max-forwards"]),
        st.sampled_from([b"70", b"256", b"0070", b"-1", b""]),
    ),
    st.tuples(
        st.sampled_from([b"Content-Length", b"l"]),
        st.sampled_from([b"0", b"3", b"99", b"x", b" 0 ", b"0000000000003"]),
    ),
    st.tuples(
        st.sampled_from([b"Record-Route", b"X-Foo", b"Bad Name", b"Timestamp", b"Via-X"]),
        st.sampled_from([b"<sip:p>", b"1", b"a, b"]),
    ),
)
_SEP = st.sampled_from([b": ", b":", b" : ", b"\t:\t", b":\r\n ", b""])
_EOL = st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r", b"\r\n "])


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    out = [draw(st.sampled_from([b"", b"\r\n"])), draw(_START)]
    required = [
        (b"Via", draw(_VIA)),
        (b"From", draw(_NAME_ADDR)),
        (b"To", draw(_NAME_ADDR)),
        (b"Call-ID", b"abc@host"),
        (b"CSeq", b"1 INVITE"),
    ]
    extra = draw(st.lists(_HEADER, max_size=6))
    headers = draw(st.permutations(required + extra))
    for name, value in headers:
        sep = draw(_SEP) if draw(st.integers(0, 9)) == 0 else b": "
        eol = draw(_EOL)
        out.append(eol + name + sep + value)
    out.append(b"\r\n\r\n")
    out.append(draw(st.sampled_from([b"", b"abc", b"abcdef"])))
    return b"".join(out)


@settings(max_examples=3000)
@given(_messages())
@example(b"INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.1\r\n\r\n")
def test_peek_fast_path_is_the_general_path(data: bytes) -> None:
    _check(data)


@given(st.lists(_VIA, min_size=1, max_size=3).map(b", ".join))
def test_top_via_matches_parse_via_list(value: bytes) -> None:
    try:
        top = parse_via_list(value)[0]
        expected: object = (top.transport, top.host, top.port, top.branch)
    except ParseError:
        expected = None
    assert _top_via(value) == expected


_VIA_PIECES = st.sampled_from(
    [
        b"SIP/2.0/UDP ",
        b"SIP/2.0/WSS ",
        b"192.0.2.1",
        b"255.255.255.255",
        b"256.1.1.1",
        b"01.1.1.1",
        b":0",
        b":65535",
        b":65536",
        b":099999",
        b";branch=",
        b"z9hG4bK",
        b";rport",
        b";rport=",
        b";received=",
        b"1",
        b";",
        b"=",
        b" ",
        b",",
    ]
)


@settings(max_examples=2000)
@given(st.lists(_VIA_PIECES, max_size=10).map(b"".join))
@example(b"SIP/2.0/UDP 192.0.2.1:65535;rport=0;received=255.255.255.255;branch=z9hG4bK1;rport")
def test_top_via_pieces_match_parse_via_list(value: bytes) -> None:
    test_top_via_matches_parse_via_list.hypothesis.inner_test(value)  # type: ignore[attr-defined]


_TAG_PIECES = st.sampled_from(
    [b'"', b"\\", b"<", b">", b"sip:a@b", b"Bob", b" ", b"\t", b";tag=", b";TAG=", b"x", b";"]
)


@settings(max_examples=2000)
@given(st.lists(_TAG_PIECES, max_size=10).map(b"".join))
@example(b'"a\\"" <sip:a@b>;tag=x')
def test_tag_fast_path_matches_quick_tag(value: bytes) -> None:
    ok, tag = _quick_tag(value)
    assert _tag(value) == (ok, tag)


def test_peek_is_exported() -> None:
    assert sipmsg.peek is peek
    assert "peek" in sipmsg.__all__
    assert "Summary" in sipmsg.__all__
