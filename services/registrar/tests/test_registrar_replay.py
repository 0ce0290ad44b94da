"""Replay detection in the AoR's record: sipmesh_registrar.replay and apply_bindings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipmesh_bus.records import BindingSet, SeenNonce, decode_binding_set, encode_record
from sipmesh_bus.schema import Envelope
from sipmesh_registrar import core
from sipmesh_registrar.core import Admitted, Policy, Registered, Replayed
from sipmesh_registrar.model import KEY_TTL_MARGIN
from sipmesh_registrar.replay import MAX_SEEN, counted, is_replay, remember, seen_nonce
from sipmsg import Request, Response
from sipmsg.digest import NonceManager

NOW = 1_700_000_000.0
NONCES = NonceManager(secret=b"k" * 32, ttl=300.0)
POLICY = Policy(domains=frozenset({"example.com"}))
PASSWORD = "s3cret"
AOR = "sip:alice@example.com"


def seen(tag: str, nc: int, until: float = NOW + 300) -> SeenNonce:
    return SeenNonce(nonce=tag, nc=nc, until=until)


def record(*entries: SeenNonce, floor: float = 0.0) -> BindingSet:
    return BindingSet(aor=AOR, seen_nonces=list(entries), nonce_floor=floor)


# --- the pure rules -----------------------------------------------------------------


FLOOR = NOW + 200
B_AT_FLOOR = record(seen("b", 1), floor=FLOOR)
REPLAY_CASES = [
    pytest.param(None, seen("a", 1), False, id="no-record"),
    pytest.param(record(), seen("a", 1), False, id="empty-record"),
    pytest.param(record(seen("a", 1)), seen("a", 1), True, id="same-count"),
    pytest.param(record(seen("a", 3)), seen("a", 2), True, id="lower-count"),
    pytest.param(record(seen("a", 3)), seen("a", 4), False, id="higher-count"),
    pytest.param(record(seen("a", 3)), seen("b", 1), False, id="other-nonce"),
    pytest.param(B_AT_FLOOR, seen("a", 1, FLOOR - 50), True, id="under-floor"),
    pytest.param(B_AT_FLOOR, seen("a", 1, FLOOR), True, id="at-floor"),
    pytest.param(B_AT_FLOOR, seen("a", 1, FLOOR + 1), False, id="above-floor"),
    pytest.param(record(seen("a", 1), floor=FLOOR), seen("a", 2, NOW), False, id="listed"),
]  # fmt: skip


@pytest.mark.parametrize(("stored", "token", "refused"), REPLAY_CASES)
def test_replay_is_replay(stored: BindingSet | None, token: SeenNonce, refused: bool) -> None:
    assert is_replay(stored, token) is refused


def test_replay_seen_nonce_hashes_the_nonce() -> None:
    one = seen_nonce(b"nonce-1", 1, until=NOW)
    assert (one.nc, one.until, len(one.nonce)) == (1, NOW, 16)
    assert seen_nonce(b"nonce-1", 2, until=NOW).nonce == one.nonce
    assert seen_nonce(b"nonce-2", 1, until=NOW).nonce != one.nonce
    assert "nonce-1" not in one.nonce


def test_replay_remember_replaces_the_count_and_prunes_expired() -> None:
    stored = record(seen("old", 1, until=NOW - 1), seen("a", 1), seen("b", 2, until=NOW + 10))
    entries, floor = remember(stored, seen("a", 2), now=NOW)
    assert {(e.nonce, e.nc) for e in entries} == {("b", 2), ("a", 2)}
    assert floor == 0.0


def test_replay_remember_without_a_count_carries_the_record_forward() -> None:
    stored = record(seen("a", 4), seen("gone", 1, until=NOW), floor=NOW + 5)
    assert remember(stored, None, now=NOW) == ([seen("a", 4)], NOW + 5)
    assert remember(None, None, now=NOW) == ([], 0.0)


def test_replay_remember_bounded_and_floor_covers_the_forgotten() -> None:
    stored: BindingSet | None = None
    tokens = [seen(f"n{i}", 1, until=NOW + 100 + i) for i in range(MAX_SEEN + 5)]
    for token in tokens:
        assert not is_replay(stored, token)
        entries, floor = remember(stored, token, now=NOW)
        stored = record(*entries, floor=floor)
    assert stored is not None
    assert len(stored.seen_nonces) == MAX_SEEN
    # The five oldest were forgotten, the floor is the last of them ...
    assert stored.nonce_floor == NOW + 104
    assert {e.nonce for e in stored.seen_nonces} == {f"n{i}" for i in range(5, MAX_SEEN + 5)}
    # ... so every one of them is still refused, as are the kept ones.
    assert all(is_replay(stored, t) for t in tokens)
    # A newer nonce is not.
    assert not is_replay(stored, seen("fresh", 1, until=NOW + 300))


_ENTRY = st.builds(
    seen,
    st.sampled_from(["a", "b", "c", "d"]),
    st.integers(1, 4),
    st.sampled_from([NOW - 1, NOW, NOW + 1, NOW + 100, NOW + 300]),
)


@given(
    entries=st.lists(_ENTRY, max_size=6),
    floor=st.sampled_from([0.0, NOW - 5, NOW + 100, NOW + 300]),
    stored_at_all=st.booleans(),
    new=_ENTRY,
    limit=st.integers(1, 4),
)
def test_replay_counted_is_is_replay_then_remember(
    entries: list[SeenNonce], floor: float, stored_at_all: bool, new: SeenNonce, limit: int
) -> None:
    stored = record(*entries, floor=floor) if stored_at_all else None
    expected = None if is_replay(stored, new) else remember(stored, new, now=NOW, limit=limit)
    assert counted(stored, new, now=NOW, limit=limit) == expected


def test_replay_counted_full_list_in_order_drops_the_oldest() -> None:
    # What refreshes leave: MAX_SEEN nonces in expiry order, then a newer one.
    stored = record(*(seen(f"n{i}", 1, until=NOW + 100 + i) for i in range(MAX_SEEN)))
    new = seen("fresh", 1, until=NOW + 300)
    result = counted(stored, new, now=NOW)
    assert result == remember(stored, new, now=NOW)
    assert result is not None
    entries, floor = result
    assert [e.nonce for e in entries] == [f"n{i}" for i in range(1, MAX_SEEN)] + ["fresh"]
    assert floor == NOW + 100
    # Out of order (a nonce expiring before the newest kept): still _trim's answer.
    early = seen("early", 1, until=NOW + 50)
    assert counted(stored, early, now=NOW) == remember(stored, early, now=NOW)


def test_replay_remember_drops_a_floor_in_the_past() -> None:
    stored = record(seen("a", 1), floor=NOW - 1)
    assert remember(stored, None, now=NOW)[1] == 0.0


def test_replay_record_round_trips_and_old_values_decode() -> None:
    stored = record(seen("a", 7), floor=NOW + 1.5)
    assert decode_binding_set(encode_record(stored)) == stored
    # A value written before these fields existed.
    old = decode_binding_set(encode_record(BindingSet(aor=AOR)))
    assert (old.seen_nonces, old.nonce_floor) == ([], 0.0)


# --- in apply_bindings ----------------------------------------------------------------


def _admitted(ua: Any, kit: Any, req_args: dict[str, Any], nc: int = 1) -> Admitted:
    subs = kit.table(kit.subscriber("alice", PASSWORD))
    first = core.admit(
        ua.register(), POLICY, subscribers=subs, nonces=NONCES, now=NOW, entropy=b"e" * 12
    )
    assert isinstance(first, core.Answer)
    auth = ua.answer(first.response, PASSWORD, nc=nc)
    req = ua.register(authorization=auth, **req_args)
    step = core.admit(req, POLICY, subscribers=subs, nonces=NONCES, now=NOW, entropy=b"f" * 12)
    assert isinstance(step, Admitted)
    return step


def _apply(step: Admitted, stored: BindingSet | None) -> Registered | core.Answer | Replayed:
    req: Request = step.request
    env = Envelope(
        edge_id="edge-1",
        transport="udp",
        source_host="203.0.113.5",
        source_port=40000,
        local_host="127.0.0.1",
        local_port=5060,
        received_at=NOW,
        data=bytes(req),
    )
    return core.apply_bindings(step, stored, env, POLICY, now=NOW)


def test_replay_apply_bindings_records_then_refuses(ua: Any, kit: Any) -> None:
    step = _admitted(ua, kit, {})
    first = _apply(step, None)
    assert isinstance(first, Registered)
    assert first.bindings is not None
    assert first.bindings.seen_nonces == [step.replay]
    again = _apply(step, first.bindings)
    assert again == Replayed(nc=1)


def test_replay_apply_bindings_refuses_a_lower_count(ua: Any, kit: Any) -> None:
    two = _admitted(ua, kit, {}, nc=2)
    stored = _apply(two, None)
    assert isinstance(stored, Registered)
    one = _admitted(ua, kit, {}, nc=1)
    assert _apply(one, stored.bindings) == Replayed(nc=1)
    three = _admitted(ua, kit, {}, nc=3)
    assert isinstance(_apply(three, stored.bindings), Registered)


def test_replay_query_refused_when_known_but_not_recorded(ua: Any, kit: Any) -> None:
    query = _admitted(ua, kit, {"contacts": []})
    answered = _apply(query, None)
    assert isinstance(answered, Registered)
    assert (answered.result, answered.changed) == ("query", False)
    registered = _apply(_admitted(ua, kit, {}), None)
    assert isinstance(registered, Registered)
    # The query used the same nonce-count as the REGISTER stored: refused.
    assert _apply(query, registered.bindings) == Replayed(nc=1)


def test_replay_unregister_keeps_the_record_until_the_nonces_expire(ua: Any, kit: Any) -> None:
    step = _admitted(ua, kit, {})
    registered = _apply(step, None)
    assert isinstance(registered, Registered)
    gone = _apply(_admitted(ua, kit, {"contacts": ["*"], "expires": 0}, nc=2), registered.bindings)
    assert isinstance(gone, Registered)
    assert gone.bindings is not None  # not a delete: the counts must survive
    assert gone.bindings.bindings == []
    assert [e.nc for e in gone.bindings.seen_nonces] == [2]
    assert gone.ttl == 300 + 5 + KEY_TTL_MARGIN  # the nonce's expiry + skew + margin
    response: Response = gone.response
    assert response.headers.get_all("contact") == []
    # The earlier REGISTER, replayed after the unregister, is refused.
    assert _apply(step, gone.bindings) == Replayed(nc=1)


def test_replay_retransmission_still_uses_up_the_count(ua: Any, kit: Any) -> None:
    step = _admitted(ua, kit, {"cseq": 5})
    stored = _apply(step, None)
    assert isinstance(stored, Registered)
    assert stored.bindings is not None
    # The same Call-ID and CSeq with the next count: bindings unchanged, written.
    again = _admitted(ua, kit, {"cseq": 5}, nc=2)
    decision = _apply(again, stored.bindings)
    assert isinstance(decision, Registered)
    assert (decision.result, decision.changed) == ("retransmission", True)
    assert decision.bindings is not None
    assert decision.bindings.bindings == stored.bindings.bindings
    assert [e.nc for e in decision.bindings.seen_nonces] == [2]


def test__alive_for_the_cache_sweep() -> None:
    from sipmesh_bus.records import Binding
    from sipmesh_registrar.app import _alive

    def bound(expires_at: float) -> BindingSet:
        b = Binding(
            contact="sip:a@h",
            expires_at=expires_at,
            call_id="c",
            cseq=1,
            registered_at=NOW - 10,
            source_host="h",
            source_port=5060,
            transport="udp",
            edge_id="e",
        )
        return BindingSet(aor=AOR, bindings=[b])

    assert not _alive(None, NOW)
    assert not _alive(bound(NOW), NOW)
    assert _alive(bound(NOW + 1), NOW)
    assert not _alive(record(seen("a", 1, until=NOW)), NOW)
    assert _alive(record(seen("a", 1, until=NOW + 1)), NOW)
    assert _alive(record(floor=NOW + 1), NOW)
