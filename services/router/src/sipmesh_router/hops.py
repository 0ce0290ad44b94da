"""Which of the edge's addresses the router writes for a hop (Via, Record-Route)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sipmesh_bus.schema import Target
from sipmsg import SipUri, TelUri

from .config import Policy

__all__ = ["listener_for", "target_of_uri", "via_transport"]

_TRANSPORTS: Final = frozenset({"udp", "tcp", "tls", "ws", "wss"})


def listener_for(
    transport: str,
    *,
    inbound: str,
    me: tuple[str, int],
    listeners: Mapping[str, str],
    edge_id: str,
    policy: Policy,
) -> tuple[str, int]:
    """The receiving edge's address for sending over ``transport`` (Via, Record-Route).

    The socket the request came in on (``me``, over ``inbound``) serves its own
    transport; another transport's listener comes from the envelope
    (``Envelope.listeners``: transport -> advertised ``host:port``, empty from
    an edge that does not fill it), else from the ``router.listeners``
    setting, else the inbound address is the best guess (right when the edge
    listens on one port for every transport).
    """
    if transport == inbound:
        return me
    found = _host_port(listeners.get(transport))
    if found is not None:
        return found
    configured = policy.listener(edge_id, transport)
    if configured is not None:
        return configured
    return me


def _host_port(value: object) -> tuple[str, int] | None:
    if not isinstance(value, str):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def target_of_uri(uri: SipUri | TelUri | object, request_uri: str) -> Target | None:
    """Where a request for ``uri`` goes by the URI alone (§16.6 step 7 without DNS).

    Returns:
        The Target, or None for a URI that is not a SIP URI.
    """
    if not isinstance(uri, SipUri):
        return None
    host = (uri.maddr or uri.host).decode("latin-1").strip("[]")
    transport = (uri.transport or b"").decode("latin-1").lower()
    if transport not in _TRANSPORTS:
        transport = "tls" if uri.scheme == b"sips" else "udp"
    port = uri.port or (5061 if transport in ("tls", "wss") else 5060)
    return Target(uri=request_uri, host=host, port=port, transport=transport)  # type: ignore[arg-type]


def via_transport(targets: list[Target]) -> str:
    """The transport of our Via (and Record-Route facing the targets) for ``targets``.

    The edge sends over a stream only when the target names a live connection,
    or when every target is reached over a stream.
    """
    if targets and all(t.connection_id is not None for t in targets):
        return targets[0].transport
    if targets and all(t.transport != "udp" for t in targets):
        return targets[0].transport
    return "udp"
