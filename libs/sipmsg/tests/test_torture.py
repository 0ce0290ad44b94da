"""RFC 4475 and RFC 5118 torture messages, byte-exact, against their RFC's verdicts.

Each case names where the verdict is reached: at ``parse`` (the framing, the
start line, Content-Length) or at ``validate`` (validate_request /
validate_response, which parse the headers a server must read). Valid messages
parse, validate and serialize back to the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmsg import (
    ParseError,
    Request,
    Response,
    parse,
    unsupported_options,
    validate_request,
    validate_response,
)

VECTORS = Path(__file__).parent / "vectors"

# RFC 4475 §3.1.1 (valid), §3.2 (transaction layer), §3.3 (application layer):
# messages a parser must accept.
VALID_4475 = [
    "wsinv",  # §3.1.1.1 short tortuous INVITE
    "intmeth",  # §3.1.1.2 wide range of valid characters
    "esc01",  # §3.1.1.3 valid use of the % escaping mechanism
    "escnull",  # §3.1.1.4 escaped nulls in URIs
    "esc02",  # §3.1.1.5 use of % when it is not an escape
    "lwsdisp",  # §3.1.1.6 message with no LWS between display name and <
    "longreq",  # §3.1.1.7 long values in header fields
    "dblreq",  # §3.1.1.8 extra trailing octets in a UDP datagram
    "semiuri",  # §3.1.1.9 semicolon-separated parameters in URI user part
    "transports",  # §3.1.1.10 varied and unknown transport types
    "mpart01",  # §3.1.1.11 multipart MIME message
    "unreason",  # §3.1.1.12 unusual reason phrase
    "noreason",  # §3.1.1.13 empty reason phrase
    "baddate",  # §3.1.2.14 non-GMT Date: "acceptable to ... ignore the Date"
    "zeromf",  # §3.2.2 Max-Forwards of zero: valid, the proxy answers 483
    "cparam01",  # §3.1.1.? / §3.3.? Contact parameters
    "cparam02",
    "regescrt",  # §3.3.? escaped headers in a Contact: valid
    "sdp01",  # §3.3.? unknown SDP: valid SIP
    "badbranch",  # §3.2.1 branch of just the magic cookie: valid syntax
    "inv2543",  # §3.4 RFC 2543 INVITE, no branch: valid
    "invut",  # §3.3.? unknown Content-Type: 415 is the application's
    "regaut01",  # §3.3.? unknown Authorization scheme: valid syntax
    "bcast",  # §3.3.? broadcast Via sent-by: valid syntax
    "unksm2",  # §3.3.? unknown schemes in To/From/Contact: valid
    "bext01",  # §3.3.? Require of unknown extensions: valid, the server answers 420
]

# (file, where, status_hint)
INVALID_4475 = [
    ("badinv01", "validate", 400),  # §3.1.2.1 extraneous header field separators
    ("clerr", "parse", 400),  # §3.1.2.2 Content-Length larger than the message
    ("ncl", "parse", 400),  # §3.1.2.3 negative Content-Length
    ("scalar02", "validate", 400),  # §3.1.2.4 "respond with a 400 ... due to the CSeq error"
    ("scalarlg", "validate", 400),  # §3.1.2.5 overlarge CSeq in a response
    ("quotbal", "validate", 400),  # §3.1.2.6 unterminated quoted string in display name
    ("ltgtruri", "parse", 400),  # §3.1.2.7 <> enclosing the Request-URI
    ("lwsruri", "parse", 400),  # §3.1.2.8 embedded LWS in the Request-URI
    ("lwsstart", "parse", 400),  # §3.1.2.9 multiple SP separating Request-Line elements
    ("trws", "parse", 400),  # §3.1.2.10 SP at the end of the Request-Line
    ("escruri", "validate", 400),  # §3.1.2.11 escaped headers in the Request-URI
    ("regbadct", "validate", 400),  # §3.1.2.13 name-addr URI with ? not in <>
    ("badaspec", "validate", 400),  # §3.1.2.15 spaces inside addr-spec
    ("baddn", "parse", 400),  # §3.1.2.16 (the archive lost the final blank line)
    ("baddn-crlf", "validate", 400),  # §3.1.2.16 non-token characters in display name
    ("badvers", "parse", 505),  # §3.1.2.17 unknown protocol version
    ("mismatch01", "validate", 400),  # §3.1.2.18 start line and CSeq method mismatch
    ("mismatch02", "validate", 400),  # §3.1.2.19 unknown method with CSeq mismatch
    ("bigcode", "parse", 400),  # §3.1.2.20 overlarge response code
    ("insuf", "validate", 400),  # §3.3.1 missing To, From, Call-ID, Max-Forwards
    ("unkscm", "validate", 416),  # §3.3.2 unknown scheme in the Request-URI
    ("novelsc", "validate", 416),  # §3.3.3 novel scheme in the Request-URI
    ("multi01", "validate", 400),  # §3.3.? multiple values in single-value headers
    ("mcl01", "parse", 400),  # §3.3.? multiple Content-Length values
    ("test", "parse", 400),  # the archive's extra member: no SIP version at all
]

VALID_5118 = [
    "ipv6-good",  # §4.1
    "port-ambiguous",  # §4.3
    "port-unambiguous",  # §4.4
    "via-received-param-no-delim",  # §4.5
    "ipv6-in-sdp",  # §4.6
    "mult-ip-in-header",  # §4.7
    "mult-ip-in-sdp",  # §4.8
    "ipv4-mapped-ipv6",  # §4.9
    "ipv6-correct-abnf-2-colons",  # §4.10
]
INVALID_5118 = [
    ("ipv6-bad", "validate", 400),  # §4.2 IPv6 reference without brackets
]
# RFC 5118 leaves these to the implementation (§4.5 with-delim, §4.10 the
# 3-colon form of the old ABNF): either verdict is fine, but only ParseError.
EITHER_5118 = ["via-received-param-with-delim", "ipv6-bug-abnf-3-colons"]


def _load(source: str, name: str) -> bytes:
    return (VECTORS / source / f"{name}.dat").read_bytes()


def _validate(msg: Request | Response) -> None:
    if isinstance(msg, Request):
        validate_request(msg)
    else:
        validate_response(msg)


def test_vectors_cover_every_file() -> None:
    listed = set(VALID_4475) | {n for n, _, _ in INVALID_4475}
    on_disk = {p.stem for p in (VECTORS / "rfc4475").glob("*.dat")}
    assert listed == on_disk
    listed_5118 = set(VALID_5118) | {n for n, _, _ in INVALID_5118} | set(EITHER_5118)
    assert listed_5118 == {p.stem for p in (VECTORS / "rfc5118").glob("*.dat")}


@pytest.mark.parametrize(
    ("source", "name"),
    [("rfc4475", n) for n in VALID_4475] + [("rfc5118", n) for n in VALID_5118],
)
def test_torture_valid_parses_validates_and_round_trips(source: str, name: str) -> None:
    data = _load(source, name)
    msg = parse(data)
    _validate(msg)
    if name != "dblreq":
        assert bytes(msg) == data
    assert len(msg.body) == msg.content_length


@pytest.mark.parametrize(
    ("source", "name", "where", "status"),
    [("rfc4475", *c) for c in INVALID_4475] + [("rfc5118", *c) for c in INVALID_5118],
)
def test_torture_invalid_raises_parse_error(
    source: str, name: str, where: str, status: int
) -> None:
    data = _load(source, name)
    if where == "parse":
        with pytest.raises(ParseError) as exc_info:
            parse(data)
    else:
        msg = parse(data)
        with pytest.raises(ParseError) as exc_info:
            _validate(msg)
    assert exc_info.value.status_hint == status


@pytest.mark.parametrize("name", EITHER_5118)
def test_torture_implementation_defined_raises_only_parse_error(name: str) -> None:
    status = 0
    try:
        _validate(parse(_load("rfc5118", name)))
    except ParseError as exc:
        status = exc.status_hint
    assert status in (0, 400)


def test_torture_wsinv_fields() -> None:
    # RFC 4475 §3.1.1.1: folding, odd spacing, compact forms, mixed case.
    msg = parse(_load("rfc4475", "wsinv"))
    assert isinstance(msg, Request)
    assert msg.method == b"INVITE"
    assert msg.cseq.seq == 9
    assert msg.cseq.method == b"INVITE"
    assert msg.max_forwards == 68
    assert msg.call_id == b"wsinv.ndaksdj@192.0.2.1"
    assert msg.to.tag == b"1918181833n"
    assert msg.to_tag == b"1918181833n"
    assert msg.from_tag == b"98asjd8"
    assert len(msg.via) == 3
    assert msg.via_branch == msg.via[0].branch
    assert msg.header("subject") == b""
    assert msg.header("NewFangledHeader") == b"newfangled value continued newfangled value"
    assert len(msg.route) == 1
    assert msg.content_length == 150


def test_torture_dblreq_truncates_the_datagram() -> None:
    # RFC 3261 §18.3: "the extra octets are discarded"; RFC 4475 §3.1.1.8.
    data = _load("rfc4475", "dblreq")
    msg = parse(data)
    assert msg.body == b""
    assert bytes(msg) == data[: data.index(b"\r\n\r\n") + 4]
    assert msg.call_id == b"dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_torture_esc02_repeated_contacts_and_odd_name() -> None:
    msg = parse(_load("rfc4475", "esc02"))
    assert isinstance(msg, Request)
    assert msg.method == b"RE%47IST%45R"
    assert isinstance(msg.contact, tuple)
    assert len(msg.contact) == 2
    assert msg.header("c%6fntact") == b"<sip:alias2@host2.example.com>"


def test_torture_noreason_and_unreason() -> None:
    msg = parse(_load("rfc4475", "noreason"))
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (100, b"")
    msg = parse(_load("rfc4475", "unreason"))
    assert isinstance(msg, Response)
    assert msg.status == 200
    assert "простое".encode() in msg.reason


def test_torture_bext01_needs_420() -> None:
    msg = parse(_load("rfc4475", "bext01"))
    assert isinstance(msg, Request)
    assert unsupported_options(msg, [b"100rel"]) == (
        b"nothingSupportsThis",
        b"nothingSupportsThisEither",
    )
    assert msg.proxy_require == (b"noProxiesSupportThis", b"norDoAnyProxiesSupportThis")


def test_torture_zeromf_max_forwards_zero() -> None:
    msg = parse(_load("rfc4475", "zeromf"))
    assert msg.max_forwards == 0


def test_torture_errors_name_the_header() -> None:
    msg = parse(_load("rfc4475", "scalar02"))
    with pytest.raises(ParseError) as exc_info:
        _ = msg.cseq
    assert exc_info.value.header == "cseq"
    assert "CSeq" in exc_info.value.reason
    with pytest.raises(ParseError) as exc_info:
        _ = msg.max_forwards
    assert exc_info.value.header == "max-forwards"
    with pytest.raises(ParseError) as exc_info:
        _ = msg.expires
    assert exc_info.value.header == "expires"
