"""Tests for sipmsg.via: parsing (RFC 3261, 4475, 5118), received/rport, building."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipmsg._errors import ParseError
from sipmsg.via import (
    MAGIC_COOKIE,
    Via,
    is_rfc3261_branch,
    make_via,
    parse_via,
    parse_via_list,
)

CASES = [
    pytest.param(
        b"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
        (b"SIP/2.0", b"UDP", b"pc33.atlanta.com", None),
        ((b"branch", b"z9hG4bK776asdhds"),),
        id="rfc3261-example",
    ),
    pytest.param(
        b"SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1;rport;received=192.0.2.1",
        (b"SIP/2.0", b"TCP", b"192.0.2.1", 5060),
        ((b"branch", b"z9hG4bK1"), (b"rport", None), (b"received", b"192.0.2.1")),
        id="rport-flag",
    ),
    pytest.param(
        b"SIP/2.0/wss df7jal23ls0d.invalid;branch=z9hG4bKasudf;rport=5060",
        (b"SIP/2.0", b"WSS", b"df7jal23ls0d.invalid", None),
        ((b"branch", b"z9hG4bKasudf"), (b"rport", b"5060")),
        id="rfc7118-wss-lowercase",
    ),
    # RFC 4475 §3.1.1.1 wsinv (folding already undone)
    pytest.param(
        b"SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw",
        (b"SIP/2.0", b"UDP", b"192.0.2.2", None),
        ((b"branch", b"390skdjuw"),),
        id="rfc4475-wsinv-1",
    ),
    pytest.param(
        b"SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8",
        (b"SIP/2.0", b"TCP", b"spindle.example.com", None),
        ((b"branch", b"z9hG4bK9ikj8"),),
        id="rfc4475-wsinv-2",
    ),
    # RFC 4475 §3.1.1.12 transports: an unknown transport is a token
    pytest.param(
        b"SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
        (b"SIP/2.0", b"UNKNOWN", b"t4.example.com", None),
        ((b"branch", b"z9hG4bKasd0f3en"),),
        id="rfc4475-transports",
    ),
    # RFC 4475 inv2543: no branch at all
    pytest.param(
        b"SIP/2.0/UDP iftgw.example.com",
        (b"SIP/2.0", b"UDP", b"iftgw.example.com", None),
        (),
        id="rfc4475-inv2543",
    ),
    # RFC 5118 §4.1, mult-ip-in-header.dat, ipv4-mapped-ipv6.dat
    pytest.param(
        b"SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111",
        (b"SIP/2.0", b"UDP", b"[2001:db8::9:1]", 6050),
        ((b"branch", b"z9hG4bKas3-111"),),
        id="rfc5118-ipv6-port",
    ),
    pytest.param(
        b"SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200",
        (b"SIP/2.0", b"TCP", b"[2001:db8::9:255]", None),
        ((b"branch", b"z9hG4bK451jj"), (b"received", b"192.0.2.200")),
        id="rfc5118-mult-ip",
    ),
    pytest.param(
        b"SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19",
        (b"SIP/2.0", b"UDP", b"[::ffff:192.0.2.10]", 19823),
        ((b"branch", b"z9hG4bKbh19"),),
        id="rfc5118-ipv4-mapped",
    ),
    # RFC 5118 §4.5 / §4.6: received with and without brackets
    pytest.param(
        b"SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3",
        (b"SIP/2.0", b"UDP", b"[2001:db8::9:1]", None),
        ((b"received", b"2001:db8::9:255"), (b"branch", b"z9hG4bKas3")),
        id="rfc5118-received-no-delim",
    ),
    pytest.param(
        b"SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111",
        (b"SIP/2.0", b"UDP", b"[2001:db8::9:1]", None),
        ((b"received", b"[2001:db8::9:255]"), (b"branch", b"z9hG4bKas3-111")),
        id="rfc5118-received-with-delim",
    ),
    pytest.param(
        b"SIP/2.0/UDP host.example.com : 5070 ;branch=z9hG4bKx;maddr=224.0.1.75;ttl=16",
        (b"SIP/2.0", b"UDP", b"host.example.com", 5070),
        ((b"branch", b"z9hG4bKx"), (b"maddr", b"224.0.1.75"), (b"ttl", b"16")),
        id="lws-around-colon",
    ),
    pytest.param(
        b'SIP/2.0/UDP a.example.com;branch=z9hG4bKx;ext="quoted;value"',
        (b"SIP/2.0", b"UDP", b"a.example.com", None),
        ((b"branch", b"z9hG4bKx"), (b"ext", b'"quoted;value"')),
        id="quoted-extension",
    ),
    # RFC 4475 esc02: a "%" in a branch is still a token character
    pytest.param(
        b"SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234",
        (b"SIP/2.0", b"TCP", b"host.example.com", None),
        ((b"branch", b"z9hG4bK209%fzsnel234"),),
        id="rfc4475-esc02",
    ),
]


@pytest.mark.parametrize(("raw", "head", "params"), CASES)
def test_parse_via_fields_and_round_trip(
    raw: bytes, head: tuple[object, ...], params: object
) -> None:
    via = parse_via(raw)
    assert (via.protocol, via.transport, via.host, via.port) == head
    assert via.params == params
    assert bytes(via) == raw


def test_via_properties() -> None:
    via = parse_via(
        b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;received=192.0.2.1;rport=4000"
        b";maddr=224.0.1.75;ttl=16"
    )
    assert via.branch == b"z9hG4bKabc"
    assert via.received == b"192.0.2.1"
    assert via.rport == 4000
    assert via.has_rport
    assert via.maddr == b"224.0.1.75"
    assert via.ttl == 16
    assert via.sent_by == b"10.0.0.1:5060"


def test_via_rport_flag_without_value() -> None:
    via = parse_via(b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKabc;rport")
    assert via.has_rport
    assert via.rport is None
    plain = parse_via(b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKabc")
    assert not plain.has_rport
    assert (plain.rport, plain.received, plain.maddr, plain.ttl) == (None, None, None, None)


BAD_VIAS = [
    pytest.param(b"", id="empty"),
    pytest.param(b"SIP/2.0/UDP", id="no-sent-by"),
    pytest.param(b"SIP/2.0/UDP ", id="blank-sent-by"),
    pytest.param(b"SIP/2.0 UDP host", id="missing-slash"),
    pytest.param(b"SIP/2.0/ host", id="empty-transport"),
    pytest.param(b"SIP/2.0/U<P host", id="bad-transport"),
    pytest.param(b"SIP/2.0/UDP host;branch", id="branch-no-value"),
    pytest.param(b"SIP/2.0/UDP host;branch=a<b", id="branch-not-token"),
    pytest.param(b"SIP/2.0/UDP host:99999", id="port-range"),
    pytest.param(b"SIP/2.0/UDP host:", id="empty-port"),
    pytest.param(b"SIP/2.0/UDP bad..host", id="bad-host"),
    # RFC 5118 §4.3: IPv6 in sent-by must be bracketed
    pytest.param(b"SIP/2.0/UDP 2001:db8::9:1;branch=z9hG4bKx", id="rfc5118-unbracketed"),
    pytest.param(b"SIP/2.0/UDP [2001:db8:::1];branch=z9hG4bKx", id="rfc5118-3-colons"),
    pytest.param(b"SIP/2.0/UDP [2001:db8::1", id="unterminated-v6"),
    pytest.param(b"SIP/2.0/UDP [2001:db8::1] x", id="junk-after-v6"),
    pytest.param(b"SIP/2.0/UDP host;received=example.com", id="received-hostname"),
    pytest.param(b"SIP/2.0/UDP host;received", id="received-no-value"),
    pytest.param(b"SIP/2.0/UDP host;rport=x", id="rport-not-digits"),
    pytest.param(b"SIP/2.0/UDP host;ttl=300", id="ttl-range"),
    pytest.param(b"SIP/2.0/UDP host;maddr", id="maddr-no-value"),
    pytest.param(b"SIP/2.0/UDP host;maddr=a..b", id="maddr-bad"),
    pytest.param(b"SIP/2.0/UDP host;x=a b", id="bad-gen-value"),
    pytest.param(b"SIP/2.0/UDP host;=x", id="empty-param-name"),
    pytest.param(b"SIP/2.0/UDP host;x=", id="empty-param-value"),
    pytest.param(b'SIP/2.0/UDP host;x="open', id="unterminated-quote"),
    pytest.param(b"SIP/2.0/UDP host junk", id="junk-after-host"),
]


@pytest.mark.parametrize("raw", BAD_VIAS)
def test_parse_via_rejects_malformed(raw: bytes) -> None:
    with pytest.raises(ParseError) as exc_info:
        parse_via(raw)
    assert exc_info.value.status_hint == 400
    assert exc_info.value.header == "via"


def test_parse_via_list_splits_values() -> None:
    vias = parse_via_list(
        b"SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8 ,"
        b" SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239"
    )
    assert [v.host for v in vias] == [b"spindle.example.com", b"192.168.255.111"]
    assert [v.branch for v in vias] == [b"z9hG4bK9ikj8", b"z9hG4bK30239"]
    assert bytes(vias[0]) == b"SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8"


def test_parse_via_list_single() -> None:
    (via,) = parse_via_list(b"SIP/2.0/UDP a.example.com;branch=z9hG4bK1")
    assert via.host == b"a.example.com"


@pytest.mark.parametrize("raw", [b"", b" , ", b"SIP/2.0/UDP a;branch=z9hG4bK1, bogus"])
def test_parse_via_list_rejects(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse_via_list(raw)


# -- branch -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        (b"z9hG4bK776asdhds", True),
        (b"z9hG4bK", False),  # the cookie alone identifies nothing
        (b"z9hg4bk776asdhds", False),  # the cookie is case-sensitive
        (b"390skdjuw", False),
        (None, False),
    ],
)
def test_is_rfc3261_branch(branch: bytes | None, expected: bool) -> None:
    assert is_rfc3261_branch(branch) is expected


def test_magic_cookie() -> None:
    assert MAGIC_COOKIE == b"z9hG4bK"


# -- received / rport (RFC 3261 §18.2.1, RFC 3581 §4) --------------------------------

RECEIVED_CASES = [
    pytest.param(
        b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
        b"192.0.2.1",
        5060,
        b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
        id="same-address-unchanged",
    ),
    pytest.param(
        b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1",
        b"192.0.2.1",
        5060,
        b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=192.0.2.1",
        id="different-address",
    ),
    pytest.param(
        b"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK1",
        b"192.0.2.1",
        5060,
        b"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK1;received=192.0.2.1",
        id="domain-name-always",
    ),
    pytest.param(
        b"SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1",
        b"192.0.2.1",
        40000,
        b"SIP/2.0/UDP 192.0.2.1:5060;rport=40000;branch=z9hG4bK1;received=192.0.2.1",
        id="rfc3581-rport-received-even-if-same",
    ),
    pytest.param(
        b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=1.1.1.1",
        b"192.0.2.1",
        5060,
        b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=192.0.2.1",
        id="replaces-stale-received",
    ),
    pytest.param(
        b"SIP/2.0/UDP [2001:DB8::1]:5060;branch=z9hG4bK1",
        b"2001:db8:0::1",
        5060,
        b"SIP/2.0/UDP [2001:DB8::1]:5060;branch=z9hG4bK1",
        id="ipv6-same-by-value",
    ),
    pytest.param(
        b"SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1;rport",
        b"[2001:db8::2]",
        5070,
        b"SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1;rport=5070;received=2001:db8::2",
        id="ipv6-rport-source-bracketed",
    ),
]


@pytest.mark.parametrize(("raw", "source", "port", "expected"), RECEIVED_CASES)
def test_via_with_received(raw: bytes, source: bytes, port: int, expected: bytes) -> None:
    via = parse_via(raw).with_received(source, port)
    assert bytes(via) == expected
    assert parse_via(bytes(via)) == via


def test_via_with_received_sets_properties() -> None:
    via = parse_via(b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;rport").with_received(
        b"192.0.2.1", 40000
    )
    assert via.rport == 40000
    assert via.received == b"192.0.2.1"


# -- building -----------------------------------------------------------------------


def test_make_via() -> None:
    via = make_via(transport=b"udp", host=b"192.0.2.9", port=5060, branch=b"z9hG4bKab", rport=True)
    assert bytes(via) == b"SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKab;rport"
    assert parse_via(bytes(via)) == via
    v6 = make_via(
        transport=b"TLS", host=b"[2001:db8::5]", branch=b"z9hG4bKcd", params=((b"x", None),)
    )
    assert bytes(v6) == b"SIP/2.0/TLS [2001:db8::5];branch=z9hG4bKcd;x"


def test_via_with_param_and_replace() -> None:
    via = parse_via(b"SIP  /  2.0 / udp  a.example.com ; branch=z9hG4bK1")
    # Unmodified: the bytes as written. Modified: canonical form.
    assert bytes(via) == b"SIP  /  2.0 / udp  a.example.com ; branch=z9hG4bK1"
    assert bytes(via.with_param(b"branch", b"z9hG4bK2")) == (
        b"SIP/2.0/UDP a.example.com;branch=z9hG4bK2"
    )
    assert bytes(dataclasses.replace(via, port=5080)) == (
        b"SIP/2.0/UDP a.example.com:5080;branch=z9hG4bK1"
    )


def test_via_equality_ignores_raw_spelling() -> None:
    assert parse_via(b"SIP/2.0/udp a.example.com;branch=z9hG4bK1") == parse_via(
        b"SIP / 2.0 / UDP a.example.com ; branch=z9hG4bK1"
    )
    assert isinstance(hash(parse_via(b"SIP/2.0/UDP a;branch=z9hG4bK1")), int)
    assert Via(transport=b"UDP", host=b"a") != Via(transport=b"TCP", host=b"a")


# -- robustness -----------------------------------------------------------------

VIA_ALPHABET = [
    b"SIP/2.0/UDP ", b"SIP", b"/", b"2.0", b"UDP", b"TCP", b" ", b"\t", b"host", b".", b"-",
    b"example.com", b"192.0.2.1", b"[", b"]", b"2001:db8::1", b":", b"5060", b";", b"=",
    b"branch", b"z9hG4bK", b"rport", b"received", b"maddr", b"ttl", b"255", b",", b"\"",
    b"\\", b"<", b"\x00", b"\xff", b"%",
]  # fmt: skip

via_texts = st.lists(st.sampled_from(VIA_ALPHABET), max_size=25).map(b"".join)


def _exercise(data: bytes) -> None:
    try:
        vias = parse_via_list(data)
    except ParseError:
        return
    for via in vias:
        _ = (via.branch, via.received, via.rport, via.has_rport, via.maddr, via.ttl)
        hash(via)
        # The canonical form of any parsed Via parses back to an equal Via,
        # and received/rport can always be applied to it.
        rebuilt = dataclasses.replace(via)
        assert parse_via(bytes(rebuilt)) == via
        stamped = via.with_received(b"192.0.2.77", 1234)
        assert parse_via(bytes(dataclasses.replace(stamped))) == stamped


@given(st.binary(max_size=200))
def test_parse_via_binary_only_parse_error(data: bytes) -> None:
    _exercise(data)


@given(via_texts)
def test_parse_via_sip_alphabet_only_parse_error(data: bytes) -> None:
    _exercise(data)


def test_parse_via_long_host_is_fast() -> None:
    with pytest.raises(ParseError):
        parse_via(b"SIP/2.0/UDP " + b"a-" * 20000 + b"-;branch=z9hG4bK1")


@given(
    transport=st.sampled_from([b"UDP", b"TCP", b"TLS", b"SCTP", b"WS", b"WSS"]),
    host=st.sampled_from([b"pc33.atlanta.com", b"192.0.2.1", b"[2001:db8::9:1]"]),
    port=st.none() | st.integers(0, 65535),
    branch=st.text("abcXYZ0189-.!%*_+`'~", min_size=1, max_size=12).map(str.encode),
    rport=st.booleans(),
)
def test_make_via_generated_round_trip(
    transport: bytes, host: bytes, port: int | None, branch: bytes, rport: bool
) -> None:
    via = make_via(
        transport=transport, host=host, port=port, branch=MAGIC_COOKIE + branch, rport=rport
    )
    parsed = parse_via(bytes(via))
    assert parsed == via
    assert parsed.branch == MAGIC_COOKIE + branch
    assert is_rfc3261_branch(parsed.branch)
    assert parsed.has_rport is rport
    assert bytes(parsed) == bytes(via)
