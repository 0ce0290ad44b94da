"""The compiled-loop checks equal the ABNF they replace: callid, 1*DIGIT."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sipmsg import ParseError, Response, parse
from sipmsg._message_base import call_id_ok
from sipmsg.headers import parse_cseq, parse_uint

# callid = word [ "@" word ] (RFC 3261 §25.1), as the regex it replaced.
_WORD = rb"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALL_ID_RE = re.compile(rb"\A" + _WORD + rb"(?:@" + _WORD + rb")?\Z")

_CALL_ID_BYTES = st.binary(max_size=12) | st.lists(
    st.sampled_from([b"a", b"Z", b"9", b"@", b"-", b'"', b"\\", b"{", b" ", b"\t", b",", b";"]),
    max_size=10,
).map(b"".join)


@given(_CALL_ID_BYTES)
@example(b"")
@example(b"@")
@example(b"a@")
@example(b"@a")
@example(b"a@b@c")
@example(b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6@foo.bar.com")
def test_call_id_ok_is_the_callid_rule(value: bytes) -> None:
    assert call_id_ok(value) is (_CALL_ID_RE.match(value) is not None)


def _uint_reference(value: bytes, maximum: int) -> int | None:
    v = value.strip(b" \t")
    # More than 20 digits is refused outright (no giant int for a bad value).
    if not re.fullmatch(rb"[0-9]+", v) or len(v) > 20 or int(v) > maximum:
        return None
    return int(v)


@given(
    st.lists(st.sampled_from([b"0", b"1", b"9", b" ", b"\t", b"x", b"-", b"+"]), max_size=12).map(
        b"".join
    )
    | st.integers(min_value=0, max_value=2**40).map(lambda n: b"%d" % n),
    st.sampled_from([255, 2**31 - 1, 2**32 - 1]),
)
@example(b"255", 255)
@example(b"256", 255)
@example(b"4294967295", 2**32 - 1)
@example(b"4294967296", 2**32 - 1)
@example(b"000000000000000000001", 2**32 - 1)
def test_parse_uint_is_digits_up_to_the_maximum(value: bytes, maximum: int) -> None:
    want = _uint_reference(value, maximum)
    if want is None:
        with pytest.raises(ParseError):
            parse_uint(value, header="expires", maximum=maximum)
    else:
        assert parse_uint(value, header="expires", maximum=maximum) == want


_CSEQ_PARTS = st.lists(
    st.sampled_from([b"1", b"0", b"9", b"12345678", b" ", b"\t", b"INVITE", b"BYE", b"X", b"@"]),
    max_size=5,
).map(b"".join)


@given(_CSEQ_PARTS)
@example(b"1 INVITE")
@example(b"000000001 ACK")
@example(b"123456789 BYE")
@example(b"1234567890 BYE")
@example(b"2147483648 BYE")
@example(b"1 INVITE ")
@example(b"1  INVITE")
def test_parse_cseq_equals_the_rule(value: bytes) -> None:
    # CSeq = 1*DIGIT LWS Method, the number below 2**31 (§20.16).
    parts = value.split()
    ok = (
        len(parts) == 2
        and re.fullmatch(rb"[0-9]+", parts[0]) is not None
        and re.fullmatch(rb"[A-Za-z0-9\-.!%*_+`'~]+", parts[1]) is not None
        and int(parts[0]) < 2**31
    )
    if not ok:
        with pytest.raises(ParseError):
            parse_cseq(value)
        return
    cseq = parse_cseq(value)
    assert (cseq.seq, cseq.method) == (int(parts[0]), parts[1])


@given(
    st.lists(st.sampled_from([b"SIP/2.0", b" ", b"1", b"0", b"9", b"x", b"OK", b"\r"]), max_size=6)
)
@example([b"SIP/2.0", b" ", b"180", b" ", b"Ringing"])
@example([b"SIP/2.0", b" ", b"200"])
@example([b"SIP/2.0", b" ", b"099", b" ", b"x"])
@example([b"SIP/2.0", b" ", b"2000", b" ", b"x"])
def test_status_line_equals_the_rule(parts: list[bytes]) -> None:
    # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§25.1).
    start = b"".join(parts)
    data = start + b"\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"
    version, _, rest = start.partition(b" ")
    code, _, reason = rest.partition(b" ")
    good = (
        start[:4].upper() == b"SIP/"
        and re.fullmatch(rb"[1-9][0-9][0-9]", code) is not None
        and b"\r" not in reason
        and version.upper() == b"SIP/2.0"
    )
    if not good:
        if start[:4].upper() == b"SIP/":
            with pytest.raises(ParseError):
                parse(data)
        return
    msg = parse(data)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (int(code), reason)
