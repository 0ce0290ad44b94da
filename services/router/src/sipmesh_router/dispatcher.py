"""Dispatcher sets: the order in which a call tries the destinations of a pool. Pure.

What Kamailio's dispatcher module does for an Asterisk pool, as one function:
:func:`select_destinations` returns every usable destination of a set, best
first. The first is where the call goes; the rest, in order, are the failover
targets the core sends it to on 408, 5xx or a transport error (they travel in
the transaction's context, so no replica keeps them).

Algorithms (``DispatcherSet.algorithm``):

``round_robin``
    Rotates by ``rr_counter``. A stateless router cannot share a counter across
    replicas, so each replica passes its own (an ``itertools.count()`` in the
    app): over N replicas the spread is still even, but two consecutive calls
    may land on the same destination when they reach different replicas.
``weighted``
    Weighted random order without replacement (Efraimidis-Spirakis: each
    destination draws ``u ** (1 / weight)``, highest first). The random source
    is injected; without one it is seeded from the Call-ID, so a retransmitted
    INVITE reaching another replica picks the same destination.
``hash_callid`` / ``hash_from_user``
    Weighted rendezvous hashing (highest random weight) of the Call-ID or the
    From user: the same key always gets the same order, and taking one
    destination out only moves the calls that were on it. An empty From user
    hashes the Call-ID instead.
``least_calls``
    Fewest active calls per unit of weight first (counts from the dialogs,
    keyed by ``Destination.key``), then priority, then set order.
``priority``
    Lower ``priority`` first, set order among equals.

In every algorithm a destination that a fresh health record marks down
(:func:`sipmesh_bus.routing.is_down`) is left out, and weight-0 destinations
(draining: no new calls) come after all the others, as a last resort. When every
destination is down the list is empty: the core answers 503 rather than send
calls into a dead pool.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Mapping
from typing import Final

from sipmesh_bus.routing import Destination, DispatcherSet, Health, RoutingSnapshot, is_down

__all__ = ["rendezvous_score", "select_destinations"]

_TWO_64: Final = float(2**64)


def select_destinations(
    ds: DispatcherSet,
    snapshot: RoutingSnapshot | None,
    *,
    call_id: str,
    from_user: str,
    now: float,
    health: Mapping[str, Health],
    active_calls: Mapping[str, int],
    rr_counter: int,
    rand: Callable[[], float] | None = None,
) -> list[Destination]:
    """The destinations of ``ds`` to try, in order (first: primary; then failover).

    Args:
        ds: the dispatcher set (from ``snapshot.set_for(...)``).
        snapshot: the routing snapshot; unused by today's algorithms, kept so
            that set-level options can be added without changing callers.
        call_id: the Call-ID (``hash_callid``, and the default seed of ``weighted``).
        from_user: the From URI's user part (``hash_from_user``).
        now: wall-clock seconds, to tell fresh health records from stale ones.
        health: ``health`` bucket records by key (``HealthSnapshot.records``).
        active_calls: active calls by ``Destination.key`` (``least_calls``).
        rr_counter: this replica's call counter (``round_robin``).
        rand: uniform floats in [0, 1) for ``weighted``; None seeds one from
            ``call_id``.

    Returns:
        The destinations that are not down, best first; empty when none is up.
    """
    up = [d for d in ds.destinations if not is_down(health, d.key, now)]
    if not up:
        return []
    match ds.algorithm:
        case "round_robin":
            start = rr_counter % len(up)
            ordered = up[start:] + up[:start]
        case "weighted":
            ordered = _weighted(up, rand or random.Random(_digest(call_id)).random)
        case "hash_callid":
            ordered = _rendezvous(up, call_id)
        case "hash_from_user":
            ordered = _rendezvous(up, from_user or call_id)
        case "least_calls":
            ordered = _least_calls(up, active_calls)
        case "priority":
            ordered = sorted(up, key=lambda d: d.priority)
    # Stable: weight-0 (draining) destinations last, each group in its order.
    return sorted(ordered, key=lambda d: d.weight == 0)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def rendezvous_score(key: str, dest: Destination) -> float:
    """Weighted rendezvous score of ``dest`` for ``key`` (higher is preferred).

    ``-weight / ln(u)`` with ``u`` in (0, 1) a hash of key and destination: the
    destination with the highest score wins a share of keys proportional to
    its weight (Schindelhauer and Schomaker, "Weighted distributed hash tables").
    """
    if dest.weight == 0:
        return 0.0
    u = (_digest(f"{key}\x00{dest.uri}") + 0.5) / _TWO_64
    return -dest.weight / math.log(u)


def _rendezvous(dests: list[Destination], key: str) -> list[Destination]:
    return sorted(dests, key=lambda d: rendezvous_score(key, d), reverse=True)


def _weighted(dests: list[Destination], rand: Callable[[], float]) -> list[Destination]:
    keyed = []
    for index, dest in enumerate(dests):
        draw = rand()
        key = draw ** (1.0 / dest.weight) if dest.weight else -1.0
        keyed.append((key, -index, dest))
    keyed.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [dest for _, _, dest in keyed]


def _least_calls(dests: list[Destination], active: Mapping[str, int]) -> list[Destination]:
    def load(dest: Destination) -> float:
        calls = active.get(dest.key, 0)
        return calls / dest.weight if dest.weight else math.inf

    return sorted(dests, key=lambda d: (load(d), d.priority))
