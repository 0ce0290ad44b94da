"""A real SIP phone registers through the bus: baresip -> edge -> registrar, digest auth.

The user is added with ``sipmesh user add``; baresip learns its password from
its accounts line and answers the registrar's challenge itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.e2e.baresip import Baresip
from tests.e2e.harness import LOOPBACK, Stack, User

pytestmark = pytest.mark.e2e

StartPhone = Callable[[str], Baresip]


def _account(stack: Stack, user: User, password: str, transport: str) -> str:
    # The domain is never resolved: every request goes to the edge, the outbound proxy.
    return (
        f"<sip:{user.name}@{stack.domain};transport={transport}>;auth_pass={password}"
        f';outbound="sip:{LOOPBACK}:{stack.sip_port};transport={transport}";regint=600'
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_baresip_registers_with_a_cli_password(
    transport: str, stack: Stack, make_user: Callable[[str], User], phone: StartPhone
) -> None:
    alice = make_user("phone")

    ua = phone(_account(stack, alice, alice.password, transport))

    event = ua.wait_event("REGISTER_OK", "REGISTER_FAIL")
    assert event["type"] == "REGISTER_OK", event
    info = ua.command("reginfo")
    assert info["ok"], info
    assert f"sip:{alice.name}@{stack.domain}" in info["data"]
    assert "OK" in info["data"], info["data"]
    [binding] = stack.bindings(alice.name)
    assert binding.transport == transport
    assert binding.contact.startswith(f"sip:{alice.name}")
    assert f"@{LOOPBACK}:{ua.sip_port}" in binding.contact
    assert binding.user_agent is not None
    assert binding.user_agent.startswith("baresip")
    listed = stack.cli("registrations", "--user", f"{alice.name}@{stack.domain}")
    assert binding.contact in listed
    assert "baresip" in listed


def test_baresip_quit_unregisters(
    stack: Stack, make_user: Callable[[str], User], phone: StartPhone
) -> None:
    bob = make_user("phone")
    ua = phone(_account(stack, bob, bob.password, "udp"))
    assert ua.wait_event("REGISTER_OK", "REGISTER_FAIL")["type"] == "REGISTER_OK"
    assert len(stack.bindings(bob.name)) == 1

    # A clean exit: baresip sends REGISTER Expires: 0 and waits for the 200.
    assert ua.stop() == 0

    assert stack.bindings(bob.name) == []


def test_baresip_wrong_password_fails(
    stack: Stack, make_user: Callable[[str], User], phone: StartPhone
) -> None:
    carol = make_user("phone")

    ua = phone(_account(stack, carol, "wrong-" + carol.password, "udp"))

    event = ua.wait_event("REGISTER_OK", "REGISTER_FAIL")
    assert event["type"] == "REGISTER_FAIL", event
    assert "401" in str(event.get("param")), event
    time.sleep(0.2)
    assert stack.bindings(carol.name) == []
