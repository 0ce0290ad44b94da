"""SDP: vector round trips, typed fields, editors that leave other lines alone, fuzzing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipmsg import LocalProtocolError, ParseError
from sipmsg.sdp import (
    Attribute,
    Bandwidth,
    Connection,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
    parse_sdp,
)

VECTORS = Path(__file__).parent / "vectors" / "sdp"
VALID = sorted(p for p in VECTORS.glob("*/*.sdp") if p.parent.name != "invalid")
INVALID = sorted((VECTORS / "invalid").glob("*.sdp"))


def load(name: str) -> SessionDescription:
    return parse_sdp((VECTORS / name).read_bytes())


def changed_lines(before: SessionDescription, after: SessionDescription) -> list[bytes]:
    """Lines of ``after`` that are not in ``before`` (multiset difference)."""
    remaining = list(before.lines)
    extra = []
    for line in after.lines:
        if line in remaining:
            remaining.remove(line)
        else:
            extra.append(line)
    return extra


# --- vectors ------------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_parse_sdp_vector_round_trips(path: Path) -> None:
    data = path.read_bytes()
    sdp = parse_sdp(data)
    assert bytes(sdp) == data
    assert sdp.version == 0
    assert sdp.media
    # Re-parsing the output gives the same description.
    assert parse_sdp(bytes(sdp)) == sdp


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_parse_sdp_invalid_vector_raises(path: Path) -> None:
    data = path.read_bytes()
    with pytest.raises(ParseError) as exc_info:
        parse_sdp(data)
    assert exc_info.value.status_hint == 400


def test_parse_sdp_rfc4475_sdp01_fields() -> None:
    sdp = load("rfc4475/sdp01.sdp")
    assert sdp.origin == Origin(
        username=b"mhandley",
        sess_id=b"29739",
        sess_version=7272939,
        nettype=b"IN",
        addrtype=b"IP4",
        address=b"192.0.2.5",
    )
    assert sdp.session_name == b"-"
    assert sdp.connection == Connection(nettype=b"IN", addrtype=b"IP4", address=b"192.0.2.5")
    assert sdp.times == (Timing(start=0, stop=0),)
    audio, video = sdp.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        b"audio",
        49217,
        b"RTP/AVP",
        (b"0", b"12"),
    )
    assert audio.connection == sdp.connection
    assert audio.connections == ()
    assert video.attributes == (Attribute(name=b"rtpmap", value=b"31 LPC"),)
    # "31 LPC" has no clock rate: not a usable rtpmap, but kept as an attribute.
    assert video.rtpmap(31) is None
    assert sdp.line_ending == b"\r\n"


def test_parse_sdp_rfc4475_multi01_trailing_blank_line_kept() -> None:
    sdp = load("rfc4475/multi01.sdp")
    assert sdp.lines[-1] == b"\r\n"
    assert len(sdp.media) == 2


def test_parse_sdp_rfc5118_media_level_connections() -> None:
    sdp = load("rfc5118/mult-ip-in-sdp.sdp")
    assert sdp.session_name == b""
    assert sdp.connection is None
    audio, video = sdp.media
    assert audio.connection == Connection(nettype=b"IN", addrtype=b"IP4", address=b"192.0.2.1")
    assert video.connection == Connection(nettype=b"IN", addrtype=b"IP6", address=b"2001:db8::1")
    assert video.rtpmap(107) == RtpMap(payload_type=107, encoding=b"H263-1998", clock_rate=90000)


def test_parse_sdp_rfc5118_ipv6_origin_and_times() -> None:
    sdp = load("rfc5118/ipv6-in-sdp.sdp")
    assert sdp.origin.addrtype == b"IP6"
    assert sdp.origin.address == b"2001:db8::20"
    assert sdp.origin.sess_id == b"971731711378798081"
    assert sdp.times == (Timing(start=3338481189, stop=3370017201),)


def test_parse_sdp_all_line_types() -> None:
    sdp = load("rfc8866/all-line-types.sdp")
    assert sdp.information == b"SDP Offer #1"
    assert sdp.bandwidths == (Bandwidth(bwtype=b"CT", bandwidth=1024),)
    assert sdp.attributes == (Attribute(name=b"recvonly"),)
    assert b"y=an unknown line type, kept verbatim\r\n" in sdp.lines
    first, second, video = sdp.media
    assert first.information == b"main audio"
    assert first.bandwidths == (Bandwidth(bwtype=b"AS", bandwidth=64),)
    assert (second.port, second.port_count) == (49180, 2)
    # Session-level recvonly applies to media without their own direction.
    assert first.direction == b"recvonly"
    assert video.connection is not None
    assert video.connection.addrtype == b"IP6"
    assert video.attribute(b"orient") == b"portrait"


def test_parse_sdp_rfc3264_offer_rtpmaps() -> None:
    sdp = load("rfc3264/offer.sdp")
    audio = sdp.media[0]
    assert [m.encoding for m in audio.rtpmaps] == [b"PCMU", b"PCMA", b"iLBC"]
    assert audio.rtpmap(97) == RtpMap(payload_type=97, encoding=b"iLBC", clock_rate=8000)
    assert audio.rtpmap(18) is None
    assert audio.direction == b"sendrecv"


def test_parse_sdp_hold_direction_inheritance() -> None:
    sdp = load("rfc3264/hold-sendonly.sdp")
    assert [m.direction for m in sdp.media] == [b"sendonly", b"inactive"]


def test_parse_sdp_webrtc_offer() -> None:
    sdp = load("webrtc-chrome/offer-bundle.sdp")
    assert sdp.attribute(b"group") == b"BUNDLE 0 1 2"
    assert sdp.attribute(b"extmap-allow-mixed") == b""
    assert sdp.attribute(b"nope") is None
    audio, video, data = sdp.media
    assert audio.proto == b"UDP/TLS/RTP/SAVPF"
    assert audio.rtpmap(111) == RtpMap(
        payload_type=111, encoding=b"opus", clock_rate=48000, parameters=b"2"
    )
    assert audio.fmtp(111) == b"minptime=10;useinbandfec=1"
    assert audio.fmtp(5) is None
    assert audio.attribute(b"setup") == b"actpass"
    assert audio.attribute(b"fingerprint") is not None
    assert len(audio.attribute_values(b"candidate")) == 2
    assert video.direction == b"sendonly"
    assert video.attribute_values(b"rtcp-fb")[:2] == (b"96 goog-remb", b"96 transport-cc")
    assert (data.media, data.proto, data.formats) == (
        b"application",
        b"UDP/DTLS/SCTP",
        (b"webrtc-datachannel",),
    )
    assert data.attribute(b"sctp-port") == b"5000"


def test_parse_sdp_linphone_offer() -> None:
    sdp = load("linphone/offer-srtp-ice.sdp")
    assert sdp.session_name == b"Talk"
    audio = sdp.media[0]
    assert len(audio.formats) == 9
    assert audio.fmtp(18) == b"annexb=yes"
    assert audio.attribute(b"crypto") is not None
    assert audio.attribute_values(b"rtcp-fb") == (b"* trr-int 5000", b"* ccm tmmbr")


def test_parse_sdp_baresip_lf_endings() -> None:
    sdp = load("baresip/offer-ipv6-lf.sdp")
    assert sdp.line_ending == b"\n"
    assert all(line.endswith(b"\n") and not line.endswith(b"\r\n") for line in sdp.lines)
    assert sdp.media[0].rtpmap(101) == RtpMap(
        payload_type=101, encoding=b"telephone-event", clock_rate=8000
    )


# --- malformed ------------------------------------------------------------------------

BASE = b"v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\r\n\r\n", id="blank"),
        pytest.param(BASE[5:], id="no-v"),
        pytest.param(b"v=0\r\ns=-\r\nt=0 0\r\n", id="no-o"),
        pytest.param(BASE.replace(b"s=-\r\n", b""), id="no-s"),
        pytest.param(BASE.replace(b"v=0", b"v =0"), id="space-before-equal"),
        pytest.param(BASE.replace(b"v=0", b"V=0"), id="upper-case-type"),
        pytest.param(BASE.replace(b"v=0", b"v=zero"), id="version-not-number"),
        pytest.param(BASE + b"v=0\r\n", id="two-v"),
        pytest.param(BASE + b"o=- 1 2 IN IP4 192.0.2.1\r\n", id="two-o"),
        pytest.param(BASE + b"s=x\r\n", id="two-s"),
        pytest.param(BASE + b"c=IN IP4 192.0.2.2\r\n", id="two-session-c"),
        pytest.param(BASE.replace(b"1 2 IN", b"1 two IN"), id="o-version-not-number"),
        pytest.param(BASE.replace(b"1 2 IN", b"1 IN"), id="o-five-fields"),
        pytest.param(BASE.replace(b"c=IN IP4 192.0.2.1", b"c=IN IP4"), id="c-two-fields"),
        pytest.param(BASE.replace(b"t=0 0", b"t=0"), id="t-one-field"),
        pytest.param(BASE + b"b=AS\r\n", id="b-no-colon"),
        pytest.param(BASE + b"b=AS:lots\r\n", id="b-not-number"),
        pytest.param(BASE + b"a=\r\n", id="a-empty-name"),
        pytest.param(BASE + b"a=bad name:1\r\n", id="a-name-not-token"),
        pytest.param(BASE + b"m=audio 70000 RTP/AVP 0\r\n", id="m-port-too-big"),
        pytest.param(BASE + b"m=audio 7000/0 RTP/AVP 0\r\n", id="m-zero-ports"),
        pytest.param(BASE + b"m=audio x RTP/AVP 0\r\n", id="m-port-not-number"),
        pytest.param(BASE + b"m=audio 7000\r\n", id="m-two-fields"),
        pytest.param(BASE + b"m=audio 7000 RTP/AVP 0\r\nt=0 0\r\n", id="t-in-media"),
        pytest.param(BASE + b"a=x:y\rz\r\n", id="bare-cr"),
        pytest.param(BASE + b"a=x:\x00\r\n", id="nul"),
    ],
)
def test_parse_sdp_malformed_raises(data: bytes) -> None:
    with pytest.raises(ParseError) as exc_info:
        parse_sdp(data)
    assert exc_info.value.status_hint == 400


def test_parse_sdp_no_final_line_ending() -> None:
    data = BASE + b"m=audio 7000 RTP/AVP 0"
    sdp = parse_sdp(data)
    assert bytes(sdp) == data
    assert sdp.media[0].formats == (b"0",)


def test_parse_sdp_mixed_line_endings_round_trip() -> None:
    data = BASE.replace(b"s=-\r\n", b"s=-\n") + b"m=audio 7000 RTP/AVP 0\n"
    assert bytes(parse_sdp(data)) == data


def test_parse_sdp_media_without_formats_is_tolerated() -> None:
    sdp = parse_sdp(BASE + b"m=audio 0 RTP/AVP\r\n")
    assert sdp.media[0].formats == ()


@given(st.binary(max_size=300))
def test_parse_sdp_arbitrary_bytes_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        assert bytes(parse_sdp(data)) == data


sdp_lines = st.lists(
    st.sampled_from(
        [
            b"c=IN IP4 192.0.2.9",
            b"b=AS:10",
            b"a=sendonly",
            b"a=rtpmap:0 PCMU/8000",
            b"a=fmtp:0 x",
            b"m=audio 4000 RTP/AVP 0",
            b"m=video 0 RTP/AVP 31",
            b"k=clear:x",
            b"x=unknown",
            b"",
        ]
    ),
    max_size=12,
)


@given(sdp_lines, st.sampled_from([b"\r\n", b"\n"]))
def test_parse_sdp_structured_round_trip(lines: list[bytes], eol: bytes) -> None:
    data = BASE.replace(b"\r\n", eol) + b"".join(line + eol for line in lines)
    with contextlib.suppress(ParseError):
        sdp = parse_sdp(data)
        assert bytes(sdp) == data
        assert len(sdp.media) == sum(line.startswith(b"m=") for line in lines)


# --- editors ----------------------------------------------------------------------------


def test_with_connection_address_rewrites_every_c_line() -> None:
    before = load("rfc5118/mult-ip-in-sdp.sdp")
    after = before.with_connection_address(b"198.51.100.7")
    assert [m.connection for m in after.media] == [
        Connection(nettype=b"IN", addrtype=b"IP4", address=b"198.51.100.7")
    ] * 2
    assert changed_lines(before, after) == [
        b"c=IN IP4 198.51.100.7\r\n",
        b"c=IN IP4 198.51.100.7\r\n",
    ]
    assert len(after.lines) == len(before.lines)


def test_with_connection_address_ipv6_one_media() -> None:
    before = load("rfc3264/offer.sdp")
    after = before.with_connection_address(b"2001:db8::7", media=1)
    assert after.media[1].connection == Connection(
        nettype=b"IN", addrtype=b"IP6", address=b"2001:db8::7"
    )
    assert after.media[0].connection == before.connection
    assert (
        after.lines.index(b"c=IN IP6 2001:db8::7\r\n")
        == before.lines.index(b"m=video 51372 RTP/AVP 31 32\r\n") + 1
    )
    assert changed_lines(before, after) == [b"c=IN IP6 2001:db8::7\r\n"]


def test_with_media_port_keeps_other_lines_and_count() -> None:
    before = load("rfc8866/all-line-types.sdp")
    after = before.with_media_port(1, 30000)
    assert (after.media[1].port, after.media[1].port_count) == (30000, 2)
    assert changed_lines(before, after) == [b"m=audio 30000/2 RTP/AVP 0\r\n"]
    assert after.media[0].port == before.media[0].port


def test_with_origin_address_and_version() -> None:
    before = load("baresip/offer-ipv6-lf.sdp")
    after = before.with_origin_address(b"203.0.113.1").with_session_version(1700000002)
    assert after.origin.address == b"203.0.113.1"
    assert after.origin.addrtype == b"IP4"
    assert after.origin.sess_version == 1700000002
    assert changed_lines(before, after) == [b"o=- 1700000000 1700000002 IN IP4 203.0.113.1\n"]


def test_with_attribute_replaces_in_place_and_appends() -> None:
    before = load("webrtc-chrome/offer-bundle.sdp")
    after = before.with_attribute(b"setup", b"passive", media=0)
    assert after.media[0].attribute(b"setup") == b"passive"
    assert after.lines.index(b"a=setup:passive\r\n") == before.lines.index(b"a=setup:actpass\r\n")
    added = after.with_attribute(b"x-anchored", media=2)
    assert added.media[2].attributes[-1] == Attribute(name=b"x-anchored")
    assert added.lines[-1] == b"a=x-anchored\r\n"
    session = before.with_attribute(b"tool", b"sipmesh")
    assert session.attribute(b"tool") == b"sipmesh"
    assert session.lines.index(b"a=tool:sipmesh\r\n") < session.lines.index(
        b"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n"
    )


def test_with_attribute_collapses_duplicates() -> None:
    before = load("linphone/offer-srtp-ice.sdp")
    after = before.with_attribute(b"candidate", b"1 1 UDP 1 198.51.100.7 40000 typ relay", media=0)
    assert after.media[0].attribute_values(b"candidate") == (
        b"1 1 UDP 1 198.51.100.7 40000 typ relay",
    )
    assert len(after.lines) == len(before.lines) - 1


def test_without_attribute() -> None:
    before = load("webrtc-chrome/offer-bundle.sdp")
    after = before.without_attribute(b"candidate", media=0).without_attribute(b"group")
    assert after.media[0].attribute_values(b"candidate") == ()
    assert after.attribute(b"group") is None
    assert changed_lines(before, after) == []
    assert len(after.lines) == len(before.lines) - 3


def test_with_direction_hold_and_resume() -> None:
    before = load("rfc3264/offer.sdp")
    held = before.with_direction(b"sendonly", media=0)
    assert [m.direction for m in held.media] == [b"sendonly", b"sendrecv"]
    resumed = held.with_direction(b"sendrecv", media=0)
    assert resumed.media[0].direction == b"sendrecv"
    assert resumed.media[0].attribute_values(b"sendonly") == ()
    session = load("rfc3264/hold-sendonly.sdp").with_direction(b"sendrecv")
    assert [m.direction for m in session.media] == [b"sendrecv", b"inactive"]


def test_editor_adds_line_ending_to_unterminated_last_line() -> None:
    sdp = parse_sdp(BASE + b"m=audio 7000 RTP/AVP 0")
    after = sdp.with_attribute(b"ptime", b"20", media=0)
    assert bytes(after).endswith(b"m=audio 7000 RTP/AVP 0\r\na=ptime:20\r\n")


def test_editor_inserts_before_trailing_blank_line() -> None:
    before = load("rfc4475/multi01.sdp")
    after = before.with_attribute(b"ptime", b"20", media=1)
    assert after.lines[-2:] == (b"a=ptime:20\r\n", b"\r\n")


def test_editor_misuse_raises() -> None:
    sdp = load("rfc3264/offer.sdp")
    with pytest.raises(LocalProtocolError):
        sdp.with_media_port(5, 1000)
    with pytest.raises(LocalProtocolError):
        sdp.with_media_port(0, 70000)
    with pytest.raises(LocalProtocolError):
        sdp.with_connection_address(b"1.2.3.4\r\na=evil")
    with pytest.raises(LocalProtocolError):
        sdp.with_attribute(b"bad name")
    with pytest.raises(LocalProtocolError):
        sdp.with_attribute(b"x", b"1\r\nm=audio 1 RTP/AVP 0")
    with pytest.raises(LocalProtocolError):
        sdp.with_direction(b"sideways")
    with pytest.raises(LocalProtocolError):
        sdp.with_session_version(-1)


@given(st.integers(0, 65535), st.integers(0, 1))
def test_with_media_port_property(port: int, index: int) -> None:
    before = load("rfc3264/offer.sdp")
    after = before.with_media_port(index, port)
    assert after.media[index].port == port
    assert after.media[1 - index] == before.media[1 - index]
    assert len(changed_lines(before, after)) <= 1
