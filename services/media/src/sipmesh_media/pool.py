"""The pool of RTPEngine instances: consistent hashing of Call-IDs, and health (pure).

Placement: each instance owns ``weight * vnodes`` points on a hash ring; a
Call-ID belongs to the first point clockwise from its own hash. Offer, answer
and delete of one call therefore reach the same instance from any media
replica, without shared state, and adding or removing an instance moves only
the calls on its arcs (about 1/N of them), not all of them.

Health: :class:`Health` counts consecutive ping results; an instance goes down
after ``down_after`` failures in a row and up again after ``up_after``
successes. A *new* call walks the ring past dead instances to the next healthy
one; an *existing* call stays where it is (RTPEngine holds its session there),
and when that instance is dead the caller reports it instead of moving the call.
Weight 0 drains an instance: it gets no new calls but keeps serving its own.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_VNODES", "Health", "HealthPolicy", "Instance", "Placement", "Pool", "Ring"]

DEFAULT_VNODES: Final = 64
#: Ring points per unit of weight: enough for an even spread with a few instances.


def _hash(key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """One RTPEngine instance."""

    name: str
    host: str
    port: int
    #: The ng control socket.
    weight: int = 1
    #: Relative share of new calls; 0 drains the instance.


class Ring:
    """A consistent-hash ring over instance names with weighted virtual nodes."""

    def __init__(self, weights: Sequence[tuple[str, int]], *, vnodes: int = DEFAULT_VNODES) -> None:
        """Build the ring.

        Args:
            weights: ``(name, weight)`` pairs; names must be unique, weights >= 0.
            vnodes: points per unit of weight.

        Raises:
            ValueError: a duplicate name or a negative weight.
        """
        names = [name for name, _ in weights]
        if len(set(names)) != len(names):
            raise ValueError("instance names must be unique")
        points: list[tuple[int, str]] = []
        for name, weight in weights:
            if weight < 0:
                raise ValueError(f"negative weight for {name!r}")
            points.extend((_hash(f"{name}#{i}".encode()), name) for i in range(weight * vnodes))
        points.sort()
        self._keys = [h for h, _ in points]
        self._names = [n for _, n in points]
        self.names: tuple[str, ...] = tuple(dict.fromkeys(self._names))
        #: The instances with at least one point, in ring order of first appearance.

    def walk(self, key: bytes) -> Iterator[str]:
        """Distinct instance names clockwise from ``key``'s hash: owner first."""
        if not self._keys:
            return
        start = bisect.bisect_right(self._keys, _hash(key))
        seen: set[str] = set()
        count = len(self._keys)
        for i in range(count):
            name = self._names[(start + i) % count]
            if name not in seen:
                seen.add(name)
                yield name
                if len(seen) == len(self.names):
                    return

    def owner(self, key: bytes) -> str | None:
        """The instance owning ``key`` regardless of health, or None for an empty ring."""
        return next(self.walk(key), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthPolicy:
    """When an instance changes state."""

    down_after: int = 3
    #: Consecutive failed pings before it is marked down.
    up_after: int = 2
    #: Consecutive good pings before a down instance is marked up again.


class Health:
    """The up/down state of one instance, from ping results."""

    __slots__ = ("_policy", "_streak", "up")

    def __init__(self, policy: HealthPolicy, *, up: bool = True) -> None:
        self._policy = policy
        self._streak = 0
        self.up = up
        #: Current state; instances start up so a fresh service serves at once.

    def record(self, ok: bool) -> bool:
        """Count one ping result.

        Returns:
            True when this result changed the state.
        """
        if ok == self.up:
            self._streak = 0
            return False
        self._streak += 1
        threshold = self._policy.up_after if ok else self._policy.down_after
        if self._streak < threshold:
            return False
        self.up = ok
        self._streak = 0
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """Where a call's media goes."""

    instance: Instance | None
    #: None: no instance can take it.
    up: bool = True
    #: False when the call's instance is marked down (existing calls only).


class Pool:
    """Instances, their ring and their health."""

    def __init__(
        self,
        instances: Sequence[Instance],
        *,
        policy: HealthPolicy = HealthPolicy(),
        vnodes: int = DEFAULT_VNODES,
    ) -> None:
        """Build the pool; every instance starts up.

        Raises:
            ValueError: duplicate names or a negative weight.
        """
        self.instances: dict[str, Instance] = {i.name: i for i in instances}
        self.ring = Ring([(i.name, i.weight) for i in instances], vnodes=vnodes)
        self.health = {i.name: Health(policy) for i in instances}

    def is_up(self, name: str) -> bool:
        """True when ``name`` is a known instance marked up."""
        health = self.health.get(name)
        return health is not None and health.up

    def healthy(self) -> list[str]:
        """The names of the instances marked up."""
        return [name for name, h in self.health.items() if h.up]

    def record(self, name: str, ok: bool) -> bool:
        """Count a ping result for ``name``; True when its state changed."""
        return self.health[name].record(ok)

    def place_new(self, call_id: str) -> Placement:
        """The instance for a new call: its owner, or the next healthy one clockwise."""
        for name in self.ring.walk(call_id.encode()):
            if self.health[name].up:
                return Placement(instance=self.instances[name])
        return Placement(instance=None, up=False)

    def locate(self, call_id: str, known: str | None = None) -> Placement:
        """The instance holding an existing call.

        Args:
            call_id: the Call-ID.
            known: the instance the offer went to, when the caller kept it.

        Returns:
            ``known`` when it is a pool member; otherwise where a new call would
            go now (the owner unless it is down). ``up`` tells whether it is up.
        """
        if known is not None and known in self.instances:
            return Placement(instance=self.instances[known], up=self.is_up(known))
        return self.place_new(call_id)
