"""sipmesh_edge.protection: rate limits, scanners, lists, bans, auth failures (explicit time)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipmesh_edge.protection import (
    NewBan,
    Protection,
    ProtectionConfig,
    Reason,
    is_auth_failure,
    parse_target,
    user_agent_of,
)
from sipmsg import Request, Response, make_response, parse

OPTIONS = (
    b"OPTIONS sip:edge@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-1\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=a\r\nTo: <sip:edge@192.0.2.10>\r\n"
    b"Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
SCANNER = OPTIONS.replace(
    b"Content-Length: 0", b"User-Agent: friendly-scanner\r\nContent-Length: 0"
)
REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-r\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=a\r\nTo: <sip:a@example.com>\r\n"
    b"Call-ID: r1\r\nCSeq: 2 REGISTER\r\nContact: <sip:a@198.51.100.7:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
CREDENTIALS = (
    b'Digest username="a", realm="example.com", nonce="n", uri="sip:example.com", response="00"'
)


def _request(data: bytes) -> Request:
    msg = parse(data)
    assert isinstance(msg, Request)
    return msg


def _challenge(req: Request, status: int, stale: bool = False) -> Response:
    name = b"WWW-Authenticate" if status == 401 else b"Proxy-Authenticate"
    value = b'Digest realm="example.com", nonce="abc"' + (b", stale=true" if stale else b"")
    return make_response(req, status, headers=[(name, value)])


def _flood(
    p: Protection, source: str, count: int, start: float, step: float
) -> list[Reason | None]:
    return [p.check(source, OPTIONS, start + i * step) for i in range(count)]


@pytest.mark.parametrize(
    ("limit", "window", "count", "step", "first_drop"),
    [
        pytest.param(10, 1.0, 20, 0.01, 10, id="burst-over-limit-banned-at-11th"),
        pytest.param(10, 1.0, 10, 0.01, None, id="exactly-limit-passes"),
        pytest.param(10, 1.0, 40, 0.2, None, id="5-per-second-under-10-per-second"),
        pytest.param(10, 1.0, 40, 0.05, 10, id="20-per-second-over-10-per-second"),
        pytest.param(0, 1.0, 500, 0.0, None, id="zero-disables"),
    ],
)
def test_protection_rate_limit(
    limit: int, window: float, count: int, step: float, first_drop: int | None
) -> None:
    p = Protection(ProtectionConfig(rate_limit=limit, rate_window=window))
    verdicts = _flood(p, "203.0.113.9", count, 1000.0, step)
    drops = [i for i, v in enumerate(verdicts) if v is not None]
    assert (drops[0] if drops else None) == first_drop
    if first_drop is not None:
        assert verdicts[first_drop] is Reason.RATE
        assert set(verdicts[first_drop + 1 :]) == {Reason.BANNED}


def test_protection_rate_ban_is_published_once_and_expires() -> None:
    p = Protection(ProtectionConfig(rate_limit=5, rate_window=1.0, rate_ban_time=60.0))
    _flood(p, "203.0.113.9", 10, 1000.0, 0.001)
    assert p.bans_to_publish() == [
        NewBan(target="203.0.113.9", reason=Reason.RATE, created_at=1000.005, expires_at=1060.005)
    ]
    assert p.bans_to_publish() == []
    assert p.check("203.0.113.9", OPTIONS, 1060.0) is Reason.BANNED
    assert p.check("203.0.113.9", OPTIONS, 1060.01) is None


def test_protection_rate_limit_is_per_source() -> None:
    p = Protection(ProtectionConfig(rate_limit=5, rate_window=1.0))
    _flood(p, "203.0.113.9", 10, 1000.0, 0.001)
    assert p.check("203.0.113.10", OPTIONS, 1000.02) is None
    assert p.check("2001:db8::1", OPTIONS, 1000.02) is None


def test_protection_sliding_window_counts_the_previous_window() -> None:
    # 8 at the end of one window and 8 at the start of the next: 16 in a
    # sliding second although each fixed window holds only 8.
    p = Protection(ProtectionConfig(rate_limit=10, rate_window=1.0))
    assert _flood(p, "203.0.113.9", 8, 1000.9, 0.01) == [None] * 8
    verdicts = _flood(p, "203.0.113.9", 8, 1001.0, 0.01)
    assert Reason.RATE in verdicts


@pytest.mark.parametrize(
    ("agent", "patterns", "expected"),
    [
        pytest.param(b"friendly-scanner", [], Reason.SCANNER, id="friendly-scanner"),
        pytest.param(b"sipvicious 0.3.4", [], Reason.SCANNER, id="sipvicious"),
        pytest.param(b"SIPVicious", [], Reason.SCANNER, id="case-insensitive"),
        pytest.param(b"sipcli/v1.8", [], Reason.SCANNER, id="sipcli"),
        pytest.param(b"VaxSIPUserAgent/3.1", [], Reason.SCANNER, id="vax"),
        pytest.param(b"iWar", [], Reason.SCANNER, id="iwar"),
        pytest.param(b"Linphone/5.2 (belle-sip/5.2)", [], None, id="linphone-passes"),
        pytest.param(b"Asterisk PBX 20.5", [], None, id="asterisk-passes"),
        pytest.param(b"evil-dialer/2", [r"evil-\w+"], Reason.SCANNER, id="config-pattern"),
        pytest.param(b"Zoiper rv2.10", [r"^zoiper"], Reason.SCANNER, id="config-anchored"),
    ],
)
def test_protection_scanner_user_agents(
    agent: bytes, patterns: list[str], expected: Reason | None
) -> None:
    p = Protection(ProtectionConfig(scanner_patterns=patterns))
    data = OPTIONS.replace(b"Content-Length: 0", b"User-Agent: " + agent + b"\r\nContent-Length: 0")
    assert p.check("203.0.113.9", data, 1000.0) is expected
    if expected is not None:
        assert p.check("203.0.113.9", OPTIONS, 1000.1) is Reason.BANNED
        assert [b.reason for b in p.bans_to_publish()] == [Reason.SCANNER]


def test_protection_scanner_blocking_can_be_turned_off() -> None:
    p = Protection(ProtectionConfig(block_scanners=False))
    assert p.check("203.0.113.9", SCANNER, 1000.0) is None


def test_protection_user_agent_in_the_body_is_not_the_header() -> None:
    body = b"SIP/2.0 200 OK\r\nUser-Agent: friendly-scanner\r\n"
    data = OPTIONS.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: %d\r\n\r\n" % len(body))
    assert user_agent_of(data + body) is None
    assert Protection(ProtectionConfig()).check("203.0.113.9", data + body, 1000.0) is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(SCANNER, b"friendly-scanner", id="present"),
        pytest.param(OPTIONS, None, id="absent"),
        pytest.param(b"user-agent:   x y  \r\n\r\n", b"x y", id="lower-case-spaces"),
        pytest.param(b"\x00\xff garbage", None, id="garbage"),
        pytest.param(
            b"X-Orig-User-Agent: a\r\nUSER-AGENT\t : b\r\nUser-Agent: c\r\n\r\n", b"b", id="first"
        ),
        pytest.param(b"X: user-agent: a\r\nUser-Agent x\r\n\r\n", None, id="not-a-header"),
        pytest.param(b"User-Agent: a\rUser-Agent: b\r\n\r\n", b"a", id="bare-cr"),
        pytest.param(b"User-Agent:\r\n\r\n", b"", id="empty"),
    ],
)
def test_protection_user_agent_of(data: bytes, expected: bytes | None) -> None:
    assert user_agent_of(data) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("10.1.2.3", None, id="allowed-despite-deny-all"),
        pytest.param("10.1.2.3", None, id="allowed-scanner-passes"),
        pytest.param("192.0.2.1", Reason.DENY_LIST, id="denied"),
        pytest.param("2001:db8::5", None, id="v6-allowed"),
        pytest.param("2001:db9::5", Reason.DENY_LIST, id="v6-denied"),
    ],
)
def test_protection_allow_and_deny_lists(source: str, expected: Reason | None) -> None:
    p = Protection(
        ProtectionConfig(allow=["10.0.0.0/8", "2001:db8::/32"], deny=["0.0.0.0/0", "::/0"])
    )
    assert p.check(source, SCANNER, 1000.0) is expected
    assert p.bans_to_publish() == []


def test_protection_allow_list_skips_rate_limits_and_bans() -> None:
    p = Protection(ProtectionConfig(allow=["198.51.100.0/24"], rate_limit=2, rate_window=1.0))
    p.ban("198.51.100.7", expires_at=2000.0)
    assert _flood(p, "198.51.100.7", 50, 1000.0, 0.001) == [None] * 50
    assert not p.auth_failed("198.51.100.7", 1000.0)


def test_protection_cidr_ban_and_unban() -> None:
    p = Protection(ProtectionConfig())
    p.ban("203.0.113.0/24", expires_at=2000.0)
    assert p.check("203.0.113.77", OPTIONS, 1000.0) is Reason.BANNED
    assert p.is_banned("203.0.113.77", 1000.0)
    assert p.check("203.0.114.1", OPTIONS, 1000.0) is None
    assert p.bans == {"203.0.113.0/24": 2000.0}
    p.unban("203.0.113.0/24")
    assert p.check("203.0.113.77", OPTIONS, 1000.0) is None


def test_protection_address_ban_is_canonical_and_expires() -> None:
    p = Protection(ProtectionConfig())
    p.ban("2001:DB8:0:0::1", expires_at=1010.0)
    assert p.check("2001:db8::1", OPTIONS, 1000.0) is Reason.BANNED
    assert p.check("2001:db8::1", OPTIONS, 1010.0) is None
    p.ban("[2001:db8::2]", expires_at=1010.0)
    assert p.bans == {"2001:db8::2": 1010.0}  # the check at 1010 forgot ::1
    p.expire(1005.0)
    assert p.bans == {"2001:db8::2": 1010.0}
    p.expire(1010.0)
    assert p.bans == {}


def test_protection_disabled_passes_everything() -> None:
    p = Protection(ProtectionConfig(enabled=False, deny=["0.0.0.0/0"], rate_limit=1))
    assert _flood(p, "203.0.113.9", 10, 1000.0, 0.0) == [None] * 10
    assert p.check("203.0.113.9", SCANNER, 1000.0) is None


@pytest.mark.parametrize(
    ("limit", "failures", "banned_at"),
    [
        pytest.param(3, 5, 2, id="third-failure-bans"),
        pytest.param(3, 2, None, id="under-limit"),
        pytest.param(0, 50, None, id="zero-disables"),
    ],
)
def test_protection_auth_failures(limit: int, failures: int, banned_at: int | None) -> None:
    p = Protection(ProtectionConfig(auth_fail_limit=limit, auth_fail_window=60.0))
    results = [p.auth_failed("203.0.113.9", 1000.0 + i) for i in range(failures)]
    assert [i for i, r in enumerate(results) if r] == ([] if banned_at is None else [banned_at])
    assert p.is_banned("203.0.113.9", 1100.0) is (banned_at is not None)
    published = p.bans_to_publish()
    assert [b.reason for b in published] == (
        [Reason.AUTH_FAILURES] if banned_at is not None else []
    )


def test_protection_auth_failures_spread_out_are_forgiven() -> None:
    p = Protection(ProtectionConfig(auth_fail_limit=3, auth_fail_window=10.0))
    assert not any(p.auth_failed("203.0.113.9", 1000.0 + 30 * i) for i in range(10))


def test_protection_expire_forgets_idle_sources() -> None:
    p = Protection(ProtectionConfig(rate_window=1.0, auth_fail_window=10.0))
    p.check("203.0.113.9", OPTIONS, 1000.0)
    p.auth_failed("203.0.113.10", 1000.0)
    assert p.tracked == 2
    p.expire(1002.0)
    assert p.tracked == 1
    p.expire(1020.0)
    assert p.tracked == 0


def test_protection_max_sources_bounds_memory() -> None:
    p = Protection(ProtectionConfig(max_sources=3, rate_limit=1))
    for i in range(10):
        p.check(f"203.0.113.{i}", OPTIONS, 1000.0)
    assert p.tracked == 3


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"allow": ["10.0.0.0/33"]}, id="bad-prefix"),
        pytest.param({"deny": ["example.com"]}, id="name"),
        pytest.param({"scanner_patterns": ["(unclosed"]}, id="bad-regex"),
    ],
)
def test_protection_config_rejects_bad_entries(config: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError, match=r"not an IP|scanner pattern") as exc_info:
        ProtectionConfig(**config)  # type: ignore[arg-type]
    assert "\n" not in str(exc_info.value)


def test_protection_parse_target() -> None:
    assert str(parse_target("203.0.113.9")) == "203.0.113.9/32"
    assert str(parse_target("203.0.113.9/24")) == "203.0.113.0/24"
    assert str(parse_target("[2001:db8::1]")) == "2001:db8::1/128"


@pytest.mark.parametrize(
    ("with_credentials", "status", "stale", "expected"),
    [
        pytest.param(True, 401, False, True, id="wrong-password-401"),
        pytest.param(True, 407, False, True, id="wrong-password-407"),
        pytest.param(False, 401, False, False, id="first-challenge"),
        pytest.param(True, 401, True, False, id="stale-nonce"),
        pytest.param(True, 403, False, False, id="forbidden-not-counted"),
        pytest.param(True, 200, False, False, id="success"),
    ],
)
def test_protection_is_auth_failure(
    with_credentials: bool, status: int, stale: bool, expected: bool
) -> None:
    req = _request(REGISTER)
    if with_credentials:
        req = req.with_header(b"Authorization", CREDENTIALS)
    resp = _challenge(req, status, stale) if status in (401, 407) else make_response(req, status)
    assert is_auth_failure(req, resp) is expected


def test_protection_loopback_is_allowed_by_default() -> None:
    p = Protection(ProtectionConfig(rate_limit=1, rate_window=1.0))
    assert _flood(p, "127.0.0.1", 10, 1000.0, 0.0) == [None] * 10
    assert p.check("::1", SCANNER, 1000.0) is None
    assert p.check("203.0.113.9", SCANNER, 1000.0) is Reason.SCANNER
    strict = Protection(ProtectionConfig(allow=[], rate_limit=1, rate_window=1.0))
    assert _flood(strict, "127.0.0.2", 3, 1000.0, 0.0) == [None, Reason.RATE, Reason.BANNED]


def test_protection_lists_follow_reconfigure() -> None:
    p = Protection(ProtectionConfig(deny=["192.0.2.0/24"]))
    assert p.check("192.0.2.1", OPTIONS, 1000.0) is Reason.DENY_LIST
    p.reconfigure(ProtectionConfig(allow=["192.0.2.0/24"], deny=["0.0.0.0/0"]))
    assert p.check("192.0.2.1", SCANNER, 1000.0) is None
    assert p.check("198.51.100.1", OPTIONS, 1000.0) is Reason.DENY_LIST


def test_protection_scanner_names_any_case_and_custom_patterns() -> None:
    p = Protection(ProtectionConfig(scanner_patterns=[r"^evil-\d+$"]))
    agent = OPTIONS.replace(
        b"Content-Length: 0", b"User-Agent: X SipVicious/0.3\r\nContent-Length: 0"
    )
    assert p.check("203.0.113.1", agent, 1000.0) is Reason.SCANNER
    custom = OPTIONS.replace(b"Content-Length: 0", b"User-Agent: EVIL-42\r\nContent-Length: 0")
    assert p.check("203.0.113.2", custom, 1000.0) is Reason.SCANNER
    benign = OPTIONS.replace(b"Content-Length: 0", b"User-Agent: evil-42x\r\nContent-Length: 0")
    assert p.check("203.0.113.3", benign, 1000.0) is None


_UA_REFERENCE = re.compile(rb"(?im)^user-agent[ \t]*:[ \t]*([^\r\n]*)")


def _user_agent_by_regex(data: bytes) -> bytes | None:
    """What user_agent_of returned when it was this regex search (the definition)."""
    end = data.find(b"\r\n\r\n")
    m = _UA_REFERENCE.search(data, 0, len(data) if end < 0 else end + 2)
    return m.group(1).strip() if m else None


_UA_PIECES = st.sampled_from(
    [b"User-Agent", b"user-agent", b"USER-agent", b":", b" ", b"\t", b"\r", b"\n", b"\r\n", b"x"]
)


@given(st.lists(_UA_PIECES, max_size=14).map(b"".join))
def test_protection_user_agent_of_equals_the_regex(data: bytes) -> None:
    assert user_agent_of(data) == _user_agent_by_regex(data)
