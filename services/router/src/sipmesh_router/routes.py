"""The routing data as the core asks about it: trusted peers, sets, carriers.

:mod:`sipmesh_router.core` does not read the ``routing`` KV records itself: it
asks a :class:`RoutingView`, which answers in the few value types below. The
production view, :class:`SnapshotView`, wraps a ``sipmesh_bus.routing``
``RoutingSnapshot`` and calls the dispatcher and LCR helpers
(:func:`sipmesh_router.dispatcher.select_destinations`,
:func:`sipmesh_router.lcr.lookup`); tests pass a small fake.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from msgspec import Struct

from sipmesh_bus.routing import Health, RoutingSnapshot
from sipmesh_bus.schema import Transport

from .dispatcher import select_destinations
from .lcr import lookup, normalize_e164

__all__ = ["EMPTY_VIEW", "EmptyView", "Hop", "Peer", "RoutingView", "SnapshotView"]

_PEER_CACHE_SIZE: Final = 4096
#: Source addresses remembered by a ``peers`` cache before it starts over.


class Peer(Struct, frozen=True, kw_only=True):
    """A trusted source (a PBX, a carrier), recognised by its address (ACL, CIDR)."""

    name: str
    hide_topology: bool = False
    #: RFC 3261 topology hiding towards and from this peer (see docs/router.md).


class Hop(Struct, frozen=True, kw_only=True):
    """One place an outbound call may go, with what a CDR needs about it."""

    host: str
    port: int
    transport: Transport = "udp"
    uri: str = ""
    #: The Request-URI for this hop; empty keeps the request's.
    dispatcher_set: str | None = None
    gateway: str | None = None
    carrier: str | None = None
    rate_prefix: str | None = None
    rate_per_minute: float | None = None
    currency: str | None = None
    billing_first: int | None = None
    billing_step: int | None = None
    hide_topology: bool = False


class RoutingView(Protocol):
    """What the core needs to know about routing data (one consistent snapshot)."""

    def trusted_peer(self, host: str) -> Peer | None:
        """The trusted peer whose ACL covers the source address ``host``, or None."""
        ...

    def dispatcher_set_for(self, user: str, domain: str) -> str | None:
        """The dispatcher set a number range or domain maps to, or None."""
        ...

    def set_destinations(
        self, set_id: str, *, call_id: str, from_user: str, now: float
    ) -> list[Hop]:
        """The set's destinations in failover order (the set's algorithm applied)."""
        ...

    def carriers(self, number: str) -> list[Hop]:
        """The LCR gateways for ``number``, cheapest (then priority/weight) first."""
        ...


class EmptyView:
    """No routing data: no peers, sets or carriers (before the first KV load)."""

    def trusted_peer(self, host: str) -> Peer | None:
        return None

    def dispatcher_set_for(self, user: str, domain: str) -> str | None:
        return None

    def set_destinations(
        self, set_id: str, *, call_id: str, from_user: str, now: float
    ) -> list[Hop]:
        return []

    def carriers(self, number: str) -> list[Hop]:
        return []


EMPTY_VIEW = EmptyView()


class SnapshotView:
    """The production :class:`RoutingView` over the watched ``routing`` and ``health`` data.

    Args:
        snapshot: the live routing snapshot.
        health: health records by key (``HealthSnapshot.records``).
        now: wall-clock seconds (stale health records do not count).
        rr_counter: this replica's call counter, for ``round_robin`` sets.
        active_calls: active calls per destination key, for ``least_calls``
            (not tracked yet: empty, so least_calls keeps the set's order).
        peers: source address -> trusted peer, filled as addresses are looked
            up; the caller keeps it across views of the same ``snapshot`` and
            empties it when the snapshot changes.
    """

    def __init__(
        self,
        snapshot: RoutingSnapshot,
        health: Mapping[str, Health],
        *,
        now: float,
        rr_counter: int = 0,
        active_calls: Mapping[str, int] | None = None,
        peers: dict[str, Peer | None] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._health = health
        self._now = now
        self._rr = rr_counter
        self._active = active_calls or {}
        self._peers = {} if peers is None else peers

    def trusted_peer(self, host: str) -> Peer | None:
        # Memoised per source address: the CIDR scan parses the address each time.
        try:
            return self._peers[host]
        except KeyError:
            pass
        found = self._snapshot.peer_for(host)
        peer = None if found is None else Peer(name=found.name, hide_topology=found.topology_hiding)
        if len(self._peers) >= _PEER_CACHE_SIZE:
            self._peers.clear()
        self._peers[host] = peer
        return peer

    def _hides(self, host: str) -> bool:
        peer = self.trusted_peer(host)
        return peer is not None and peer.hide_topology

    def dispatcher_set_for(self, user: str, domain: str) -> str | None:
        found = self._snapshot.set_for(user or None, domain or None)
        return None if found is None else found.id

    def set_destinations(
        self, set_id: str, *, call_id: str, from_user: str, now: float
    ) -> list[Hop]:
        ds = self._snapshot.sets.get(set_id)
        if ds is None:
            return []
        chosen = select_destinations(
            ds,
            self._snapshot,
            call_id=call_id,
            from_user=from_user,
            now=now,
            health=self._health,
            active_calls=self._active,
            rr_counter=self._rr,
        )
        return [
            Hop(
                host=d.host,
                port=d.port,
                transport=d.transport,
                uri=d.uri,
                dispatcher_set=set_id,
                hide_topology=self._hides(d.host),
            )
            for d in chosen
        ]

    def carriers(self, number: str) -> list[Hop]:
        e164 = normalize_e164(number, self._snapshot.numbers)
        if e164 is None:
            return []
        hops = []
        for choice in lookup(e164, self._snapshot, health=self._health, now=self._now):
            gw = choice.gateway
            hops.append(
                Hop(
                    host=gw.host,
                    port=gw.port,
                    transport=gw.transport,
                    uri=choice.request_uri(),
                    gateway=gw.id,
                    carrier=choice.carrier,
                    rate_prefix=choice.prefix,
                    rate_per_minute=choice.rate_per_minute,
                    currency=choice.currency or None,
                    billing_first=choice.increments[0],
                    billing_step=choice.increments[1],
                    hide_topology=self._hides(gw.host),
                )
            )
        return hops
