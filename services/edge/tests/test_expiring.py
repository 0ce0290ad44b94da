"""sipmesh_edge.wheel.Expiring: what lingers until its end, dropped at the tick or when asked."""

from __future__ import annotations

from sipmesh_edge.wheel import Expiring


def test_an_entry_lives_until_its_end_and_goes_at_the_tick_or_when_asked() -> None:
    table: Expiring[bytes, tuple[bytes, int]] = Expiring()
    table.put(b"a", 10.0, (b"x", 1))
    table.put(b"b", 11.0, (b"y", 2))
    assert len(table) == 2
    assert table.get(b"a", 9.9) == (b"x", 1)
    assert table.get(b"c", 0.0) is None
    table.expire(10.0)  # a's end: gone; b stays
    assert len(table) == 1
    assert table.get(b"a", 9.9) is None
    assert table.get(b"b", 11.0) is None  # ended when asked, before any tick
    assert len(table) == 0


def test_a_replaced_entry_is_kept_until_its_own_end() -> None:
    table: Expiring[bytes, int] = Expiring()
    table.put(b"k", 5.0, 1)
    table.put(b"k", 8.0, 2)  # a new transaction of the same key
    table.expire(5.0)  # the first entry's end: not the second's
    assert table.get(b"k", 7.9) == 2
    table.expire(8.0)
    assert len(table) == 0
