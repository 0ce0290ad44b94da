# ruff: noqa: F811 - the fixtures imported from the fixture modules are parameters here
"""Calls anchored through real RTPEngine daemons: edge -> router -> media service -> rtpengine.

- two headless baresip phones register to sipmesh and call each other: both
  get CALL_ESTABLISHED and CALL_RTPESTAB (RTP received), rtpengine counts
  packets from both phones, and the hangup frees the session;
- SIPp UAC -> UAS: the SDP the UAS receives, and the one the UAC receives in
  the 200, point at rtpengine (127.0.0.1, a port of its range), not at the
  other party; the BYE frees the session;
- one of the two rtpengines is killed: new calls are anchored on the other.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.baresip import Baresip
from tests.e2e.harness import LOOPBACK, User
from tests.e2e.media_fixtures import PING_INTERVAL, MediaStack, Rtp, media_stack  # noqa: F401
from tests.e2e.router_fixtures import Uas, run_uac, uas  # noqa: F401

pytestmark = pytest.mark.e2e

_numbers = itertools.count(1)
_M_LINE = re.compile(r"^m=audio (\d+) ", re.M)
_C_LINE = re.compile(r"^c=IN IP4 (\S+)", re.M)


def _wait(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


def _all_calls(ms: MediaStack) -> set[str]:
    return {c for r in ms.rtp.values() if r.proc.alive() for c in r.calls()}


def _tag_packets(rtp: Rtp, call_id: str) -> dict[str, int]:
    """Packets rtpengine received from each side (tag) of a call."""
    tags = rtp.query(call_id).body.get(b"tags")
    assert isinstance(tags, dict), tags
    out: dict[str, int] = {}
    for tag, info in tags.items():
        total = 0
        medias = info.get(b"medias", []) if isinstance(info, dict) else []
        for m in medias if isinstance(medias, list) else []:
            streams = m.get(b"streams", []) if isinstance(m, dict) else []
            for s in streams if isinstance(streams, list) else []:
                stats = s.get(b"stats", {}) if isinstance(s, dict) else {}
                packets = stats.get(b"packets", 0) if isinstance(stats, dict) else 0
                total += packets if isinstance(packets, int) else 0
        out[tag.decode()] = total
    return out


# -- two softphones ---------------------------------------------------------------------------


@pytest.fixture
def phones(baresip_binary: str, tmp_path: Path) -> Iterator[Callable[[str], Baresip]]:
    started: list[Baresip] = []

    def start(account: str) -> Baresip:
        ua = Baresip(baresip_binary, tmp_path, account=account)
        started.append(ua)
        ua.start()
        return ua

    yield start
    for ua in reversed(started):
        ua.stop()


def _phone_user(ms: MediaStack) -> User:
    user = User("phone")
    ms.stack.cli("user", "add", f"{user.name}@{ms.stack.domain}", "--password", user.password)
    return user


def _account(ms: MediaStack, user: User) -> str:
    st = ms.stack
    return (
        f"<sip:{user.name}@{st.domain}>;auth_pass={user.password}"
        f';outbound="sip:{LOOPBACK}:{st.sip_port}";regint=600;answermode=auto'
    )


def test_media_two_softphones_talk_through_rtpengine(
    media_stack: MediaStack, phones: Callable[[str], Baresip]
) -> None:
    ms = media_stack
    alice_user, bob_user = _phone_user(ms), _phone_user(ms)
    alice, bob = phones(_account(ms, alice_user)), phones(_account(ms, bob_user))
    for ua in (alice, bob):
        assert ua.wait_event("REGISTER_OK", "REGISTER_FAIL")["type"] == "REGISTER_OK"
    before = _all_calls(ms)

    dialled = alice.command("dial", f"sip:{bob_user.name}@{ms.stack.domain}")
    assert dialled.get("ok"), dialled

    for ua in (alice, bob):
        event = ua.wait_event("CALL_ESTABLISHED", "CALL_CLOSED", timeout=15)
        assert event["type"] == "CALL_ESTABLISHED", f"{event}\n{ms.logs()}"
    for ua in (alice, bob):
        ua.wait_event("CALL_RTPESTAB", timeout=10)  # RTP received from the other side
    [call_id] = _all_calls(ms) - before
    holder = ms.holder(call_id)
    assert holder is not None
    _wait(
        lambda: len(p := _tag_packets(holder, call_id)) == 2 and min(p.values()) > 0,
        f"rtpengine relays RTP of both phones ({_tag_packets(holder, call_id)})",
    )
    events = ms.call_events(f"{bob_user.name}@")
    answered = [e for e in events if e.kind == "answered"]
    assert [e.media_instance for e in answered] == [holder.name]

    alice.command("hangup")
    for ua in (alice, bob):
        ua.wait_event("CALL_CLOSED", timeout=10)
    _wait(lambda: call_id not in holder.calls(), "the BYE freed the rtpengine session")


# -- SIPp ---------------------------------------------------------------------------------------


def _sdp_port_and_host(text: str) -> tuple[int, str]:
    port = _M_LINE.search(text)
    host = _C_LINE.search(text)
    assert port is not None, text
    assert host is not None, text
    return int(port.group(1)), host.group(1)


def _received_invite_sdps(phone: Uas) -> list[str]:
    """The bodies of the INVITEs the UAS received (its -trace_msg log)."""
    log = (phone.dir / "messages.log").read_text(errors="replace")
    blocks = re.split(r"-{5,}.*\n", log)
    return [b for b in blocks if "received" in b and "INVITE sip:" in b and "m=audio" in b] or [
        b for b in log.split("INVITE sip:")[1:] if "m=audio" in b
    ]


def _received_ok_sdp(messages: str) -> str:
    """The SDP of the 200 (OK) to the INVITE the UAC received."""
    for part in messages.split("SIP/2.0 200")[1:]:
        head = part.split("\n\n", 1)[0]
        if "INVITE" in head and "m=audio" in part:
            return part
    raise AssertionError(f"no 200 with SDP in the UAC's trace:\n{messages[-3000:]}")


def _call_ids(phone: Uas) -> list[str]:
    log = (phone.dir / "messages.log").read_text(errors="replace")
    return sorted(set(re.findall(r"^Call-ID: *(\S+)", log, re.M | re.I)))


def test_media_sipp_call_sdp_points_at_rtpengine_and_bye_frees_it(
    media_stack: MediaStack, uas: Callable[..., Uas], tmp_path: Path
) -> None:
    ms = media_stack
    phone = uas()
    user = f"anchored{next(_numbers)}"
    ms.bind(user, phone.port)

    result = run_uac(ms, tmp_path, user)

    assert result.successful == 1, f"{result.describe()}\n{phone.messages()}\n{ms.logs()}"
    [sdp] = _received_invite_sdps(phone)
    port, host = _sdp_port_and_host(sdp)
    assert host == LOOPBACK
    assert any(r.owns_port(port) for r in ms.rtp.values()), (port, sdp)
    uac_port, uac_host = _sdp_port_and_host(_received_ok_sdp(result.messages))
    assert uac_host == LOOPBACK
    assert any(r.owns_port(uac_port) for r in ms.rtp.values()), (uac_port, result.messages)
    assert uac_port != port  # one rtpengine port per side
    [call_id] = _call_ids(phone)
    assert call_id not in _all_calls(ms)  # the BYE deleted it
    kinds = [(e.kind, e.media_instance is not None) for e in ms.call_events(f"{user}@")]
    assert kinds[-2:] == [("answered", True), ("ended", True)], kinds


def test_media_new_calls_avoid_a_killed_rtpengine(
    media_stack: MediaStack, uas: Callable[..., Uas], tmp_path: Path
) -> None:
    ms = media_stack
    phone = uas()
    user = f"survivor{next(_numbers)}"
    ms.bind(user, phone.port)
    dead, alive = ms.rtp["rtp-a"], ms.rtp["rtp-b"]
    dead.proc.kill()
    time.sleep(PING_INTERVAL * 4)  # the media service marks it down after one failed ping

    result = run_uac(ms, tmp_path, user, calls=4, rate=10)

    assert result.successful == 4, f"{result.describe()}\n{ms.logs()}"
    sdps = _received_invite_sdps(phone)
    assert len(sdps) == 4
    ports = [_sdp_port_and_host(s)[0] for s in sdps]
    assert all(alive.owns_port(p) for p in ports), (ports, alive.port_range)
    answered = [e for e in ms.call_events(f"{user}@") if e.kind == "answered"]
    assert [e.media_instance for e in answered] == ["rtp-b"] * 4
