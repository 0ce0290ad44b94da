"""The router's derived branch, shared with the edge (ACKs it forwards for the router)."""

from __future__ import annotations

from sipmesh_bus.branches import BRANCH_PREFIX, branch_for


def test_branch_is_derived_from_the_request_and_marked_ours() -> None:
    one = branch_for(b"z9hG4bKx", b"c@h", 0, b"ACK")
    assert one.startswith(BRANCH_PREFIX)
    assert one.startswith(b"z9hG4bK")  # RFC 3261 §8.1.1.7 magic cookie
    assert len(one) == len(BRANCH_PREFIX) + 24
    assert branch_for(b"z9hG4bKx", b"c@h", 0, b"ACK") == one  # §16.11: retransmissions map alike
    others = {
        branch_for(b"z9hG4bKy", b"c@h", 0, b"ACK"),
        branch_for(b"z9hG4bKx", b"d@h", 0, b"ACK"),
        branch_for(b"z9hG4bKx", b"c@h", 1, b"ACK"),
        branch_for(b"z9hG4bKx", b"c@h", 0),
    }
    assert one not in others
    assert len(others) == 4
