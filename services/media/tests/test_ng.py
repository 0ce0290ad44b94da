"""ng protocol: flag words, command builders, framing, cookies and replies."""

from __future__ import annotations

import dataclasses

import pytest

from sipmesh_media import bencode, ng
from sipmesh_media.errors import NgProtocolError
from sipmesh_media.ng import MediaOptions

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\n"
    b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)
BASE = MediaOptions()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["ICE=force"], {"ice": "force"}),
        (["ICE=remove"], {"ice": "remove"}),
        (["RTP/SAVPF"], {"transport_protocol": "RTP/SAVPF"}),
        (["transport-protocol=UDP/TLS/RTP/SAVPF"], {"transport_protocol": "UDP/TLS/RTP/SAVPF"}),
        (["DTLS=passive"], {"dtls": "passive"}),
        (["DTLS=no"], {"dtls": "off"}),
        (["trust-address"], {"address": "trust"}),
        (["SIP-source-address"], {"address": "sip-source"}),
        (["symmetric"], {"symmetric": True}),
        (["asymmetric"], {"symmetric": False}),
        (["record-call=yes"], {"record_call": True}),
        (["rtcp-mux-demux"], {"rtcp_mux": ("demux",)}),
        (["no-replace"], {"replace_origin": False, "replace_session_connection": False}),
        (
            ["no-replace replace-origin"],
            {"replace_origin": True, "replace_session_connection": False},
        ),
        (["strict-source", "media-handover"], {"flags": ("strict-source", "media-handover")}),
        (["nat"], {"address": "sip-source", "symmetric": True}),
        (
            ["webrtc"],
            {
                "transport_protocol": "UDP/TLS/RTP/SAVPF",
                "ice": "force",
                "dtls": "passive",
                "rtcp_mux": ("offer",),
            },
        ),
        (
            ["webrtc", "plain-rtp"],
            {
                "transport_protocol": "RTP/AVP",
                "ice": "remove",
                "dtls": None,
                "rtcp_mux": ("demux",),
            },
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_apply_flags_table(flags: list[str], expected: dict[str, object]) -> None:
    assert ng.apply_flags(BASE, flags) == dataclasses.replace(BASE, **expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "flag",
    [
        "ICE=sometimes",
        "RTP/XYZ",
        "transport-protocol=RTP/XYZ",
        "DTLS=maybe",
        "colour=red",
        "a;b",
        "-x",
    ],
)
def test_apply_flags_rejects_unknown(flag: str) -> None:
    with pytest.raises(ValueError, match=r"flag|protocol"):
        ng.apply_flags(BASE, [flag])


def test_offer_defaults_replace_addresses_remove_ice_and_record_nothing() -> None:
    body = ng.offer(call_id="c1", from_tag="f1", sdp=SDP)
    assert body == {
        "command": "offer",
        "call-id": "c1",
        "from-tag": "f1",
        "sdp": SDP,
        "replace": ["origin", "session-connection"],
        "ICE": "remove",
        "record call": "no",
    }


def test_offer_for_a_nated_webrtc_callee() -> None:
    options = ng.apply_flags(BASE, ["webrtc nat"])
    body = ng.offer(
        call_id="c1",
        from_tag="f1",
        to_tag="t1",
        sdp=SDP,
        options=options,
        received_from="203.0.113.9",
        via_branch="z9hG4bK1",
    )
    assert body["transport-protocol"] == "UDP/TLS/RTP/SAVPF"
    assert body["ICE"] == "force"
    assert body["DTLS"] == "passive"
    assert body["rtcp-mux"] == ["offer"]
    assert body["flags"] == ["SIP-source-address", "symmetric"]
    assert body["received-from"] == ["IP4", "203.0.113.9"]
    assert body["to-tag"] == "t1"
    assert body["via-branch"] == "z9hG4bK1"


def test_answer_carries_to_tag_and_ipv6_source() -> None:
    body = ng.answer(call_id="c", from_tag="f", to_tag="t", sdp=SDP, received_from="2001:db8::1")
    assert body["command"] == "answer"
    assert body["to-tag"] == "t"
    assert body["received-from"] == ["IP6", "2001:db8::1"]


def test_record_call_on_and_no_ice_key_when_unset() -> None:
    body = ng.offer(
        call_id="c", from_tag="f", sdp=SDP, options=MediaOptions(ice=None, record_call=True)
    )
    assert "ICE" not in body
    assert body["record call"] == "yes"


def test_delete_query_list_ping_builders() -> None:
    assert ng.ping() == {"command": "ping"}
    assert ng.delete(call_id="c") == {"command": "delete", "call-id": "c"}
    assert ng.delete(call_id="c", from_tag="f", to_tag="t", delete_delay=0) == {
        "command": "delete",
        "call-id": "c",
        "from-tag": "f",
        "to-tag": "t",
        "delete delay": 0,
    }
    assert ng.query(call_id="c", from_tag="f") == {
        "command": "query",
        "call-id": "c",
        "from-tag": "f",
    }
    assert ng.list_calls(limit=5) == {"command": "list", "limit": 5}
    assert ng.statistics() == {"command": "statistics"}


def test_encode_message_frames_cookie_and_sorted_dict() -> None:
    assert ng.encode_message(b"abc1", ng.ping()) == b"abc1 d7:command4:pinge"


@pytest.mark.parametrize("cookie", [b"", b"a b", b"x" * 65, b"\x00"])
def test_encode_message_rejects_bad_cookies(cookie: bytes) -> None:
    with pytest.raises(ValueError, match="cookie"):
        ng.encode_message(cookie, ng.ping())


@pytest.mark.parametrize(
    "data",
    [b"nocookie", b" d6:result4:ponge", b"c1 l4:ponge", b"c1 d6:result4:pong", b"c1 "],
    ids=["no-space", "empty-cookie", "not-a-dict", "truncated", "empty-body"],
)
def test_decode_message_rejects_malformed(data: bytes) -> None:
    with pytest.raises(NgProtocolError):
        ng.decode_message(data)


def test_codec_cookies_are_unique_and_replies_match_by_cookie() -> None:
    codec = ng.NgCodec(prefix=b"p-")
    c1, d1 = codec.request(ng.ping())
    c2, _d2 = codec.request(ng.query(call_id="x"))
    assert c1 != c2
    assert d1.startswith(c1 + b" ")
    assert codec.pending == 2
    matched = codec.receive(c2 + b" d6:result5:error12:error-reason15:Unknown call-ide")
    assert matched is not None
    cookie, response = matched
    assert cookie == c2
    assert response.command == "query"
    assert not response.ok
    assert response.error_reason == "Unknown call-id"
    assert codec.pending == 1


def test_codec_ignores_unknown_and_duplicate_cookies() -> None:
    codec = ng.NgCodec(prefix=b"p-")
    cookie, _ = codec.request(ng.ping())
    assert codec.receive(b"other d6:result4:ponge") is None
    first = codec.receive(cookie + b" d6:result4:ponge")
    assert first is not None
    assert first[1].ok
    assert codec.receive(cookie + b" d6:result4:ponge") is None


def test_codec_forget_drops_the_request() -> None:
    codec = ng.NgCodec(prefix=b"p-")
    cookie, _ = codec.request(ng.ping())
    codec.forget(cookie)
    assert codec.receive(cookie + b" d6:result4:ponge") is None
    assert codec.pending == 0


def test_codec_rejects_bad_prefix() -> None:
    with pytest.raises(ValueError, match="prefix"):
        ng.NgCodec(prefix=b"has space")


def test_parse_response_reads_sdp_and_warning() -> None:
    body = bencode.decode(b"d3:sdp3:v=07:warning4:hmm.6:result2:oke")
    assert isinstance(body, dict)
    response = ng.parse_response("offer", body)
    assert response.ok
    assert response.sdp == b"v=0"
    assert response.warning == "hmm."


@pytest.mark.parametrize(
    "wire",
    [b"de", b"d6:resulti1ee", b"d6:result2:ok3:sdpi1ee"],
    ids=["no-result", "int-result", "int-sdp"],
)
def test_parse_response_rejects_bad_replies(wire: bytes) -> None:
    body = bencode.decode(wire)
    assert isinstance(body, dict)
    with pytest.raises(NgProtocolError):
        ng.parse_response("offer", body)


def test_query_totals_and_list_calls() -> None:
    body = bencode.decode(b"d6:totalsd3:RTPd7:packetsi20e5:bytesi3440e6:errorsi0eee6:result2:oke")
    assert isinstance(body, dict)
    assert ng.query_totals(ng.parse_response("query", body)) == ng.Totals(
        packets=20, bytes=3440, errors=0
    )
    assert ng.query_totals(ng.parse_response("query", {b"result": b"ok"})) == ng.Totals()
    listed = ng.parse_response("list", {b"result": b"ok", b"calls": [b"a", b"b", 3]})
    assert listed.calls == ["a", "b"]


def test_active_sessions_reads_own_sessions_of_a_statistics_reply() -> None:
    # Shape of RTPEngine 10.5's reply (trimmed): sessionsown excludes redis replicas.
    wire = (
        b"d6:result2:ok10:statisticsd17:currentstatisticsd"
        b"15:sessionsforeigni3e11:sessionsowni2e13:sessionstotali5eeee"
    )
    body = bencode.decode(wire)
    assert isinstance(body, dict)
    assert ng.active_sessions(ng.parse_response("statistics", body)) == 2


@pytest.mark.parametrize(
    "body",
    [
        {b"result": b"ok"},
        {b"result": b"ok", b"statistics": b"none"},
        {b"result": b"ok", b"statistics": {b"currentstatistics": [1]}},
        {b"result": b"ok", b"statistics": {b"currentstatistics": {b"sessionsown": b"2"}}},
    ],
    ids=["no-statistics", "not-a-dict", "current-not-a-dict", "count-not-an-int"],
)
def test_active_sessions_none_when_absent(body: dict[bytes, object]) -> None:
    assert ng.active_sessions(ng.parse_response("statistics", body)) is None  # type: ignore[arg-type]
