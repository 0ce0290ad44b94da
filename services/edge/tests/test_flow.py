"""sipmesh_edge.flow: a flow packed as a tuple for what lingers, and unpacked again."""

from __future__ import annotations

import gc

from sipmesh_edge.flow import Flow, pack, unpack


class _Conn:
    id = "c1"
    is_open = True

    def send(self, data: bytes) -> None:
        raise AssertionError("not sent")

    def close(self) -> None:
        pass


def test_a_plain_flow_packs_to_an_untracked_tuple_and_back() -> None:
    flow = Flow(transport="udp", host="198.51.100.7", port=5062, local=("192.0.2.10", 5060))
    packed = pack(flow)
    assert packed == ("udp", "198.51.100.7", 5062, ("192.0.2.10", 5060))
    # A tuple of strings and numbers is untracked once a collection saw it;
    # this one holds a tuple, which a collection may see only after it.
    gc.collect()
    gc.collect()
    assert not gc.is_tracked(packed)
    again = unpack(packed)
    assert again is not flow
    assert repr(again) == repr(flow)
    assert not again.reliable


def test_a_flow_with_a_connection_owner_or_connection_id_does_not_pack() -> None:
    local = ("192.0.2.10", 5060)
    assert pack(Flow(transport="tcp", host="h", port=1, local=local, connection=_Conn())) is None  # type: ignore[arg-type]
    assert pack(Flow(transport="udp", host="h", port=1, local=local, owner="e2")) is None
    assert pack(Flow(transport="tcp", host="h", port=1, local=local, connection_id="c")) is None
