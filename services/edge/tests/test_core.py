"""core.py: what the edge answers by itself, table-driven, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmesh_edge import core
from sipmesh_edge.branch import BranchMaker, loop_hash, parse_branch
from sipmesh_edge.core import EdgeIdentity, Garbage, KeepAlive
from sipmsg import ParseError, Request, Response, parse, validate_request, validate_response

VECTORS = Path(__file__).parents[3] / "libs" / "sipmsg" / "tests" / "vectors" / "rfc4475"
ME = EdgeIdentity(
    edge_id="e1",
    hosts=frozenset({b"192.0.2.10", b"edge.example.com", b"2001:db8::10"}),
    ports=frozenset({5060}),
    supported=(b"path",),
)


def request(
    method: str = "REGISTER",
    uri: str = "sip:example.com",
    *,
    via: str = "SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-abc",
    max_forwards: str | None = "70",
    cseq_method: str | None = None,
    extra: str = "",
) -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "From: <sip:alice@example.com>;tag=a1",
        "To: <sip:alice@example.com>",
        "Call-ID: c1@198.51.100.7",
        f"CSeq: 1 {cseq_method or method}",
    ]
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    if extra:
        lines.append(extra)
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


def classify_request(data: bytes) -> Request:
    msg = core.classify(data)
    assert isinstance(msg, Request)
    return msg


# RFC 4475 torture messages: (file, status the edge answers or None for silence/forward).
# None for a valid request means "no local answer: forwarded to a service".
TORTURE = [
    ("wsinv", None),
    ("intmeth", 501),  # §3.1.1.2: an unknown (but valid) method
    ("esc02", 501),  # §3.1.1.5: RE%47IST%45R is not REGISTER
    ("dblreq", None),
    ("zeromf", 483),  # §3.2.2: Max-Forwards 0 on an OPTIONS to someone else
    ("badvers", 505),  # §3.1.2.17
    ("clerr", 400),  # §3.1.2.2 Content-Length larger than the message
    ("ncl", 400),  # §3.1.2.3 negative Content-Length: salvaged without it
    ("ltgtruri", 400),
    ("lwsruri", 400),
    ("lwsstart", 400),
    ("trws", 400),
    ("escruri", 400),
    ("mismatch01", 400),
    # §3.1.2.15 bad Contact: the edge no longer parses Contact on its hot path
    # (core.check_request); the registrar parses it and answers the 400.
    ("regbadct", None),
    ("unkscm", 416),  # §3.3.2
    ("novelsc", 416),
    # §3.1.2.1 extraneous separators: only the Via values after the top one
    # are broken (";;,;,,"); the top one reads "SIP/2.0/UDP 192.0.2.15", and
    # RFC 3261 §18.2.2 sends a response by the top Via alone.
    ("badinv01", 400),
    # §3.1.2.4 overlarge CSeq, Max-Forwards and Expires: "respond with a 400"
    # (the 400 copies the CSeq as it came, out of range).
    ("scalar02", 400),
    # §3.3 multi01, multiple values in single-value required fields: a 400
    # copying the first From, To, Call-ID and CSeq (see make_response).
    ("multi01", 400),
    ("insuf", None),  # no Call-ID: a response cannot be built
    ("quotbal", 400),  # §3.1.2.6: To unparseable; the 400 copies it as it came
    ("bigcode", None),  # a response: never answered
]


@pytest.mark.parametrize(("name", "status"), TORTURE, ids=[t[0] for t in TORTURE])
def test_classify_torture_answers_or_stays_silent(name: str, status: int | None) -> None:
    incoming = core.classify((VECTORS / f"{name}.dat").read_bytes())
    if isinstance(incoming, Garbage):
        got = None if incoming.response is None else incoming.response.status
    elif isinstance(incoming, Request):
        answer = core.answer_locally(incoming, ME)
        got = None if answer is None else answer.status
    else:
        got = None
    assert got == status


def test_classify_garbage_response_names_the_header() -> None:
    data = request(cseq_method="INVITE")
    incoming = core.classify(data)
    assert isinstance(incoming, Garbage)
    assert incoming.response is not None
    assert incoming.response.status == 400
    assert b"CSeq" in incoming.response.reason
    assert incoming.response.call_id == b"c1@198.51.100.7"


def _torture_400(name: str) -> Response:
    incoming = core.classify((VECTORS / f"{name}.dat").read_bytes())
    assert isinstance(incoming, Garbage)
    assert incoming.response is not None
    assert incoming.response.status == 400
    return incoming.response


def test_classify_repeated_single_value_headers_400_copies_the_first() -> None:
    # RFC 4475 §3.3 multi01: two CSeq, Call-ID, From and To lines each.
    resp = _torture_400("multi01")
    assert resp.headers.get_lines(b"call-id") == [b"multi01.98asdh@192.0.2.1"]
    assert resp.headers.get_lines(b"cseq") == [b"5 INVITE"]
    assert resp.headers.get_lines(b"from") == [b"sip:caller@example.com;tag=3413415"]
    (to,) = resp.headers.get_lines(b"to")
    assert to.startswith(b"sip:user@example.com;tag=")
    assert resp.headers.get_lines(b"via") == [b"SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw"]
    validate_response(resp)  # one of each: the client can match it


def test_classify_overlarge_cseq_400_copies_it_raw() -> None:
    # RFC 4475 §3.1.2.4 scalar02: the CSeq number is above 2**31, and the
    # response copies it anyway (RFC 3261 §8.2.6.2 "MUST equal").
    resp = _torture_400("scalar02")
    assert resp.header(b"cseq") == b"36893488147419103232 REGISTER"
    assert resp.header(b"call-id") == b"scalar02.23o0pd9vanlq3wnrlnewofjas9ui32"


def test_classify_broken_later_via_values_400_copies_the_via_raw() -> None:
    # RFC 4475 §3.1.2.1 badinv01: "Via: SIP/2.0/UDP 192.0.2.15;;,;,,".
    resp = _torture_400("badinv01")
    assert resp.headers.get_lines(b"via") == [b"SIP/2.0/UDP 192.0.2.15;;,;,,"]
    assert resp.header(b"cseq") == b"8 INVITE"


@pytest.mark.parametrize(
    "via",
    [
        "SIP/2.0/UDP ;branch=z9hG4bK-abc",  # no sent-by
        ";, SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-abc",  # the top value is empty
        "SIP/2.0 198.51.100.7;branch=z9hG4bK-abc",  # no transport
    ],
)
def test_classify_unusable_top_via_is_silent(via: str) -> None:
    # RFC 3261 §18.2.2: a response goes where the top Via says; without a
    # usable one there is nothing to address it to.
    incoming = core.classify(request(via=via, max_forwards="300"))
    assert isinstance(incoming, Garbage)
    assert incoming.response is None


@pytest.mark.parametrize("data", [b"\r\n\r\n", b"\r\n", b"\n"])
def test_classify_crlf_is_keepalive(data: bytes) -> None:
    assert isinstance(core.classify(data), KeepAlive)


@pytest.mark.parametrize(
    "data",
    [b"hello", b"\x00\xff" * 40, b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", b"ACK sip:x SIP/3.0\r\n\r\n"],
)
def test_classify_unanswerable_garbage_is_silent(data: bytes) -> None:
    incoming = core.classify(data)
    assert isinstance(incoming, Garbage)
    assert incoming.response is None


def test_classify_bad_ack_is_never_answered() -> None:
    incoming = core.classify(request("ACK", cseq_method="INVITE", extra="Contact: <bad"))
    assert isinstance(incoming, Garbage)
    assert incoming.response is None


LOCAL = [
    ("register-forwarded", request(), None),
    ("unknown-method-501", request("FOO"), 501),
    ("max-forwards-0-483", request("INVITE", max_forwards="0"), 483),
    ("no-max-forwards-forwarded", request("INVITE", max_forwards=None), None),
    ("loop-482", request("INVITE", extra="Via: SIP/2.0/UDP edge.example.com;branch=z9hG4bKx"), 482),
    ("ack-never-answered", request("ACK", max_forwards="0", cseq_method="ACK"), None),
    ("options-to-user-forwarded", request("OPTIONS", "sip:bob@192.0.2.10"), None),
    ("options-to-other-host-forwarded", request("OPTIONS", "sip:192.0.2.99"), None),
    ("options-to-self-port-5060", request("OPTIONS", "sip:192.0.2.10:5060"), 200),
    ("options-to-self-ipv6", request("OPTIONS", "sip:[2001:DB8::10]"), 200),
    ("options-to-self-mf0", request("OPTIONS", "sip:edge.example.com", max_forwards="0"), 200),
    ("options-to-self-other-port", request("OPTIONS", "sip:192.0.2.10:5070"), None),
]


@pytest.mark.parametrize(("data", "status"), [c[1:] for c in LOCAL], ids=[c[0] for c in LOCAL])
def test_answer_locally(data: bytes, status: int | None) -> None:
    answer = core.answer_locally(classify_request(data), ME)
    assert (None if answer is None else answer.status) == status


def test_answer_locally_options_lists_allow_accept_supported() -> None:
    answer = core.answer_locally(classify_request(request("OPTIONS", "sip:192.0.2.10")), ME)
    assert answer is not None
    assert set(answer.allow) == core.SUPPORTED_METHODS
    assert answer.header("accept") == b"application/sdp"
    assert answer.supported == (b"path",)
    assert answer.to.tag is not None


def test_answer_locally_501_has_allow() -> None:
    answer = core.answer_locally(classify_request(request("FOO")), ME)
    assert answer is not None
    assert b"INVITE" in answer.allow


@pytest.mark.parametrize(
    ("via", "source", "expected_top"),
    [
        # RFC 3581 §4: empty rport is filled, received added even when equal.
        (
            "SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK1;rport",
            ("198.51.100.7", 5062),
            b"SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK1;rport=5062;received=198.51.100.7",
        ),
        # §18.2.1: sent-by differs from the source (NAT): received only.
        (
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1",
            ("203.0.113.9", 40000),
            b"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;received=203.0.113.9",
        ),
        # A domain name always gets received.
        (
            "SIP/2.0/UDP phone.example.com;branch=z9hG4bK1;rport",
            ("::1", 7000),
            b"SIP/2.0/UDP phone.example.com;branch=z9hG4bK1;rport=7000;received=::1",
        ),
    ],
)
def test_stamp_via(via: str, source: tuple[str, int], expected_top: bytes) -> None:
    req = classify_request(request(via=via))
    stamped = parse(core.stamp_via(req, *source))
    assert bytes(stamped.via[0]) == expected_top
    assert stamped.call_id == req.call_id
    assert stamped.headers.lines[1:] == req.headers.lines[1:]


@pytest.mark.parametrize(
    ("via", "source", "expected_via"),
    [
        # The other parameters stay as written (case, order, empty items).
        (
            "SIP/2.0/UDP 10.0.0.5:5060;Branch=z9hG4bK1;;RPORT;X=Y",
            ("203.0.113.9", 40000),
            b"SIP/2.0/UDP 10.0.0.5:5060;Branch=z9hG4bK1;;rport=40000;X=Y;received=203.0.113.9",
        ),
        # A received the client wrote is replaced in place (Via.with_received does so too).
        (
            "SIP/2.0/UDP 10.0.0.5:5060;received=10.0.0.5;branch=z9hG4bK1",
            ("203.0.113.9", 40000),
            b"SIP/2.0/UDP 10.0.0.5:5060;received=203.0.113.9;branch=z9hG4bK1",
        ),
        # An rport with a value is left alone.
        (
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport=5060",
            ("203.0.113.9", 40000),
            b"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport=5060;received=203.0.113.9",
        ),
        # Quotes or white space in the parameters: rebuilt by sipmsg.
        (
            'SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;x="a b";rport',
            ("203.0.113.9", 40000),
            b'SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;x="a b";rport=40000;received=203.0.113.9',
        ),
        # IPv6 (RFC 5118): the same address written another way needs no received.
        (
            "SIP/2.0/UDP [2001:db8::0:9]:5060;branch=z9hG4bK1",
            ("2001:db8::9", 5060),
            b"SIP/2.0/UDP [2001:db8::0:9]:5060;branch=z9hG4bK1",
        ),
        # No parameters at all (an RFC 2543 peer).
        (
            "SIP/2.0/UDP 10.0.0.5",
            ("203.0.113.9", 5060),
            b"SIP/2.0/UDP 10.0.0.5;received=203.0.113.9",
        ),
    ],
)
def test_stamp_via_splices_the_top_via_line(
    via: str, source: tuple[str, int], expected_via: bytes
) -> None:
    data = request(via=via)
    stamped = core.stamp_via(classify_request(data), *source)
    assert stamped == data.replace(via.encode(), expected_via)


def test_stamp_via_folded_line() -> None:
    # §7.3.1 line folding: the Via value continues on the next line.
    data = request(
        via="SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1,\r\n SIP/2.0/UDP 10.0.0.6;branch=z9hG4bK2"
    )
    stamped = parse(core.stamp_via(classify_request(data), "203.0.113.9", 5060))
    assert [bytes(v) for v in stamped.via] == [
        b"SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1;received=203.0.113.9",
        b"SIP/2.0/UDP 10.0.0.6;branch=z9hG4bK2",
    ]


def test_stamp_via_only_the_top_via_line() -> None:
    top = "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1"
    data = request(via=top, extra=f"Via: {top}")  # the same text on a second Via line
    stamped = core.stamp_via(classify_request(data), "203.0.113.9", 5060)
    assert stamped.count(b"received=") == 1
    assert parse(stamped).via[0].received == b"203.0.113.9"


def test_stamp_via_unchanged_when_source_matches() -> None:
    req = classify_request(request())
    assert core.stamp_via(req, "198.51.100.7", 5062) == bytes(req)


def test_stamp_via_keeps_the_other_vias_of_one_line() -> None:
    via = "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.6;branch=z9hG4bK2"
    stamped = parse(core.stamp_via(classify_request(request(via=via)), "203.0.113.9", 5060))
    assert [v.host for v in stamped.via] == [b"10.0.0.5", b"10.0.0.6"]
    assert stamped.via[0].received == b"203.0.113.9"


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        ("SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1;rport", ("203.0.113.9", 40000)),
        ("SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1", ("203.0.113.9", 5070)),
        ("SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1", ("203.0.113.9", 5060)),
    ],
)
def test_response_destination(via: str, expected: tuple[str, int]) -> None:
    top = classify_request(request(via=via)).via[0]
    assert core.response_destination(top, ("203.0.113.9", 40000)) == expected


def test_bus_subject_for() -> None:
    assert core.bus_subject_for(classify_request(request())) == "sip.register"
    assert core.bus_subject_for(classify_request(request("INVITE"))) == "sip.route"


def test_retry_later_has_retry_after() -> None:
    resp = core.retry_later(classify_request(request()), 7)
    assert resp is not None
    assert resp.status == 503
    assert resp.header("retry-after") == b"7"


def test_without_top_via_pops_ours() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP edge;branch=z9hG4bKe, SIP/2.0/UDP a;branch=z9hG4bKa\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    resp = parse(data)
    assert isinstance(resp, Response)
    up = core.without_top_via(resp)
    assert [v.host for v in up.via] == [b"a"]


def _came_back(received: bytes, now_uri: str, *, branch: bytes | None = None) -> Request:
    """``received`` forwarded by this edge (our Via on top) and received again at ``now_uri``."""
    first = classify_request(received)
    ours = branch if branch is not None else BranchMaker("e1").make(first)
    data = received.replace(
        b"Via: ", b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=" + ours + b"\r\nVia: ", 1
    )
    data = data.replace(first.uri, now_uri.encode(), 1)
    return classify_request(data)


def test_answer_locally_a_request_that_comes_back_unchanged_is_a_loop_482() -> None:
    looped = _came_back(request("INVITE", "sip:bob@example.com"), "sip:bob@example.com")
    answer = core.answer_locally(looped, ME)
    assert answer is not None
    assert answer.status == 482


def test_answer_locally_a_spiral_with_another_request_uri_is_forwarded() -> None:
    # §16.3 item 4: "If they differ, the request has spiraled, and processing continues".
    spiral = _came_back(request("INVITE", "sip:bob@example.com"), "sip:bob@pbx.example.com")
    assert core.answer_locally(spiral, ME) is None


def test_answer_locally_our_address_with_a_foreign_branch_counts_as_a_loop() -> None:
    looped = _came_back(
        request("INVITE", "sip:bob@example.com"), "sip:bob@example.com", branch=b"z9hG4bK-x"
    )
    answer = core.answer_locally(looped, ME)
    assert answer is not None
    assert answer.status == 482


def test_branch_names_the_edge_and_is_unique() -> None:
    req = classify_request(request("INVITE", "sip:bob@example.com"))
    maker = BranchMaker("edge-7_b")
    first, second = maker.make(req), maker.make(req)
    assert first != second
    assert first.startswith(b"z9hG4bK")  # §8.1.1.7 magic cookie
    info = parse_branch(first)
    assert info is not None
    assert info.edge_id == "edge-7_b"
    assert info.loop_hash == loop_hash(req)
    assert parse_branch(b"z9hG4bK-abc") is None
    assert parse_branch(b"z9hG4bK.e1") is None


def test_loop_hash_changes_with_each_loop_relevant_field() -> None:
    base = request("INVITE", "sip:bob@example.com")
    variants = [
        base.replace(b"sip:bob@example.com SIP", b"sip:carl@example.com SIP"),
        base.replace(b";tag=a1", b";tag=a2"),
        base.replace(b"c1@198", b"c2@198"),
        base.replace(b"CSeq: 1 ", b"CSeq: 2 "),
        base.replace(b"Content-Length", b"Proxy-Require: foo\r\nContent-Length"),
    ]
    hashes = {loop_hash(classify_request(v)) for v in [base, *variants]}
    assert len(hashes) == len(variants) + 1
    # The top Via (the previous hop's) is left out on purpose.
    other_hop = base.replace(b"198.51.100.7:5062", b"203.0.113.1:5060", 1)
    assert loop_hash(classify_request(other_hop)) == loop_hash(classify_request(base))


def test_classify_leaves_contact_checks_to_the_services() -> None:
    data = (VECTORS / "regbadct.dat").read_bytes()
    req = classify_request(data)
    with pytest.raises(ParseError) as exc_info:
        validate_request(req)  # what the registrar's own parse of Contact runs into
    assert exc_info.value.header == "contact"


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (b"192.0.2.10", 5060, True),  # canonical dotted quad: decided by its text
        (b"192.0.2.11", 5060, False),
        (b"192.000.002.010", 5060, True),  # leading zeros: compared by value
        (b"192.0.2.10", 5070, False),
        (b"[2001:DB8::10]", None, True),  # RFC 5118: IPv6 compared by value
        (b"EDGE.example.com", 5060, True),
        (b"999.0.2.10", 5060, False),
    ],
)
def test_edge_identity_is_self(host: bytes, port: int | None, expected: bool) -> None:
    me = EdgeIdentity(
        edge_id="e1",
        hosts=frozenset({b"192.0.2.10", b"2001:db8:0::10", b"edge.example.com"}),
        ports=frozenset({5060}),
    )
    assert me.is_self(host, port) is expected
