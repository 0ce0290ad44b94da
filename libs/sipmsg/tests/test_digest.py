"""Digest authentication: parsing, RFC test vectors, verify round trips, nonces."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipmsg import LocalProtocolError, ParseError
from sipmsg.digest import (
    Challenge,
    Credentials,
    NonceManager,
    NonceStatus,
    build_authorization,
    challenge_for,
    challenges_for,
    compute_response,
    ha1,
    ha1_md5,
    ha1_sha256,
    hash_family,
    nc_key,
    parse_challenge,
    parse_credentials,
    userhash,
    verify,
)

# RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
RFC7616_REALM = b"http-auth@example.org"
RFC7616_NONCE = b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = b"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_RESPONSES = {
    b"MD5": b"8ca523f5e9506fed4657c9700eebdbec",
    b"SHA-256": b"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


def rfc7616_challenge(algorithm: bytes) -> bytes:
    return (
        b'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm='
        + algorithm
        + b', nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",'
        b' opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )


# RFC 2617 §3.5, the Authorization header of the worked example.
RFC2617_AUTHORIZATION = (
    b'Digest username="Mufasa", realm="testrealm@host.com",'
    b' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html",'
    b' qop=auth, nc=00000001, cnonce="0a4f113b",'
    b' response="6629fae49393a05397450978507c4ef1",'
    b' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)

# RFC 3665 §2.1 F3 (with the erratum's missing comma after realm restored).
RFC3665_REGISTER_AUTHORIZATION = (
    b'Digest username="bob", realm="atlanta.example.com",'
    b' nonce="ea9c8e88df84f1cec4341ae6cbe5a359", opaque="",'
    b' uri="sips:ss2.biloxi.example.com", response="dfe56131d1958046689d83306477ecc"'
)


# --- parsing ----------------------------------------------------------------


def test_parse_challenge_rfc7616_fields() -> None:
    c = parse_challenge(rfc7616_challenge(b"SHA-256"))
    assert c.scheme == b"Digest"
    assert c.realm == RFC7616_REALM
    assert c.nonce == RFC7616_NONCE
    assert c.opaque == RFC7616_OPAQUE
    assert c.algorithm == b"SHA-256"
    assert c.qop == (b"auth", b"auth-int")
    assert c.stale is False
    assert c.userhash is False
    assert [n for n, _ in c.params] == [b"realm", b"qop", b"algorithm", b"nonce", b"opaque"]


def test_parse_challenge_stale_and_userhash_case_insensitive() -> None:
    c = parse_challenge(b'DIGEST realm="r", nonce="n", stale=TRUE, userhash="true"')
    assert c.stale is True
    assert c.userhash is True
    assert parse_challenge(b'Digest realm="r", nonce="n", stale=false').stale is False


def test_parse_challenge_lws_around_equal_and_comma() -> None:
    c = parse_challenge(b'Digest realm = "r" ,nonce= "n"  ,  algorithm =MD5')
    assert (c.realm, c.nonce, c.algorithm) == (b"r", b"n", b"MD5")


def test_parse_challenge_quoted_pair_and_comma_inside_quotes() -> None:
    c = parse_challenge(b'Digest realm="a, \\"b\\"", nonce="n", domain="sip:a sip:b"')
    assert c.realm == b'a, "b"'
    assert c.domain == b"sip:a sip:b"


def test_parse_challenge_keeps_extension_params_in_bytes() -> None:
    c = parse_challenge(b'Digest realm="r", nonce="n", charset=UTF-8, x-ext="v w"')
    rendered = bytes(c)
    assert rendered.endswith(b'charset=UTF-8, x-ext="v w"')
    assert parse_challenge(rendered) == parse_challenge(rendered)
    assert parse_challenge(rendered).params[-2:] == c.params[-2:]


def test_challenge_bytes_round_trips_fields() -> None:
    c = parse_challenge(rfc7616_challenge(b"MD5"))
    again = parse_challenge(bytes(c))
    assert (again.realm, again.nonce, again.opaque, again.algorithm, again.qop) == (
        c.realm,
        c.nonce,
        c.opaque,
        c.algorithm,
        c.qop,
    )


def test_parse_challenge_other_scheme_keeps_params() -> None:
    c = parse_challenge(b'Bearer realm="example.com", scope="sip"')
    assert c.scheme == b"Bearer"
    assert c.params == ((b"realm", b'"example.com"'), (b"scope", b'"sip"'))
    assert bytes(c) == b'Bearer realm="example.com", scope="sip"'


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b'Digest nonce="n"', id="no-realm"),
        pytest.param(b'Digest realm="r"', id="no-nonce"),
        pytest.param(b'Digest realm="r", nonce="n", realm="s"', id="duplicate"),
        pytest.param(b'Digest realm="r, nonce="n"', id="unterminated-quote"),
        pytest.param(b'Digest realm=r r, nonce="n"', id="value-not-token"),
        pytest.param(b'Digest realm, nonce="n"', id="no-equal"),
        pytest.param(b'Digest realm="r\x01", nonce="n"', id="control-in-quotes"),
        pytest.param(b'Dig(est realm="r", nonce="n"', id="scheme-not-token"),
    ],
)
def test_parse_challenge_malformed_raises(value: bytes) -> None:
    with pytest.raises(ParseError) as exc_info:
        parse_challenge(value, header="proxy-authenticate")
    assert exc_info.value.status_hint == 400
    assert exc_info.value.header == "proxy-authenticate"


def test_parse_credentials_rfc2617_fields() -> None:
    c = parse_credentials(RFC2617_AUTHORIZATION)
    assert c.username == b"Mufasa"
    assert c.realm == b"testrealm@host.com"
    assert c.uri == b"/dir/index.html"
    assert c.qop == b"auth"
    assert c.nc == 1
    assert c.cnonce == b"0a4f113b"
    assert c.opaque == b"5ccc069c403ebaf9f0171e9517f40e41"
    assert c.algorithm is None


def test_parse_credentials_rfc3665_register() -> None:
    c = parse_credentials(RFC3665_REGISTER_AUTHORIZATION)
    assert c.username == b"bob"
    assert c.opaque == b""
    assert c.uri == b"sips:ss2.biloxi.example.com"
    assert c.qop is None
    assert c.nc is None


def test_parse_credentials_rfc3665_missing_comma_is_rejected() -> None:
    # As printed in RFC 3665, F3 lacks the comma after realm: not valid syntax.
    broken = RFC3665_REGISTER_AUTHORIZATION.replace(b'.com", nonce', b'.com" nonce')
    with pytest.raises(ParseError) as exc_info:
        parse_credentials(broken)
    assert exc_info.value.header == "authorization"


def test_parse_credentials_nc_hex() -> None:
    c = parse_credentials(RFC2617_AUTHORIZATION.replace(b"nc=00000001", b"nc=0000001F"))
    assert c.nc == 31


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(RFC2617_AUTHORIZATION.replace(b"nc=00000001", b"nc=1"), id="short-nc"),
        pytest.param(RFC2617_AUTHORIZATION.replace(b"nc=00000001", b"nc=0000000g"), id="nc-g"),
        pytest.param(b'Digest username="u", realm="r", nonce="n", uri="x"', id="no-response"),
        pytest.param(b'Digest realm="r", nonce="n", uri="x", response="0"', id="no-username"),
    ],
)
def test_parse_credentials_malformed_raises(value: bytes) -> None:
    with pytest.raises(ParseError) as exc_info:
        parse_credentials(value)
    assert exc_info.value.status_hint == 400


def test_credentials_bytes_does_not_quote_algorithm_qop_nc() -> None:
    c = parse_credentials(RFC2617_AUTHORIZATION.replace(b"qop=auth", b'qop="auth"'))
    rendered = bytes(c)
    assert b"qop=auth," in rendered
    assert b"nc=00000001" in rendered
    assert parse_credentials(rendered).response == c.response


# --- RFC vectors --------------------------------------------------------------


def test_compute_response_rfc2617_example() -> None:
    key = ha1_md5(b"Mufasa", b"testrealm@host.com", b"Circle Of Life")
    response = compute_response(
        ha1=key,
        nonce=b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method=b"GET",
        uri=b"/dir/index.html",
        qop=b"auth",
        nc=1,
        cnonce=b"0a4f113b",
    )
    assert response == b"6629fae49393a05397450978507c4ef1"


def test_verify_rfc2617_example() -> None:
    key = ha1_md5(b"Mufasa", b"testrealm@host.com", b"Circle Of Life")
    creds = parse_credentials(RFC2617_AUTHORIZATION)
    assert verify(creds, method=b"GET", ha1=key)
    assert not verify(creds, method=b"POST", ha1=key)


@pytest.mark.parametrize("algorithm", [b"MD5", b"SHA-256"])
def test_build_authorization_rfc7616_examples(algorithm: bytes) -> None:
    challenge = parse_challenge(rfc7616_challenge(algorithm))
    creds = build_authorization(
        challenge,
        username=b"Mufasa",
        password=b"Circle of Life",
        method=b"GET",
        uri=b"/dir/index.html",
        cnonce=RFC7616_CNONCE,
        nc=1,
    )
    assert creds.response == RFC7616_RESPONSES[algorithm]
    assert (creds.qop, creds.nc, creds.opaque) == (b"auth", 1, RFC7616_OPAQUE)
    key = ha1(b"Mufasa", RFC7616_REALM, b"Circle of Life", algorithm)
    assert verify(parse_credentials(bytes(creds)), method=b"GET", ha1=key)


def test_ha1_families_differ_and_match_hashlib() -> None:
    md5 = ha1_md5(b"u", b"r", b"p")
    sha = ha1_sha256(b"u", b"r", b"p")
    assert md5 == hashlib.md5(b"u:r:p").hexdigest().encode()
    assert sha == hashlib.sha256(b"u:r:p").hexdigest().encode()
    assert ha1(b"u", b"r", b"p", b"SHA-256-sess") == sha


def test_compute_response_no_qop_is_rfc2069() -> None:
    key = ha1_md5(b"u", b"r", b"p")
    expected = _md5(key + b":n:" + _md5(b"REGISTER:sip:r"))
    got = compute_response(ha1=key, nonce=b"n", method=b"REGISTER", uri=b"sip:r")
    assert got == expected


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).hexdigest().encode()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


@pytest.mark.parametrize("body", [b"v=0", b"v=1"])
def test_compute_response_auth_int_hashes_body(body: bytes) -> None:
    key = ha1_sha256(b"u", b"r", b"p")
    got = compute_response(
        ha1=key, nonce=b"n", method=b"INVITE", uri=b"sip:b@r", algorithm=b"SHA-256",
        qop=b"auth-int", nc=1, cnonce=b"c", body=body,
    )  # fmt: skip
    ha2 = _sha256(b"INVITE:sip:b@r:" + _sha256(body))
    assert got == _sha256(key + b":n:00000001:c:auth-int:" + ha2)


def test_compute_response_sess_derives_session_key() -> None:
    key = ha1_md5(b"u", b"r", b"p")
    session = _md5(key + b":n:c")
    ha2 = _md5(b"GET:/")
    got = compute_response(
        ha1=key, nonce=b"n", method=b"GET", uri=b"/", algorithm=b"MD5-sess",
        qop=b"auth", nc=2, cnonce=b"c",
    )  # fmt: skip
    assert got == _md5(session + b":n:00000002:c:auth:" + ha2)


def test_compute_response_sess_without_cnonce_raises() -> None:
    with pytest.raises(LocalProtocolError):
        compute_response(ha1=b"0", nonce=b"n", method=b"GET", uri=b"/", algorithm=b"MD5-sess")


def test_hash_family() -> None:
    assert hash_family(None) == b"MD5"
    assert hash_family(b"md5-sess") == b"MD5"
    assert hash_family(b"SHA-256-sess") == b"SHA-256"
    assert hash_family(b"SHA-512-256") == b"SHA-512-256"
    assert hash_family(b"AKAv1-MD5") is None


def test_userhash_rfc7616() -> None:
    # RFC 7616 §3.4.4: username = H(unq(username) ":" unq(realm)).
    expected = hashlib.sha256(b"J\xc3\xa4s\xc3\xb8n Doe:api@example.org").hexdigest().encode()
    assert userhash("Jäsøn Doe".encode(), b"api@example.org") == expected


def test_build_authorization_userhash() -> None:
    challenge = Challenge(
        realm=b"r", nonce=b"n", algorithm=b"SHA-256", qop=(b"auth",), userhash=True
    )
    creds = build_authorization(
        challenge, username=b"alice", password=b"pw", method=b"REGISTER", uri=b"sip:r",
        cnonce=b"c", use_userhash=True,
    )  # fmt: skip
    assert creds.userhash is True
    assert creds.username == userhash(b"alice", b"r")
    assert verify(creds, method=b"REGISTER", ha1=ha1_sha256(b"alice", b"r", b"pw"))


# --- verify rejects ----------------------------------------------------------------


def _good(algorithm: bytes = b"SHA-256", qop: tuple[bytes, ...] = (b"auth",)) -> Credentials:
    challenge = challenge_for(b"r", b"n", algorithm=algorithm, qop=qop)
    return build_authorization(
        challenge, username=b"u", password=b"p", method=b"INVITE", uri=b"sip:b@r", cnonce=b"c"
    )


def test_verify_rejects_wrong_ha1_and_unknown_algorithm() -> None:
    creds = _good()
    assert verify(creds, method=b"INVITE", ha1=ha1_sha256(b"u", b"r", b"p"))
    assert not verify(creds, method=b"INVITE", ha1=ha1_sha256(b"u", b"r", b"q"))
    assert not verify(creds, method=b"INVITE", ha1=ha1_md5(b"u", b"r", b"p"))
    bad = parse_credentials(bytes(creds).replace(b"algorithm=SHA-256", b"algorithm=SHA-1"))
    assert not verify(bad, method=b"INVITE", ha1=ha1_sha256(b"u", b"r", b"p"))


def test_verify_rejects_qop_without_cnonce() -> None:
    creds = parse_credentials(bytes(_good()).replace(b', cnonce="c"', b""))
    assert not verify(creds, method=b"INVITE", ha1=ha1_sha256(b"u", b"r", b"p"))


def test_verify_accepts_upper_case_response_and_nc() -> None:
    creds = _good()
    raw = bytes(creds).replace(creds.response, creds.response.upper())
    assert verify(parse_credentials(raw), method=b"INVITE", ha1=ha1_sha256(b"u", b"r", b"p"))


def test_verify_qop_token_case_insensitive() -> None:
    key = ha1_md5(b"u", b"r", b"p")
    response = compute_response(
        ha1=key, nonce=b"n", method=b"BYE", uri=b"sip:r", qop=b"AUTH", nc=3, cnonce=b"c"
    )
    creds = Credentials(
        username=b"u", realm=b"r", nonce=b"n", uri=b"sip:r", response=response,
        qop=b"AUTH", nc=3, cnonce=b"c",
    )  # fmt: skip
    assert verify(creds, method=b"BYE", ha1=key)


def test_verify_uses_replaced_nc_not_stale_raw_param() -> None:
    creds = parse_credentials(bytes(_good()))
    key = ha1_sha256(b"u", b"r", b"p")
    assert verify(creds, method=b"INVITE", ha1=key)
    assert not verify(dataclasses.replace(creds, nc=2), method=b"INVITE", ha1=key)
    assert not verify(dataclasses.replace(creds, nc=-1), method=b"INVITE", ha1=key)


def test_verify_rejects_other_scheme() -> None:
    creds = parse_credentials(b'Bearer token="abc"')
    assert not verify(creds, method=b"INVITE", ha1=b"00")


def test_build_authorization_misuse() -> None:
    c = challenge_for(b"r", b"n")
    kwargs = {"username": b"u", "method": b"M", "uri": b"sip:r", "cnonce": b"c"}
    with pytest.raises(LocalProtocolError):
        build_authorization(c, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        build_authorization(c, password=b"p", ha1=b"00", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        build_authorization(c, password=b"p", qop=b"auth-int", **kwargs)  # type: ignore[arg-type]
    odd = Challenge(realm=b"r", nonce=b"n", algorithm=b"AKAv1-MD5")
    with pytest.raises(LocalProtocolError):
        build_authorization(odd, password=b"p", **kwargs)  # type: ignore[arg-type]


def test_build_authorization_with_ha1_and_no_qop() -> None:
    c = challenge_for(b"r", b"n", algorithm=b"MD5", qop=())
    key = ha1_md5(b"u", b"r", b"p")
    creds = build_authorization(
        c, username=b"u", ha1=key, method=b"ACK", uri=b"sip:r", cnonce=b"ignored"
    )
    assert (creds.qop, creds.nc, creds.cnonce) == (None, None, None)
    assert verify(creds, method=b"ACK", ha1=key)


def test_challenges_for_sha256_first() -> None:
    cs = challenges_for(b"example.com", b"n", opaque=b"o")
    assert [c.algorithm for c in cs] == [b"SHA-256", b"MD5"]
    assert bytes(cs[0]) == (
        b'Digest realm="example.com", nonce="n", opaque="o", algorithm=SHA-256, qop="auth"'
    )
    stale = challenge_for(b"r", b"n", stale=True)
    assert parse_challenge(bytes(stale)).stale is True


# --- properties ---------------------------------------------------------------------

# User names as a UA would send them: any printable character, UTF-8 encoded.
usernames = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30).map(str.encode)


@given(
    username=usernames,
    password=st.binary(max_size=40),
    method=st.sampled_from([b"REGISTER", b"INVITE", b"BYE", b"OPTIONS", b"MESSAGE"]),
    algorithm=st.sampled_from([b"MD5", b"MD5-sess", b"SHA-256", b"SHA-256-sess", b"SHA-512-256"]),
    qop=st.sampled_from([(b"auth",), (b"auth-int",), ()]),
    nc=st.integers(min_value=1, max_value=0xFFFFFFFF),
    body=st.binary(max_size=50),
    flip=st.integers(min_value=0),
)
def test_verify_build_authorization_property(
    *,
    username: bytes,
    password: bytes,
    method: bytes,
    algorithm: bytes,
    qop: tuple[bytes, ...],
    nc: int,
    body: bytes,
    flip: int,
) -> None:
    challenge = challenge_for(b"sip.example.com", b"nonce123", algorithm=algorithm, qop=qop)
    creds = build_authorization(
        challenge, username=username, password=password, method=method,
        uri=b"sip:sip.example.com", cnonce=b"cn", nc=nc, body=body,
    )  # fmt: skip
    key = ha1(username, b"sip.example.com", password, algorithm)
    assert verify(creds, method=method, ha1=key, body=body)
    assert verify(parse_credentials(bytes(creds)), method=method, ha1=key, body=body)
    i = flip % len(creds.response)
    swapped = b"0" if creds.response[i : i + 1] != b"0" else b"1"
    tampered = creds.response[:i] + swapped + creds.response[i + 1 :]
    forged = dataclasses.replace(creds, response=tampered)
    assert not verify(forged, method=method, ha1=key, body=body)


@given(st.binary(max_size=200))
def test_parse_challenge_arbitrary_bytes_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_challenge(data)


@given(st.binary(max_size=200))
def test_parse_credentials_arbitrary_bytes_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_credentials(b"Digest " + data)


# --- nonces -------------------------------------------------------------------------

SECRET = b"0123456789abcdef0123456789abcdef"


def test_nonce_valid_then_stale() -> None:
    nm = NonceManager(secret=SECRET, ttl=300)
    nonce = nm.issue(1_700_000_000.0, entropy=b"\x01" * 12, realm=b"r")
    assert nm.check(nonce, 1_700_000_000.0, realm=b"r") is NonceStatus.VALID
    assert nm.check(nonce, 1_700_000_300.0, realm=b"r") is NonceStatus.VALID
    assert nm.check(nonce, 1_700_000_300.5, realm=b"r") is NonceStatus.STALE
    assert nm.check(nonce, 1_699_999_990.0, realm=b"r") is NonceStatus.STALE
    assert nm.expires_at(nonce, realm=b"r") == 1_700_000_300.0


def test_nonce_is_token_and_unique_per_entropy() -> None:
    nm = NonceManager(secret=SECRET)
    a = nm.issue(5.0, entropy=b"a")
    b = nm.issue(5.0, entropy=b"b")
    assert a != b
    assert parse_challenge(b"Digest realm=r, nonce=" + a).nonce == a


def test_nonce_validates_on_another_replica_with_same_secret() -> None:
    nonce = NonceManager(secret=SECRET).issue(10.0, entropy=b"x" * 8)
    assert NonceManager(secret=SECRET).check(nonce, 11.0) is NonceStatus.VALID
    assert NonceManager(secret=b"z" * 32).check(nonce, 11.0) is NonceStatus.INVALID


def test_nonce_bound_to_realm() -> None:
    nm = NonceManager(secret=SECRET)
    nonce = nm.issue(10.0, entropy=b"e", realm=b"a.example")
    assert nm.check(nonce, 10.0, realm=b"b.example") is NonceStatus.INVALID


def test_nonce_previous_secret_still_checks() -> None:
    old = NonceManager(secret=b"o" * 32).issue(10.0, entropy=b"e")
    rotated = NonceManager(secret=SECRET, previous_secrets=(b"o" * 32,))
    assert rotated.check(old, 10.0) is NonceStatus.VALID


@pytest.mark.parametrize(
    "nonce",
    [b"", b"!!!", b"AQ", b"A", b"A" * 60, b"AQAAAAAAD0JA"],
    ids=["empty", "not-b64", "short", "one-char", "garbage", "no-mac"],
)
def test_nonce_malformed_is_invalid(nonce: bytes) -> None:
    assert NonceManager(secret=SECRET).check(nonce, 1000.0) is NonceStatus.INVALID


@given(
    entropy=st.binary(max_size=64), now=st.floats(0, 4e9), pos=st.integers(0), bit=st.integers(0, 7)
)
def test_nonce_tampering_is_invalid(entropy: bytes, now: float, pos: int, bit: int) -> None:
    nm = NonceManager(secret=SECRET)
    nonce = nm.issue(now, entropy=entropy)
    assert nm.check(nonce, now) is NonceStatus.VALID
    import base64

    raw = bytearray(base64.urlsafe_b64decode(nonce + b"=" * (-len(nonce) % 4)))
    raw[pos % len(raw)] ^= 1 << bit
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=")
    assert nm.check(tampered, now) is NonceStatus.INVALID


@given(st.binary(max_size=100), st.floats(allow_nan=False))
def test_nonce_check_arbitrary_bytes_never_raises(data: bytes, now: float) -> None:
    assert NonceManager(secret=SECRET).check(data, now) in set(NonceStatus)


def test_nonce_manager_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        NonceManager(secret=b"short")
    nm = NonceManager(secret=SECRET)
    with pytest.raises(LocalProtocolError):
        nm.issue(-1.0, entropy=b"")
    with pytest.raises(LocalProtocolError):
        nm.issue(1.0, entropy=b"x" * 65)


def test_nc_key_is_kv_safe_and_stable() -> None:
    key = nc_key(b"abc/\x00 weird")
    assert key == nc_key(b"abc/\x00 weird")
    assert key != nc_key(b"abc")
    assert key.startswith(b"nc.")
    assert all(c in b"0123456789abcdef.nc" for c in key)
