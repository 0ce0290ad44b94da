"""The Guard's metrics exist from start-up: every known reason at 0, before any drop or ban."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from sipmesh_edge.guard import BAN_REASONS, DROP_REASONS, Guard
from sipmesh_edge.protection import ProtectionConfig, Reason


def test_known_reasons_exist_at_zero_before_any_event() -> None:
    registry = CollectorRegistry()
    Guard(ProtectionConfig(), registry, edge_id="e1")
    dropped = {
        r.value: registry.get_sample_value(
            "sipmesh_edge_protection_dropped_total", {"reason": r.value}
        )
        for r in Reason
    }
    issued = {
        r.value: registry.get_sample_value("sipmesh_edge_bans_issued_total", {"reason": r.value})
        for r in Reason
    }
    # None means no series: only the reasons each counter can count are created.
    assert dropped == {r.value: (0.0 if r in DROP_REASONS else None) for r in Reason}
    assert issued == {r.value: (0.0 if r in BAN_REASONS else None) for r in Reason}
    assert registry.get_sample_value("sipmesh_edge_bans_active") == 0.0
    assert registry.get_sample_value("sipmesh_edge_ban_publish_errors_total") == 0.0


def test_every_reason_the_protection_returns_is_created() -> None:
    # A drop reason missing from DROP_REASONS would have no series until its first
    # increment; the manual ban is the operator's and never a drop reason.
    assert set(DROP_REASONS) | set(BAN_REASONS) | {Reason.MANUAL} == set(Reason)
    assert Reason.AUTH_FAILURES not in DROP_REASONS  # dropped afterwards as "banned"
