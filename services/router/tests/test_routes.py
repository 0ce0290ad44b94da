"""SnapshotView's memoised trusted-peer lookup, and the router emptying it on routing changes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from sipmesh_bus import routing
from sipmesh_bus.routing import RoutingSnapshot
from sipmesh_router.app import Router
from sipmesh_router.config import RouterConfig, RouterSettings
from sipmesh_router.routes import Peer, SnapshotView


def _peer_value(name: str, cidr: str, *, hide: bool = False) -> bytes:
    return routing.encode_record(routing.Peer(name=name, cidrs=[cidr], topology_hiding=hide))


def test_trusted_peer_is_looked_up_once_per_address() -> None:
    snapshot = RoutingSnapshot()
    snapshot.apply(routing.peer_key("pbx"), _peer_value("pbx", "192.0.2.0/24", hide=True))
    cache: dict[str, Peer | None] = {}
    view = SnapshotView(snapshot, {}, now=0.0, peers=cache)
    assert view.trusted_peer("192.0.2.7") == Peer(name="pbx", hide_topology=True)
    assert view.trusted_peer("198.51.100.1") is None
    assert cache == {"192.0.2.7": Peer(name="pbx", hide_topology=True), "198.51.100.1": None}
    # The cache answers from now on, even for a view of the same snapshot.
    cache["192.0.2.7"] = None
    assert SnapshotView(snapshot, {}, now=0.0, peers=cache).trusted_peer("192.0.2.7") is None


def test_router_forgets_trusted_peers_when_routing_changes() -> None:
    js: Any = SimpleNamespace(_nc=object())
    config = RouterConfig(router=RouterSettings(domain="example.com", probe=False))
    router = Router(config, js, secret=b"s" * 32, registry=CollectorRegistry())
    router._fold_routing("", None, True)  # the initial replay is over
    view = router._inputs(now=1.0).routing
    assert view.trusted_peer("192.0.2.7") is None
    router._fold_routing(routing.peer_key("pbx"), _peer_value("pbx", "192.0.2.0/24"), False)
    view = router._inputs(now=2.0).routing
    assert view.trusted_peer("192.0.2.7") == Peer(name="pbx", hide_topology=False)
    router._fold_routing(routing.peer_key("pbx"), None, False)
    assert router._inputs(now=3.0).routing.trusted_peer("192.0.2.7") is None
