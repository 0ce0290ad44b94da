"""The pure helpers of the provisioning commands: names, HA1s, the users file, tables."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sipmesh import cli
from sipmesh._console import Progress, format_table
from sipmesh.registrations import registrations, source_of
from sipmesh.users import (
    InputError,
    UserRow,
    canonical_domain,
    check_user,
    make_subscriber,
    parse_users_csv,
    split_name,
)
from sipmesh_bus.records import Binding, BindingSet
from sipmsg.digest import ha1


def _error(text: str, domain: str | None = "example.com") -> str:
    with pytest.raises(InputError) as exc_info:
        parse_users_csv(text, source="users.csv", domain=domain)
    return str(exc_info.value)


# --- names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        (" sip.example.org ", "sip.example.org"),
        ("192.0.2.1", "192.0.2.1"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("localhost", "localhost"),
    ],
)
def test_canonical_domain_normalises(given: str, expected: str) -> None:
    assert canonical_domain(given) == expected


@pytest.mark.parametrize(
    "bad", ["", "exa mple.com", "a@b", "-x.com", "x..com", "a/b", "2001:db8::1"]
)
def test_canonical_domain_rejects(bad: str) -> None:
    with pytest.raises(InputError) as exc_info:
        canonical_domain(bad)
    assert "bad domain" in str(exc_info.value)


@pytest.mark.parametrize("good", ["alice", "Alice.B", "+15551234", "a_b-c!~*'()&=+$,;?/"])
def test_check_user_accepts_rfc3261_user_chars(good: str) -> None:
    assert check_user(good) == good


@pytest.mark.parametrize("bad", ["", "al ice", "a:b", "a%20b", "é", "a\tb", 'a"b'])
def test_check_user_rejects(bad: str) -> None:
    with pytest.raises(InputError):
        check_user(bad)


def test_split_name_forms() -> None:
    assert split_name("alice", None) == ("alice", None)
    assert split_name("alice", "Example.com") == ("alice", "example.com")
    assert split_name("alice@EXAMPLE.com", None) == ("alice", "example.com")
    assert split_name("alice@example.com", "example.com.") == ("alice", "example.com")


def test_split_name_two_domains_disagree() -> None:
    with pytest.raises(InputError) as exc_info:
        split_name("alice@a.example", "b.example")
    assert (
        str(exc_info.value)
        == "'alice@a.example' names domain a.example, but the domain given is b.example"
    )


def test_make_subscriber_stores_ha1s_only() -> None:
    sub = make_subscriber("alice", "example.com", "s3cret")
    assert sub.ha1_md5 == ha1(b"alice", b"example.com", b"s3cret", b"MD5").decode()
    assert sub.ha1_sha256 == ha1(b"alice", b"example.com", b"s3cret", b"SHA-256").decode()
    # RFC 2617 §3.5 example: Mufasa / testrealm@host.com / Circle Of Life.
    known = make_subscriber("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert known.ha1_md5 == "939e7578ed9e3c518a452acee763bce9"
    assert "s3cret" not in repr(sub)
    assert sub.enabled


def test_make_subscriber_empty_password() -> None:
    with pytest.raises(InputError) as exc_info:
        make_subscriber("alice", "example.com", "")
    assert str(exc_info.value) == "empty password for alice@example.com"


# --- the users file -------------------------------------------------------------


def test_parse_sipp_file_skips_its_header() -> None:
    rows = parse_users_csv("SEQUENTIAL\nalice;pw1\nbob;pw;2\n", source="f", domain="example.com")
    assert rows == [
        UserRow(user="alice", password="pw1", domain="example.com", line=2),
        UserRow(user="bob", password="pw", domain="2", line=3),
    ]


@pytest.mark.parametrize(
    "header", ["SEQUENTIAL", "RANDOM", "USER", "RANDOM,PRINTF=10", "sequential"]
)
def test_parse_sipp_headers(header: str) -> None:
    rows = parse_users_csv(f"{header}\nalice;pw\n", source="f", domain="example.com")
    assert [(r.user, r.line) for r in rows] == [("alice", 2)]


def test_parse_user_named_like_a_sipp_header_is_a_user() -> None:
    rows = parse_users_csv("random,pw\nuser,pw2\n", source="f", domain="example.com")
    assert [(r.user, r.password, r.line) for r in rows] == [("random", "pw", 1), ("user", "pw2", 2)]


def test_parse_csv_with_header_quotes_and_domains() -> None:
    text = 'user,password,domain\r\nann,"p,1",Other.example\r\n\r\n# a comment\r\nben , p2 \r\n'
    rows = parse_users_csv(text, source="f", domain="example.com")
    assert rows == [
        UserRow(user="ann", password="p,1", domain="other.example", line=2),
        UserRow(user="ben", password="p2", domain="example.com", line=5),
    ]


def test_parse_user_at_domain_beats_the_default() -> None:
    rows = parse_users_csv("carol@b.example,pw\n", source="f", domain="a.example")
    assert (rows[0].user, rows[0].domain) == ("carol", "b.example")


def test_parse_empty_file() -> None:
    assert parse_users_csv("", source="f") == []
    assert parse_users_csv("SEQUENTIAL\n", source="f") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice,pw\nbob\n", "users.csv:2: expected user,password[,domain]"),
        ("SEQUENTIAL\nalice\n", "users.csv:2: expected user;password[;domain]"),
        ("alice;pw\nbob,pw\n", "users.csv:2: expected user;password[;domain]"),
        ("alice,\n", "users.csv:1: expected user,password[,domain]"),
        (",pw\n", "users.csv:1: expected user,password[,domain]"),
        ("a,b,c,d\n", "users.csv:1: expected user,password[,domain]"),
        (
            "al ice,pw\n",
            "users.csv:1: bad user name 'al ice': use letters, digits and -_.!~*'()&=+$,;?/",
        ),
        ("alice,pw\nalice@EXAMPLE.com,x\n", "users.csv:2: alice@example.com is already on line 1"),
    ],
    ids=[
        "no-password",
        "sipp-no-password",
        "mixed",
        "empty-password",
        "empty-user",
        "four",
        "bad-user",
        "dup",
    ],
)
def test_parse_bad_line_is_named(text: str, message: str) -> None:
    assert _error(text) == message


def test_parse_bad_domain_field_does_not_echo_it() -> None:
    # A ';' in an unquoted password makes its tail look like a domain.
    message = _error("alice;pass;wo rd\n")
    assert message == "users.csv:1: field 3 is not a domain (quote a password that holds ';')"
    assert "wo rd" not in message


def test_parse_bad_quoting() -> None:
    assert _error('alice,"pw"x"\n').startswith("users.csv:1: expected user,password[,domain] (")


def test_parse_line_without_domain_needs_a_default() -> None:
    assert (
        _error("alice,pw\n", domain=None) == "users.csv:1: no domain: add ,domain or pass --domain"
    )
    rows = parse_users_csv("alice,pw,example.com\n", source="f", domain=None)
    assert rows[0].domain == "example.com"


def test_parse_numbers_lines_like_an_editor() -> None:
    # \f and \x1c are not line ends for an editor; str.splitlines() would split there.
    assert _error("a,p\x0cq\nb\n") == "users.csv:2: expected user,password[,domain]"


# --- the domain default -------------------------------------------------------------


def test_resolve_domain_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIPMESH_DOMAIN", raising=False)
    with pytest.raises(cli.CliError) as exc_info:
        cli.resolve_domain(None, tmp_path)
    assert exc_info.value.code == 2
    (tmp_path / "domain").write_text("From.File\n")
    assert cli.resolve_domain(None, tmp_path) == "from.file"
    monkeypatch.setenv("SIPMESH_DOMAIN", "from.env")
    assert cli.resolve_domain(None, tmp_path) == "from.env"
    assert cli.resolve_domain("From.Flag", tmp_path) == "from.flag"


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        cli.main(["user", "add"])
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "sipmesh user add: error: the following arguments are required: NAME "
        "(see sipmesh user add --help)\n"
    )


# --- tables, progress, registrations ----------------------------------------------------


def test_format_table_aligns_and_trims() -> None:
    table = format_table(("A", "LONGER"), [("xxx", "y"), ("z", "")])
    assert table.splitlines() == ["A    LONGER", "xxx  y", "z"]


def test_progress_renders_and_ends_its_line() -> None:
    out = io.StringIO()
    bar = Progress("importing", 200, out)
    assert bar.render(50) == "importing [########......................] " + " 50/200  25%"
    bar.update(200)
    bar.close()
    assert out.getvalue() == "\r" + bar.render(200) + "\n"
    assert "200/200 100%" in out.getvalue()


def test_progress_never_drawn_writes_nothing() -> None:
    out = io.StringIO()
    Progress("x", 10, out).close()
    assert out.getvalue() == ""


def _binding(contact: str, expires_at: float, **extra: object) -> Binding:
    fields: dict[str, object] = {
        "contact": contact,
        "expires_at": expires_at,
        "call_id": "c",
        "cseq": 1,
        "registered_at": 0.0,
        "source_host": "192.0.2.1",
        "source_port": 5060,
        "transport": "udp",
        "edge_id": "e1",
    }
    fields.update(extra)
    return Binding(**fields)  # type: ignore[arg-type]


def test_source_of_brackets_ipv6() -> None:
    assert source_of(_binding("sip:a@h", 10)) == "192.0.2.1:5060/udp"
    v6 = _binding("sip:a@h", 10, source_host="2001:db8::1", source_port=5061, transport="tls")
    assert source_of(v6) == "[2001:db8::1]:5061/tls"


def test_registrations_only_live_sorted() -> None:
    now = 1000.0
    alice = BindingSet(
        aor="sip:alice@b.example",
        bindings=[
            _binding("sip:old", now),  # expires exactly now: gone (records.Binding.expires_at)
            _binding("sip:low", now + 60, q=0.1),
            _binding("sip:high", now + 30.4, q=0.9, user_agent="UA"),
        ],
    )
    bob = BindingSet(aor="sip:bob@a.example", bindings=[_binding("sip:bob", now + 5)])
    rows = registrations([("alice", "b.example", alice), ("bob", "a.example", bob)], now)
    assert [(r.aor, r.contact, r.expires_in) for r in rows] == [
        ("sip:bob@a.example", "sip:bob", 5),
        ("sip:alice@b.example", "sip:high", 30),
        ("sip:alice@b.example", "sip:low", 60),
    ]
    assert rows[1].user_agent == "UA"
    assert registrations([("x", "y", BindingSet(aor="sip:x@y"))], now) == []
