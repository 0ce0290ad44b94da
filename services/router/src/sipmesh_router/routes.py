"""The routing data as the core asks about it: trusted peers, sets, carriers.

:mod:`sipmesh_router.core` does not read the ``routing`` KV records itself: it
asks a :class:`RoutingView`, which answers in the few value types below. The
production view, :class:`SnapshotView`, wraps a ``sipmesh_bus.routing``
``RoutingSnapshot`` and calls the dispatcher and LCR helpers
(:func:`sipmesh_router.dispatcher.select_destinations`,
:func:`sipmesh_router.lcr.lookup`); tests pass a small fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sipmesh_bus.schema import Transport

__all__ = ["EMPTY_VIEW", "EmptyView", "Hop", "Peer", "RoutingView"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """A trusted source (a PBX, a carrier), recognised by its address (ACL, CIDR)."""

    name: str
    hide_topology: bool = False
    #: RFC 3261 topology hiding towards and from this peer (see docs/router.md).


@dataclass(frozen=True, slots=True, kw_only=True)
class Hop:
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
