"""Tests for sipmsg.uri: parsing, RFC 3261 §19.1.4 equality, building, robustness."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipmsg._errors import ParseError
from sipmsg.uri import AbsoluteUri, SipUri, TelUri, parse_uri, unescape

# -- parsing ------------------------------------------------------------------

SIP_CASES = [
    pytest.param(
        b"sip:alice@atlanta.com",
        {"scheme": b"sip", "user": b"alice", "host": b"atlanta.com", "port": None},
        id="plain",
    ),
    pytest.param(
        b"SIPS:Bob:secret@Biloxi.example.com:5061;transport=TLS",
        {"scheme": b"sips", "user": b"Bob", "password": b"secret", "port": 5061},
        id="sips-password-port",
    ),
    pytest.param(
        b"sip:atlanta.com;lr",
        {"user": None, "host": b"atlanta.com", "params": ((b"lr", None),)},
        id="no-user-lr",
    ),
    pytest.param(
        b"sip:192.0.2.4:5070",
        {"host": b"192.0.2.4", "port": 5070},
        id="ipv4-port",
    ),
    # RFC 5118 §4.2 / port-unambiguous.dat and port-ambiguous.dat
    pytest.param(
        b"sip:[2001:db8::10]:5070",
        {"host": b"[2001:db8::10]", "port": 5070},
        id="rfc5118-port-unambiguous",
    ),
    pytest.param(
        b"sip:[2001:db8::10:5070]",
        {"host": b"[2001:db8::10:5070]", "port": None},
        id="rfc5118-port-ambiguous",
    ),
    # RFC 5118 §4.4 ipv6-correct-abnf-2-colons.dat
    pytest.param(
        b"sip:user@[2001:db8::192.0.2.1]",
        {"user": b"user", "host": b"[2001:db8::192.0.2.1]"},
        id="rfc5118-ipv4-suffix",
    ),
    pytest.param(
        b"sip:ted@[::ffff:192.0.2.2]",
        {"host": b"[::ffff:192.0.2.2]"},
        id="rfc5118-ipv4-mapped",
    ),
    # RFC 4475 §3.1.1.1 esc01: escapes in the user part and in parameter names
    pytest.param(
        b"sip:sips%3Auser%40example.com@example.net",
        {"user": b"sips%3Auser%40example.com", "host": b"example.net"},
        id="rfc4475-esc01-ruri",
    ),
    pytest.param(
        b"sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
        {"user": b"cal%6Cer", "params": ((b"lr", None), (b"name", b"v%61lue%25%34%31"))},
        id="rfc4475-esc01-contact",
    ),
    # RFC 4475 §3.1.1.2 escnull
    pytest.param(b"sip:null-%00-null@example.com", {"user": b"null-%00-null"}, id="escnull"),
    # RFC 4475 §3.1.1.6 intmeth: every user/password character the ABNF allows
    pytest.param(
        b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
        b":&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        {
            "user": b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*",
            "password": b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)",
            "host": b"example.com",
            "params": (),
        },
        id="rfc4475-intmeth",
    ),
    # RFC 4475 §3.1.1.10 semiuri: ";" inside the user part
    pytest.param(
        b"sip:user;par=u%40example.net@example.com",
        {"user": b"user;par=u%40example.net", "host": b"example.com", "params": ()},
        id="rfc4475-semiuri",
    ),
    # RFC 4475 §3.1.1.7 escruri: an escaped header in the URI
    pytest.param(
        b"sip:user@example.com?Route=%3Csip:example.com%3E",
        {"headers": ((b"Route", b"%3Csip:example.com%3E"),)},
        id="rfc4475-escruri",
    ),
    pytest.param(
        b"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com&x=",
        {
            "params": ((b"transport", b"tcp"), (b"method", b"REGISTER")),
            "headers": ((b"to", b"sip:bob%40biloxi.com"), (b"x", b"")),
        },
        id="params-and-headers",
    ),
    pytest.param(b"sip:host.example.com.", {"host": b"host.example.com."}, id="trailing-dot"),
    pytest.param(b"sip:_sip._udp.example.com", {"host": b"_sip._udp.example.com"}, id="underscore"),
]


@pytest.mark.parametrize(("raw", "fields"), SIP_CASES)
def test_parse_uri_sip_fields_and_round_trip(raw: bytes, fields: dict[str, object]) -> None:
    uri = parse_uri(raw)
    assert isinstance(uri, SipUri)
    for name, expected in fields.items():
        assert getattr(uri, name) == expected, name
    assert bytes(uri) == raw


def test_sip_uri_convenience_properties() -> None:
    uri = parse_uri(
        b"sip:+12125551212@gw.example.com;user=phone;transport=TCP;maddr=239.255.255.1"
        b";ttl=15;method=INVITE;lr"
    )
    assert isinstance(uri, SipUri)
    assert uri.user_param == b"phone"
    assert uri.transport == b"tcp"
    assert uri.maddr == b"239.255.255.1"
    assert uri.ttl == 15
    assert uri.method == b"INVITE"
    assert uri.lr is True


def test_sip_uri_properties_absent() -> None:
    uri = parse_uri(b"sip:example.com")
    assert isinstance(uri, SipUri)
    assert (uri.transport, uri.user_param, uri.maddr, uri.ttl, uri.method) == (None,) * 5
    assert uri.lr is False


def test_sip_uri_escaped_lr_is_lr() -> None:
    # RFC 4475 esc01: ";%6C%72" is the lr parameter.
    uri = parse_uri(b"sip:caller@host5.example.net;%6C%72")
    assert isinstance(uri, SipUri)
    assert uri.lr is True


@pytest.mark.parametrize(
    ("raw", "number", "is_global", "params"),
    [
        pytest.param(b"tel:+1-201-555-0123", b"+1-201-555-0123", True, (), id="global"),
        pytest.param(
            b"tel:7042;phone-context=example.com",
            b"7042",
            False,
            ((b"phone-context", b"example.com"),),
            id="local",
        ),
        pytest.param(
            b"TEL:+358-555-1234567;postd=pp22",
            b"+358-555-1234567",
            True,
            ((b"postd", b"pp22"),),
            id="upper-scheme",
        ),
        pytest.param(b"tel:*99#;phone-context=+1", b"*99#", False, ((b"phone-context", b"+1"),)),
    ],
)
def test_parse_uri_tel(raw: bytes, number: bytes, is_global: bool, params: object) -> None:
    uri = parse_uri(raw)
    assert isinstance(uri, TelUri)
    assert (uri.number, uri.is_global, uri.params) == (number, is_global, params)
    assert bytes(uri) == raw


def test_tel_uri_phone_context_and_equality() -> None:
    a = parse_uri(b"tel:7042;phone-context=EXAMPLE.com")
    b = parse_uri(b"tel:70-42;phone-context=example.com")
    assert isinstance(a, TelUri)
    assert a.phone_context == b"EXAMPLE.com"
    # RFC 3966 §4: visual separators are ignored, context case-insensitive.
    assert a == b
    assert hash(a) == hash(b)
    assert a != parse_uri(b"tel:7043;phone-context=example.com")


@pytest.mark.parametrize(
    ("raw", "scheme"),
    [
        # RFC 4475 unkscm, novelsc and unksm2: schemes a proxy does not know
        pytest.param(
            b"nobodyKnowsThisScheme:totallyopaquecontent", b"nobodyknowsthisscheme", id="unkscm"
        ),
        pytest.param(b"soap.beep://192.0.2.103:3002", b"soap.beep", id="novelsc"),
        pytest.param(b"isbn:2983792873", b"isbn", id="unksm2-to"),
        pytest.param(b"http://www.example.com", b"http", id="unksm2-from"),
        pytest.param(b"name:John_Smith", b"name", id="unksm2-contact"),
        pytest.param(b"urn:service:sos", b"urn", id="urn"),
    ],
)
def test_parse_uri_other_scheme_is_absolute(raw: bytes, scheme: bytes) -> None:
    uri = parse_uri(raw)
    assert isinstance(uri, AbsoluteUri)
    assert uri.scheme == scheme
    assert uri.raw == raw
    assert bytes(uri) == raw


BAD_URIS = [
    pytest.param(b"", id="empty"),
    pytest.param(b"sip", id="no-colon"),
    pytest.param(b":foo", id="empty-scheme"),
    pytest.param(b"sip:", id="no-host"),
    pytest.param(b"sip:@example.com", id="empty-user"),
    pytest.param(b"sip:a@b@example.com", id="two-at"),
    pytest.param(b"sip:user@example.com:", id="empty-port"),
    pytest.param(b"sip:user@example.com:65536", id="port-range"),
    pytest.param(b"sip:user@example.com:50x", id="port-alpha"),
    # RFC 5118 §4.3 ipv6-bad.dat: unbracketed IPv6
    pytest.param(b"sip:2001:db8::10", id="rfc5118-unbracketed"),
    # RFC 5118 §4.4 ipv6-bug-abnf-3-colons.dat
    pytest.param(b"sip:user@[2001:db8:::192.0.2.1]", id="rfc5118-3-colons"),
    pytest.param(b"sip:[2001:db8::1", id="unterminated-v6"),
    pytest.param(b"sip:[2001:db8::1]x", id="junk-after-v6"),
    pytest.param(b"sip:[fe80::1%25eth0]", id="v6-zone"),
    pytest.param(b"sip:[192.0.2.1]", id="v4-in-brackets"),
    pytest.param(b"sip:user@exa mple.com", id="space-in-host"),
    pytest.param(b"sip:us er@example.com", id="space-in-user"),
    pytest.param(b"sip:user@-example.com", id="label-leading-hyphen"),
    pytest.param(b"sip:user@example-.com", id="label-trailing-hyphen"),
    pytest.param(b"sip:user@example..com", id="empty-label"),
    pytest.param(b"sip:user@example.123", id="numeric-toplabel"),
    pytest.param(b"sip:user@192.0.2.256", id="ipv4-octet"),
    pytest.param(b"sip:user@192.0.2", id="ipv4-short"),
    pytest.param(b"sip:user@example.com;;lr", id="empty-param"),
    pytest.param(b"sip:user@example.com;lr=", id="empty-param-value"),
    pytest.param(b"sip:user@example.com;a=b=c", id="double-equals"),
    pytest.param(b"sip:user@example.com;ttl=256", id="ttl-range"),
    pytest.param(b"sip:user@example.com;ttl", id="ttl-no-value"),
    pytest.param(b"sip:user@example.com;maddr=bad..host", id="maddr-bad"),
    pytest.param(b"sip:user@example.com?", id="empty-headers"),
    pytest.param(b"sip:user@example.com?novalue", id="header-no-equals"),
    pytest.param(b"sip:user@example.com?a=<b>", id="header-bad-char"),
    pytest.param(b"sip:%4@example.com", id="short-escape"),
    pytest.param(b"sip:%zz@example.com", id="bad-escape"),
    pytest.param(b"sip:user:pa@ss@example.com", id="at-in-password"),
    pytest.param(b'sip:user@example.com;x="q"', id="quote-in-param"),
    pytest.param(b"tel:", id="tel-empty"),
    pytest.param(b"tel:+", id="tel-plus-only"),
    pytest.param(b"tel:+1a", id="tel-global-hex"),
    pytest.param(b"tel:12 34", id="tel-space"),
    pytest.param(b"tel:+123;", id="tel-empty-param"),
    pytest.param(b"1abc:foo", id="scheme-digit-first"),
    pytest.param(b"a_b:foo", id="scheme-underscore"),
    pytest.param(b"http:", id="absolute-empty"),
    pytest.param(b"http://a b", id="absolute-space"),
    pytest.param(b"<sip:user@example.com>", id="angle-brackets"),
    # RFC 4475 §3.1.2.7 lwsruri: LWS inside a URI
    pytest.param(b"sip:user@example.com; lr", id="lws-before-param"),
]


@pytest.mark.parametrize("raw", BAD_URIS)
def test_parse_uri_rejects_malformed(raw: bytes) -> None:
    with pytest.raises(ParseError) as exc_info:
        parse_uri(raw)
    assert exc_info.value.status_hint == 400


# -- RFC 3261 §19.1.4 equality --------------------------------------------------

# "The URIs within each of the following sets are equivalent"
EQUAL_SETS = [
    pytest.param(
        [b"sip:%61lice@atlanta.com;transport=TCP", b"sip:alice@AtLanTa.CoM;Transport=tcp"],
        id="escapes-host-case-param-case",
    ),
    pytest.param(
        [
            b"sip:carol@chicago.com",
            b"sip:carol@chicago.com;newparam=5",
            b"sip:carol@chicago.com;security=on",
        ],
        id="params-in-one-only",
    ),
    pytest.param(
        [
            b"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            b"sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ],
        id="param-order",
    ),
    pytest.param(
        [
            b"sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            b"sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ],
        id="header-order",
    ),
    # Beyond the RFC's list: the same rules applied to IPv6 and escapes.
    pytest.param([b"sip:[2001:DB8::1]", b"sip:[2001:db8:0:0::1]"], id="ipv6-by-value"),
    pytest.param([b"sip:a@b.com;lr", b"sip:a@b.com;%6c%72"], id="escaped-param-name"),
    pytest.param([b"sip:a@b.com?Subject=x", b"sip:a@b.com?subject=%78"], id="header-name-case"),
]

# "The URIs within each of the following sets are not equivalent"
NOT_EQUAL_PAIRS = [
    pytest.param(
        b"SIP:ALICE@AtLanTa.CoM;Transport=udp",
        b"sip:alice@AtLanTa.CoM;Transport=UDP",
        id="different-usernames",
    ),
    pytest.param(b"sip:bob@biloxi.com", b"sip:bob@biloxi.com:5060", id="different-ports"),
    pytest.param(
        b"sip:bob@biloxi.com", b"sip:bob@biloxi.com;transport=udp", id="different-transports"
    ),
    pytest.param(
        b"sip:bob@biloxi.com",
        b"sip:bob@biloxi.com:6000;transport=tcp",
        id="different-port-and-transport",
    ),
    pytest.param(
        b"sip:carol@chicago.com",
        b"sip:carol@chicago.com?Subject=next%20meeting",
        id="different-header-component",
    ),
    pytest.param(b"sip:bob@phone21.boxesbybob.com", b"sip:bob@192.0.2.4", id="name-vs-its-address"),
    # Further rules of §19.1.4
    pytest.param(b"sip:alice@atlanta.com", b"sips:alice@atlanta.com", id="sip-vs-sips"),
    pytest.param(b"sip:a:x@b.com", b"sip:a:X@b.com", id="password-case"),
    pytest.param(b"sip:a@b.com", b"sip:a:x@b.com", id="password-in-one"),
    pytest.param(b"sip:a@b.com;user=phone", b"sip:a@b.com", id="user-param-in-one"),
    pytest.param(b"sip:a@b.com;ttl=1", b"sip:a@b.com", id="ttl-in-one"),
    pytest.param(b"sip:a@b.com;method=INVITE", b"sip:a@b.com", id="method-in-one"),
    pytest.param(b"sip:a@b.com;maddr=1.2.3.4", b"sip:a@b.com", id="maddr-in-one"),
    pytest.param(b"sip:a@b.com;x=1", b"sip:a@b.com;x=2", id="param-in-both-differs"),
    pytest.param(b"sip:a@b.com?h=1", b"sip:a@b.com?h=2", id="header-value-differs"),
    pytest.param(b"sip:a%3Bb@c.com", b"sip:a;b@c.com", id="escaped-reserved-differs"),
    pytest.param(b"sip:[2001:db8::1]", b"sip:[2001:db8::2]", id="ipv6-differs"),
]


@pytest.mark.parametrize("uris", EQUAL_SETS)
def test_sip_uri_equivalent_sets(uris: list[bytes]) -> None:
    parsed = [parse_uri(u) for u in uris]
    for a in parsed:
        for b in parsed:
            assert isinstance(a, SipUri)
            assert a.equivalent(b)
            assert a == b
            assert hash(a) == hash(b)


@pytest.mark.parametrize(("left", "right"), NOT_EQUAL_PAIRS)
def test_sip_uri_not_equivalent_pairs(left: bytes, right: bytes) -> None:
    a = parse_uri(left)
    b = parse_uri(right)
    assert isinstance(a, SipUri)
    assert isinstance(b, SipUri)
    assert not a.equivalent(b)
    assert not b.equivalent(a)
    assert a != b


def test_sip_uri_equality_against_other_types() -> None:
    sip = parse_uri(b"sip:a@b.com")
    assert isinstance(sip, SipUri)
    assert not sip.equivalent(parse_uri(b"tel:+1234"))
    assert sip != b"sip:a@b.com"
    assert sip != parse_uri(b"tel:+1234")


def test_sip_uri_usable_as_dict_key() -> None:
    table = {parse_uri(b"sip:%61lice@atlanta.com;transport=TCP"): 1}
    assert table[parse_uri(b"sip:alice@ATLANTA.com;transport=tcp;other=1")] == 1


# -- building -----------------------------------------------------------------


def test_sip_uri_built_from_fields_serializes() -> None:
    uri = SipUri(
        scheme=b"sips",
        user=b"bob",
        password=b"pw",
        host=b"[2001:db8::1]",
        port=5061,
        params=((b"transport", b"tls"), (b"lr", None)),
        headers=((b"Subject", b"hi%20there"),),
    )
    raw = b"sips:bob:pw@[2001:db8::1]:5061;transport=tls;lr?Subject=hi%20there"
    assert bytes(uri) == raw
    assert parse_uri(raw) == uri


def test_sip_uri_with_param_appends_and_replaces() -> None:
    uri = parse_uri(b"sip:proxy.example.com;transport=udp")
    assert isinstance(uri, SipUri)
    with_lr = uri.with_param(b"lr")
    assert bytes(with_lr) == b"sip:proxy.example.com;transport=udp;lr"
    changed = with_lr.with_param(b"transport", b"tcp")
    assert bytes(changed) == b"sip:proxy.example.com;transport=tcp;lr"
    assert bytes(changed.without_param(b"transport")) == b"sip:proxy.example.com;lr"
    # The original is unchanged and still serializes as it was written.
    assert bytes(uri) == b"sip:proxy.example.com;transport=udp"


def test_sip_uri_dataclasses_replace_forgets_raw() -> None:
    uri = parse_uri(b"sip:Alice@Atlanta.com;Transport=TCP")
    assert isinstance(uri, SipUri)
    moved = dataclasses.replace(uri, host=b"192.0.2.7", port=5080)
    assert bytes(moved) == b"sip:Alice@192.0.2.7:5080;transport=TCP"


def test_tel_uri_built_serializes() -> None:
    uri = TelUri(number=b"+1-201-555-0123", params=((b"ext", b"1234"),))
    assert bytes(uri) == b"tel:+1-201-555-0123;ext=1234"


def test_sip_uri_is_frozen() -> None:
    uri = parse_uri(b"sip:a@b.com")
    assert isinstance(uri, SipUri)
    with pytest.raises(dataclasses.FrozenInstanceError):
        uri.host = b"c.com"  # type: ignore[misc]


# -- unescape -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"plain", b"plain", id="nothing"),
        pytest.param(b"%75se%72", b"user", id="esc01-to"),
        pytest.param(b"I%20have%20spaces", b"I have spaces", id="esc01-from"),
        pytest.param(b"null-%00-null", b"null-\x00-null", id="escnull"),
        pytest.param(b"v%61lue%25%34%31", b"value%41", id="decoded-once"),
        pytest.param(b"%e4%B8%AD", "中".encode(), id="utf8-mixed-case"),
    ],
)
def test_unescape(raw: bytes, expected: bytes) -> None:
    assert unescape(raw) == expected


@pytest.mark.parametrize("raw", [b"%", b"%4", b"%4g", b"a%"])
def test_unescape_rejects_bad_escape(raw: bytes) -> None:
    with pytest.raises(ParseError):
        unescape(raw)


# -- robustness -----------------------------------------------------------------

URI_ALPHABET = [
    b"sip:", b"sips:", b"tel:", b"SIP:", b"x-y:", b"@", b":", b";", b"?", b"&", b"=", b"%",
    b"%4", b"%41", b"[", b"]", b".", b"-", b"_", b"a", b"Z", b"1", b"5060", b"::", b"2001:db8::1",
    b"192.0.2.1", b"+", b"lr", b"transport", b"ttl", b"maddr", b"255", b"\"", b" ", b"\x00",
    b"\xff", b",", b"<", b">", b"/", b"(", b"*", b"#",
]  # fmt: skip

sip_texts = st.lists(st.sampled_from(URI_ALPHABET), max_size=25).map(b"".join)


def _exercise(data: bytes) -> None:
    try:
        uri = parse_uri(data)
    except ParseError:
        return
    assert bytes(uri) == data
    assert parse_uri(data) == uri
    hash(uri)
    if isinstance(uri, SipUri):
        # Every property is computable, and a rebuilt URI parses back equal.
        _ = (uri.transport, uri.user_param, uri.maddr, uri.ttl, uri.method, uri.lr)
        rebuilt = dataclasses.replace(uri)
        assert parse_uri(bytes(rebuilt)) == uri
    elif isinstance(uri, TelUri):
        assert parse_uri(bytes(TelUri(number=uri.number, params=uri.params))) == uri


@given(st.binary(max_size=200))
def test_parse_uri_binary_only_parse_error(data: bytes) -> None:
    _exercise(data)


@given(sip_texts)
def test_parse_uri_sip_alphabet_only_parse_error(data: bytes) -> None:
    _exercise(data)


def test_parse_uri_long_host_is_fast() -> None:
    # A pathological host must fail in linear time, not hang the regex.
    with pytest.raises(ParseError):
        parse_uri(b"sip:" + b"a-" * 20000 + b"-")
    with pytest.raises(ParseError):
        parse_uri(b"sip:" + b"a." * 20000 + b"1")


# Generated valid URIs: fields → bytes → parse gives back the same fields.
_USER_ALPHABET = "abcXYZ019-_.!~*'()&=+$,;?/"
_valid_users = st.none() | st.text(_USER_ALPHABET, min_size=1, max_size=8).map(str.encode)
_valid_hosts = st.sampled_from(
    [b"example.com", b"a.b-c.org", b"x1.", b"192.0.2.1", b"[2001:db8::1]", b"[::ffff:192.0.2.1]"]
)
_valid_params = st.lists(
    st.sampled_from(
        [
            (b"lr", None),
            (b"transport", b"tcp"),
            (b"user", b"phone"),
            (b"ttl", b"255"),
            (b"maddr", b"239.255.255.1"),
            (b"x-y", b"a%20b"),
            (b"ob", None),
        ]
    ),
    max_size=4,
    unique_by=lambda p: p[0],
).map(tuple)
_valid_headers = st.lists(
    st.tuples(st.sampled_from([b"Subject", b"to", b"h"]), st.sampled_from([b"", b"x%20y", b"1"])),
    max_size=2,
).map(tuple)


@given(
    scheme=st.sampled_from([b"sip", b"sips"]),
    user=_valid_users,
    host=_valid_hosts,
    port=st.none() | st.integers(0, 65535),
    params=_valid_params,
    headers=_valid_headers,
)
def test_sip_uri_generated_round_trip(
    *,
    scheme: bytes,
    user: bytes | None,
    host: bytes,
    port: int | None,
    params: tuple[tuple[bytes, bytes | None], ...],
    headers: tuple[tuple[bytes, bytes], ...],
) -> None:
    built = SipUri(scheme=scheme, user=user, host=host, port=port, params=params, headers=headers)
    parsed = parse_uri(bytes(built))
    assert isinstance(parsed, SipUri)
    assert (parsed.scheme, parsed.user, parsed.host, parsed.port) == (scheme, user, host, port)
    assert (parsed.params, parsed.headers) == (params, headers)
    assert parsed == built
    assert hash(parsed) == hash(built)
    assert bytes(parsed) == bytes(built)
