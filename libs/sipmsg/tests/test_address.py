"""Tests for sipmsg.address: name-addr / addr-spec, display names, lists, Contact."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipmsg._errors import ParseError
from sipmsg.address import (
    STAR,
    Address,
    Star,
    parse_address,
    parse_address_list,
    parse_contact_list,
)
from sipmsg.uri import AbsoluteUri, SipUri, TelUri, parse_uri

CASES = [
    pytest.param(
        b'"Bob" <sip:bob@biloxi.com>;tag=a6c85cf',
        b"Bob",
        b"sip:bob@biloxi.com",
        ((b"tag", b"a6c85cf"),),
        id="rfc3261-to",
    ),
    pytest.param(b"<sip:carol@chicago.com>", None, b"sip:carol@chicago.com", (), id="angles-only"),
    pytest.param(b'"" <sip:a@b.com>', b"", b"sip:a@b.com", (), id="empty-quoted"),
    pytest.param(
        b"Bob Smith <sip:bob@biloxi.com>", b"Bob Smith", b"sip:bob@biloxi.com", (), id="tokens"
    ),
    # RFC 4475 §3.1.1.3 lwsdisp: no LWS between display name and "<"
    pytest.param(
        b"caller<sip:caller@example.com>;tag=323",
        b"caller",
        b"sip:caller@example.com",
        ((b"tag", b"323"),),
        id="rfc4475-lwsdisp",
    ),
    # RFC 4475 §3.1.1.5 wsinv: escaped quotes and white space around ";" and "="
    pytest.param(
        b'"J Rosenberg \\\\\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8',
        b'J Rosenberg \\"',
        b"sip:jdrosen@example.com",
        ((b"tag", b"98asjd8"),),
        id="rfc4475-wsinv-from",
    ),
    pytest.param(
        b'"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam = newvalue ;'
        b"  secondparam ; q = 0.33",
        b'Quoted string ""',
        b"sip:jdrosen@example.com",
        ((b"newparam", b"newvalue"), (b"secondparam", None), (b"q", b"0.33")),
        id="rfc4475-wsinv-contact",
    ),
    pytest.param(
        b"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
        None,
        b"sip:vivekg@chair-dnrc.example.com",
        ((b"tag", b"1918181833n"),),
        id="rfc4475-wsinv-to",
    ),
    # RFC 4475 §3.1.1.6 intmeth: control characters escaped in a display name,
    # a comma inside the angles, tokens with every token character.
    pytest.param(
        b'"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" '
        b"<sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>",
        b"BEL:\x07 NUL:\x00 DEL:\x7f",
        b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com",
        (),
        id="rfc4475-intmeth-to",
    ),
    pytest.param(
        b"token1~` token2'+_ token3*%!.- <sip:mundane@example.com>"
        b";fromParam''~+*_!.-%=\"\xd1\x80\xd0\xb0\xd0\xb1\";tag=_token~1'+`*%!-.",
        b"token1~` token2'+_ token3*%!.-",
        b"sip:mundane@example.com",
        ((b"fromparam''~+*_!.-%", b'"\xd1\x80\xd0\xb0\xd0\xb1"'), (b"tag", b"_token~1'+`*%!-.")),
        id="rfc4475-intmeth-from",
    ),
    # RFC 4475 §3.1.1.1 esc01
    pytest.param(
        b"<sip:I%20have%20spaces@example.net>;tag=938",
        None,
        b"sip:I%20have%20spaces@example.net",
        ((b"tag", b"938"),),
        id="rfc4475-esc01-from",
    ),
    pytest.param(
        b"<sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>",
        None,
        b"sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
        (),
        id="rfc4475-esc01-contact",
    ),
    # RFC 4475 regescrt: an escaped Route header inside <>
    pytest.param(
        b"<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
        None,
        b"sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        (),
        id="rfc4475-regescrt",
    ),
    # RFC 4475 unksm2: other schemes in To/From/Contact
    pytest.param(b"isbn:2983792873", None, b"isbn:2983792873", (), id="unksm2-to"),
    pytest.param(
        b"<http://www.example.com>;tag=3234233",
        None,
        b"http://www.example.com",
        ((b"tag", b"3234233"),),
        id="unksm2-from",
    ),
    pytest.param(
        b'"T. desk phone" <sip:ted@[::ffff:192.0.2.2]>',
        b"T. desk phone",
        b"sip:ted@[::ffff:192.0.2.2]",
        (),
        id="rfc5118-ipv4-mapped",
    ),
    pytest.param(
        b"<tel:+1-201-555-0123>;tag=x", None, b"tel:+1-201-555-0123", ((b"tag", b"x"),), id="tel"
    ),
    pytest.param(
        '"Zoë" <sip:zoe@example.com>'.encode(),
        "Zoë".encode(),
        b"sip:zoe@example.com",
        (),
        id="utf8-display",
    ),
]


@pytest.mark.parametrize(("raw", "display", "uri", "params"), CASES)
def test_parse_address_fields_and_round_trip(
    raw: bytes, display: bytes | None, uri: bytes, params: object
) -> None:
    address = parse_address(raw)
    assert address.display_name == display
    assert bytes(address.uri) == uri
    assert address.params == params
    assert bytes(address) == raw


def test_parse_address_addr_spec_params_are_header_params() -> None:
    # RFC 3261 §20.10: "If the URI is not enclosed in angle brackets, any
    # semicolon-delimited parameters are header-parameters, not URI parameters."
    # RFC 4475 cparam01 vs cparam02.
    bare = parse_address(b"sip:+19725552222@gw1.example.net;unknownparam")
    angled = parse_address(b"<sip:+19725552222@gw1.example.net;unknownparam>")
    assert isinstance(bare.uri, SipUri)
    assert isinstance(angled.uri, SipUri)
    assert bare.params == ((b"unknownparam", None),)
    assert bare.uri.params == ()
    assert angled.params == ()
    assert angled.uri.params == ((b"unknownparam", None),)


def test_parse_address_tag_and_lr() -> None:
    route = parse_address(b"<sip:p1.example.com;lr>")
    assert isinstance(route.uri, SipUri)
    assert route.uri.lr
    assert route.tag is None
    from_ = parse_address(b"sip:alice@atlanta.com;tag=1928301774")
    assert from_.tag == b"1928301774"
    assert isinstance(from_.uri, SipUri)
    assert not from_.uri.lr


def test_parse_address_flag_tag_is_empty() -> None:
    # ";tag" alone is a generic-param; the tag it carries is empty.
    assert parse_address(b"<sip:a@b.com>;tag").tag == b""


def test_parse_address_uri_types() -> None:
    assert isinstance(parse_address(b"<sip:a@b.com>").uri, SipUri)
    assert isinstance(parse_address(b"<tel:+1234>").uri, TelUri)
    assert isinstance(parse_address(b"<urn:service:sos>").uri, AbsoluteUri)


BAD_ADDRESSES = [
    pytest.param(b"", id="empty"),
    pytest.param(b"   ", id="blank"),
    # RFC 4475 quotbal: unbalanced quotes
    pytest.param(b'"Mr. J. User <sip:j.user@example.com>', id="rfc4475-quotbal"),
    # RFC 4475 baddn: an unquoted display name with a comma
    pytest.param(b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43", id="rfc4475-baddn"),
    # RFC 4475 badaspec: spaces inside the angle brackets
    pytest.param(b'"Watson, Thomas" < sip:t.watson@example.org >', id="rfc4475-badaspec"),
    # RFC 4475 regbadct: an addr-spec with "?" must be in <> (§20.10)
    pytest.param(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E", id="rfc4475-regbadct"),
    pytest.param(b"<sip:a@b.com", id="no-closing-angle"),
    pytest.param(b'"Bob" sip:a@b.com', id="quoted-without-angles"),
    pytest.param(b"<sip:a@b.com> junk", id="junk-after-angle"),
    pytest.param(b"<sip:a@b.com>;=x", id="empty-param-name"),
    pytest.param(b"<sip:a@b.com>;tag=", id="empty-param-value"),
    pytest.param(b"<sip:a@b.com>;tag=a<b", id="bad-param-value"),
    pytest.param(b'<sip:a@b.com>;x="open', id="unterminated-param-quote"),
    pytest.param(b'"a\x01b" <sip:a@b.com>', id="raw-control-in-display"),
    pytest.param(b'"a\\\xe9" <sip:a@b.com>', id="quoted-pair-non-ascii"),
    pytest.param(b'Bob "Smith" <sip:a@b.com>', id="mixed-display"),
    pytest.param(b"<>", id="empty-uri"),
    pytest.param(b"<sip:2001:db8::10>", id="rfc5118-unbracketed"),
    pytest.param(b"Bob", id="no-uri"),
]


@pytest.mark.parametrize("raw", BAD_ADDRESSES)
def test_parse_address_rejects_malformed(raw: bytes) -> None:
    with pytest.raises(ParseError) as exc_info:
        parse_address(raw)
    assert exc_info.value.status_hint == 400


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"<sip:a@b.com>;q=0.7", 0.7, id="point-seven"),
        pytest.param(b"<sip:a@b.com>;q=1", 1.0, id="one"),
        pytest.param(b"<sip:a@b.com>;q=1.000", 1.0, id="one-point-000"),
        pytest.param(b"<sip:a@b.com>;q=0", 0.0, id="zero"),
        pytest.param(b"<sip:a@b.com>;q=0.", 0.0, id="zero-dot"),
        pytest.param(b"<sip:a@b.com>;q=0.333", 0.333, id="three-digits"),
        pytest.param(b"<sip:a@b.com>", None, id="absent"),
    ],
)
def test_address_q(raw: bytes, expected: float | None) -> None:
    assert parse_address(raw).q == expected


@pytest.mark.parametrize(
    "value", [b"1.5", b"2", b"0.1234", b"1.001", b"abc", b".5", b"-0", b"0x1", b"1e0"]
)
def test_address_q_malformed(value: bytes) -> None:
    address = parse_address(b"<sip:a@b.com>;q=" + value)
    with pytest.raises(ParseError) as exc_info:
        _ = address.q
    assert exc_info.value.status_hint == 400


def test_address_q_flag_is_malformed() -> None:
    address = parse_address(b"<sip:a@b.com>;q")
    with pytest.raises(ParseError):
        _ = address.q


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b"3600", 3600), (b"0", 0), (b"4294967295", 2**32 - 1)],
)
def test_address_expires(value: bytes, expected: int) -> None:
    assert parse_address(b"<sip:a@b.com>;expires=" + value).expires == expected


@pytest.mark.parametrize("value", [b"4294967296", b"280297596632815", b"-1", b"soon", b"1.5"])
def test_address_expires_malformed(value: bytes) -> None:
    # RFC 4475 scalar02 carries ";expires=280297596632815".
    address = parse_address(b"<sip:a@b.com>;expires=" + value)
    with pytest.raises(ParseError):
        _ = address.expires


def test_address_expires_absent() -> None:
    assert parse_address(b"<sip:a@b.com>").expires is None


# -- lists ----------------------------------------------------------------------


def test_parse_address_list_splits_outside_quotes_and_angles() -> None:
    route = parse_address_list(
        b'<sip:p1.example.com;lr>, "Doe, John" <sip:j,d@x.com>,sip:p3.example.com'
    )
    assert [bytes(a) for a in route] == [
        b"<sip:p1.example.com;lr>",
        b'"Doe, John" <sip:j,d@x.com>',
        b"sip:p3.example.com",
    ]
    assert route[1].display_name == b"Doe, John"


@pytest.mark.parametrize("raw", [b"", b" , ", b"<sip:a@b.com>, <bad>"])
def test_parse_address_list_rejects(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse_address_list(raw)


@pytest.mark.parametrize("raw", [b"*", b"  *  ", b"\t*"])
def test_parse_contact_list_star(raw: bytes) -> None:
    result = parse_contact_list(raw)
    assert result is STAR
    assert isinstance(result, Star)
    assert bytes(result) == b"*"
    assert Star() == STAR


def test_parse_contact_list_addresses() -> None:
    contacts = parse_contact_list(
        b'<sip:a@192.0.2.4>;expires=60;q=0.5, "B" <sip:b@192.0.2.5>, sip:c@192.0.2.6;q=1'
    )
    assert isinstance(contacts, tuple)
    assert [c.q for c in contacts] == [0.5, None, 1.0]
    assert contacts[0].expires == 60
    assert contacts[1].display_name == b"B"


@pytest.mark.parametrize(
    "raw", [b"*, <sip:a@b.com>", b"<sip:a@b.com>, *", b"", b"**", b"*;expires=0"]
)
def test_parse_contact_list_rejects(raw: bytes) -> None:
    with pytest.raises(ParseError) as exc_info:
        parse_contact_list(raw)
    assert exc_info.value.status_hint == 400


# -- building -----------------------------------------------------------------


def test_address_built_serializes_as_name_addr() -> None:
    uri = parse_uri(b"sip:bob@biloxi.com")
    assert bytes(Address(uri=uri)) == b"<sip:bob@biloxi.com>"
    named = Address(display_name=b'Bob "B" \\', uri=uri, params=((b"tag", b"1"),))
    raw = bytes(named)
    assert raw == b'"Bob \\"B\\" \\\\" <sip:bob@biloxi.com>;tag=1'
    assert parse_address(raw) == named


def test_address_with_tag_keeps_uri_params_inside_angles() -> None:
    # An addr-spec gains a tag; the rewrite must not turn URI params into
    # header params or the other way round.
    to = parse_address(b"sip:bob@biloxi.com")
    tagged = to.with_tag(b"314159")
    assert bytes(tagged) == b"<sip:bob@biloxi.com>;tag=314159"
    assert tagged.tag == b"314159"
    route = parse_address(b"<sip:p1.example.com;lr>;x=1")
    assert bytes(route.with_param(b"x", b"2")) == b"<sip:p1.example.com;lr>;x=2"
    assert bytes(route.without_param(b"x")) == b"<sip:p1.example.com;lr>"
    assert bytes(route) == b"<sip:p1.example.com;lr>;x=1"


def test_address_equality_uses_uri_equivalence() -> None:
    a = parse_address(b"<sip:%61lice@atlanta.com>;tag=1")
    b = parse_address(b"<sip:alice@ATLANTA.com>;tag=1")
    assert a == b
    assert hash(a) == hash(b)
    assert a != parse_address(b"<sip:alice@atlanta.com>;tag=2")


def test_address_replace_forgets_raw() -> None:
    address = parse_address(b"Bob <sip:bob@biloxi.com>")
    assert bytes(dataclasses.replace(address, display_name=None)) == b"<sip:bob@biloxi.com>"


# -- robustness -----------------------------------------------------------------

ADDRESS_ALPHABET = [
    b"sip:", b"tel:", b"http:", b"@", b":", b";", b"?", b"&", b"=", b"%41", b"[", b"]", b".",
    b"a", b"Bob", b"1", b"2001:db8::1", b"<", b">", b"\"", b"\\", b" ", b"\t", b",", b"*",
    b"tag=", b"q=", b"0.5", b"expires=", b"lr", b"\x00", b"\x7f", b"\xc3\xa9",
]  # fmt: skip

address_texts = st.lists(st.sampled_from(ADDRESS_ALPHABET), max_size=25).map(b"".join)


def _exercise(data: bytes) -> None:
    for parse in (parse_address_list, parse_contact_list):
        try:
            result = parse(data)
        except ParseError:
            continue
        if isinstance(result, Star):
            continue
        for address in result:
            hash(address)
            for name in ("q", "expires", "tag"):
                with contextlib.suppress(ParseError):
                    getattr(address, name)
            # A rebuilt value serializes to something that parses back equal.
            rebuilt = dataclasses.replace(address)
            assert parse_address(bytes(rebuilt)) == address
    try:
        single = parse_address(data)
    except ParseError:
        return
    assert bytes(single) == data.strip(b" \t")


@given(st.binary(max_size=200))
def test_parse_address_binary_only_parse_error(data: bytes) -> None:
    _exercise(data)


@given(address_texts)
def test_parse_address_sip_alphabet_only_parse_error(data: bytes) -> None:
    _exercise(data)
