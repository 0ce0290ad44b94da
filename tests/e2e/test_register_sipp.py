"""Phones register through the bus: SIPp -> edge -> NATS -> registrar -> KV, over UDP and TCP.

Users are provisioned with the real command line (``sipmesh user add`` /
``user import``); bindings are checked three ways: what the registrar answered
(SIPp's scenario logs), what ``sipmesh registrations`` prints, and the
``location`` bucket read directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.harness import MIN_EXPIRES, Stack, User
from tests.e2e.sipp import RunSipp, SippResult, write_users

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("transport", ["udp", "tcp"])]

MakeUser = Callable[[str], User]


def _log(result: SippResult, word: str) -> list[str]:
    """The scenario's log lines starting with ``word``, without it."""
    return [line.split(" ", 1)[1] for line in result.log_lines if line.startswith(word + " ")]


def _ok(result: SippResult) -> None:
    assert result.returncode == 0, result.describe()
    assert result.failed == 0, result.describe()


def _registrations(stack: Stack, user: str) -> str:
    return stack.cli("registrations", "--user", f"{user}@{stack.domain}")


def test_register_digest_auth_then_200(
    transport: str, stack: Stack, sipp: RunSipp, make_user: MakeUser
) -> None:
    alice = make_user("alice")

    result = sipp("reg_auth.xml", users=[(alice.name, alice.password)], transport=transport)

    _ok(result)
    [line] = _log(result, "ok")
    user, contacts = line.split(" ", 1)
    assert user == alice.name
    # RFC 3261 §10.3 step 8: every binding listed, each with its expiry.
    assert f"<sip:{alice.name}@127.0.0.1:" in contacts
    assert f"transport={transport.upper()}>;expires=" in contacts
    [binding] = stack.bindings(alice.name)
    assert binding.transport == transport
    assert binding.edge_id == "e2e-edge"
    assert binding.user_agent == "sipp-e2e"
    assert 590 <= binding.expires_at - time.time() <= 600
    assert (binding.connection_id is None) == (transport == "udp")
    listed = _registrations(stack, alice.name)
    assert f"sip:{alice.name}@{stack.domain}" in listed
    assert binding.contact in listed
    assert f"/{transport}" in listed


def test_register_imported_users_all_register(
    transport: str, stack: Stack, sipp: RunSipp, tmp_path: Path
) -> None:
    users = [(f"imp{transport}{i}", f"secret-{i}") for i in range(20)]
    # The same SIPp injection file feeds `sipmesh user import` and SIPp.
    stack.cli(
        "user", "import", str(write_users(tmp_path / "import.csv", users)), "--domain", stack.domain
    )

    result = sipp("reg_auth.xml", users=users, transport=transport)

    _ok(result)
    assert result.successful == len(users)
    found = stack.all_bindings(u for u, _ in users)
    assert {u: len(b) for u, b in found.items()} == {u: 1 for u, _ in users}


def test_register_wrong_password_is_401_again(
    transport: str, stack: Stack, sipp: RunSipp, make_user: MakeUser
) -> None:
    bob = make_user("bob")

    result = sipp(
        "reg_wrong_password.xml", users=[(bob.name, "not-" + bob.password)], transport=transport
    )

    # The scenario requires 401, then 401 again for the wrong credentials.
    _ok(result)
    assert _log(result, "rejected") == [bob.name]
    assert stack.bindings(bob.name) == []


def test_register_unknown_user_is_401_like_a_wrong_password(
    transport: str, stack: Stack, sipp: RunSipp
) -> None:
    result = sipp(
        "reg_wrong_password.xml", users=[("nobody-here", "whatever")], transport=transport
    )

    _ok(result)
    assert stack.bindings("nobody-here") == []


def test_register_expires_zero_removes_the_binding(
    transport: str, stack: Stack, sipp: RunSipp, make_user: MakeUser
) -> None:
    carol = make_user("carol")

    result = sipp("reg_unregister.xml", users=[(carol.name, carol.password)], transport=transport)

    # The scenario checks the last 200 lists no Contact.
    _ok(result)
    [registered] = _log(result, "registered")
    assert f"<sip:{carol.name}@127.0.0.1:" in registered
    assert _log(result, "unregistered") == [carol.name]
    assert stack.bindings(carol.name) == []
    assert _registrations(stack, carol.name).strip() == ""


def test_register_several_contacts_all_listed(
    transport: str, stack: Stack, sipp: RunSipp, make_user: MakeUser
) -> None:
    dave = make_user("dave")

    result = sipp("reg_multi.xml", users=[(dave.name, dave.password)], transport=transport)

    # The scenario checks each of the three contacts is in the 200.
    _ok(result)
    [line] = _log(result, "registered")
    assert line.split(" ") == [
        dave.name,
        f"<sip:{dave.name}@192.0.2.1:5060>;q=0.5;expires=600",
        f"<sip:{dave.name}@192.0.2.2:5060;transport=tcp>;expires=600",
        f"<sip:{dave.name}@192.0.2.3:5061>;expires=600",
    ]
    contacts = {b.contact for b in stack.bindings(dave.name)}
    assert contacts == {
        f"sip:{dave.name}@192.0.2.1:5060",
        f"sip:{dave.name}@192.0.2.2:5060;transport=tcp",
        f"sip:{dave.name}@192.0.2.3:5061",
    }


def test_register_contact_star_removes_all(
    transport: str, stack: Stack, sipp: RunSipp, make_user: MakeUser
) -> None:
    erin = make_user("erin")
    creds = [(erin.name, erin.password)]
    _ok(sipp("reg_multi.xml", users=creds, transport=transport))
    _ok(sipp("reg_auth.xml", users=creds, transport=transport))  # another Call-ID
    assert len(stack.bindings(erin.name)) == 4

    result = sipp("reg_star.xml", users=creds, transport=transport)

    _ok(result)
    assert _log(result, "cleared") == [erin.name]
    assert stack.bindings(erin.name) == []


def test_register_binding_expires(
    transport: str, stack: Stack, sipp: RunSipp, make_user: MakeUser
) -> None:
    frank = make_user("frank")
    creds = [(frank.name, frank.password)]
    _ok(sipp("reg_auth.xml", users=creds, transport=transport, expires=MIN_EXPIRES))
    [binding] = stack.bindings(frank.name)

    time.sleep(max(0.0, binding.expires_at - time.time()) + 0.3)

    assert stack.bindings(frank.name) == []
    assert _registrations(stack, frank.name).strip() == ""
    # And the registrar itself lists nothing any more (RFC 3261 §10.2.3 query).
    query = sipp("reg_query.xml", users=creds, transport=transport)
    _ok(query)
    assert _log(query, "bindings") == [f"{frank.name} "]


def test_register_too_brief_is_423_with_min_expires(
    transport: str, stack: Stack, sipp: RunSipp, make_user: MakeUser
) -> None:
    gina = make_user("gina")

    result = sipp(
        "reg_too_brief.xml",
        users=[(gina.name, gina.password)],
        transport=transport,
        expires=MIN_EXPIRES - 1,
    )

    _ok(result)
    assert _log(result, "too-brief") == [f"{gina.name} {MIN_EXPIRES}"]
    assert stack.bindings(gina.name) == []
