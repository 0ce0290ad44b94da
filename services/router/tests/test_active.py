"""Active calls per destination from the dialogs watch (least_calls input)."""

from __future__ import annotations

from sipmesh_router.active import ActiveCalls
from sipmesh_router.context import DialogRecord, encode_dialog


def record(dest: str, *, answered_at: float = 100.0) -> bytes:
    return encode_dialog(
        DialogRecord(
            call_id="c",
            caller_tag="a",
            callee_tag="b",
            caller="alice@example.com",
            callee="sip:2001@example.com",
            source="198.51.100.7:5060",
            destination="10.0.0.50:5080",
            answered_at=answered_at,
            destination_key=dest,
        )
    )


def test_active_calls_counts_puts_and_deletes() -> None:
    calls = ActiveCalls()
    assert calls.apply("d1", record("udp.a.5060"))
    assert calls.apply("d2", record("udp.a.5060"))
    assert calls.apply("d3", record("udp.b.5060"))
    assert dict(calls.counts) == {"udp.a.5060": 2, "udp.b.5060": 1}
    assert calls.apply("d1", None)
    assert calls.apply("d3", b"")
    assert dict(calls.counts) == {"udp.a.5060": 1}
    assert len(calls) == 1


def test_active_calls_put_again_moves_not_doubles() -> None:
    calls = ActiveCalls()
    calls.apply("d1", record("udp.a.5060"))
    calls.apply("d1", record("udp.a.5060"))
    assert dict(calls.counts) == {"udp.a.5060": 1}
    calls.apply("d1", record("udp.b.5060"))
    assert dict(calls.counts) == {"udp.b.5060": 1}


def test_active_calls_counts_records_without_destination_only_in_len() -> None:
    calls = ActiveCalls()
    calls.apply("d1", record("udp.a.5060"))
    assert calls.apply("d2", record(""))  # a call to a registered phone
    assert dict(calls.counts) == {"udp.a.5060": 1}
    assert len(calls) == 2
    assert not calls.apply("d1", b"\xc1garbage")
    assert dict(calls.counts) == {}
    assert len(calls) == 1
    assert calls.apply("d2", None)
    assert calls.prune(older_than=1e12) == 0
    assert len(calls) == 0


def test_active_calls_prune_forgets_expired_dialogs() -> None:
    calls = ActiveCalls()
    calls.apply("old", record("udp.a.5060", answered_at=10.0))
    calls.apply("new", record("udp.a.5060", answered_at=500.0))
    assert calls.prune(older_than=100.0) == 1
    assert dict(calls.counts) == {"udp.a.5060": 1}
    calls.apply("old", None)  # its delete marker after all: nothing to undo
    assert dict(calls.counts) == {"udp.a.5060": 1}
