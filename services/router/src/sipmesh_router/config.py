"""The router's settings (section ``router``), loaded by ``sipmesh_bus.config``.

Environment: ``SIPMESH_ROUTER_<KEY>``, e.g. ``SIPMESH_ROUTER_DOMAIN=example.com``
(``sipmesh up`` sets it), ``SIPMESH_ROUTER_NONCE_SECRET=...``.

The router challenges calls with the registrar's digest, so it must use the
registrar's nonce secret (a phone may answer a router challenge with a nonce
the registrar issued, and any replica must check what another issued). First
match wins: ``router.nonce_secret``; then ``$SIPMESH_REGISTRAR_NONCE_SECRET``;
then the registrar's file ``<data_dir>/registrar-nonce-secret`` (created the
same way, race-free, when the router starts first); else a random secret with
a warning (one replica only); see :func:`sipmesh_bus.secrets.load_shared_secret`.
The same secret signs the router's Record-Route tokens and topology-hiding
Contacts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Annotated, Literal, TypeAlias

import msgspec
from msgspec import Meta

from sipmesh_bus.calllimits import CallLimits
from sipmesh_bus.config import PositiveFloat, ServiceConfig, Settings
from sipmesh_bus.secrets import load_shared_secret

__all__ = [
    "DialogsMode",
    "MediaMode",
    "Policy",
    "RouterConfig",
    "RouterSettings",
    "load_secret",
    "make_policy",
]


MediaMode: TypeAlias = Literal["always", "nat", "never"]
_Algorithm: TypeAlias = Literal["SHA-256", "MD5"]
DialogsMode: TypeAlias = Literal["always", "auto"]


class RouterSettings(Settings, frozen=True, kw_only=True):
    """Section ``router``."""

    domain: str = "localhost"
    #: The local domain (its users are the registrar's; also the digest realm).
    domains: tuple[str, ...] = ()
    #: More local domains.
    advertised_host: str = ""
    #: Host in our Via/Record-Route/Contact when an edge is bound to a wildcard
    #: address and not listed in ``edges``.
    edges: dict[str, str] = msgspec.field(default_factory=dict)
    #: Edge id -> the host phones and peers reach it at (its advertised address).
    listeners: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    #: Edge id -> transport -> ``host:port`` of that edge's listener, for the
    #: outbound Via and Record-Route when a call changes transport (until the
    #: edge carries its listeners in the envelope).
    auth: bool = True
    #: False: local users call without a challenge (tests, benchmarks).
    nonce_secret: str | None = None
    nonce_ttl: PositiveFloat = 300.0
    timer_c: Annotated[float, Meta(gt=180.0)] = 181.0
    #: RFC 3261 §16.6 step 11: "The timer MUST be larger than 3 minutes."
    dialog_ttl: Annotated[int, Meta(ge=60)] = 43_200
    #: Seconds a dialog record lives when no BYE comes (the bucket caps at a day).
    retry_after: Annotated[int, Meta(ge=1)] = 5
    probe: bool = True
    #: OPTIONS-probe dispatcher destinations and gateways marked ``probe``
    #: (one replica at a time holds the lease; see ``sipmesh_router.prober``).
    probe_bind: str = "0.0.0.0"  # noqa: S104 - destinations are off this host
    #: Local address of the prober's UDP socket.
    probe_interval: PositiveFloat = 10.0
    probe_timeout: PositiveFloat = 2.0
    probe_down_after: Annotated[int, Meta(ge=1)] = 3
    probe_up_after: Annotated[int, Meta(ge=1)] = 2
    probe_lease_ttl: PositiveFloat = 30.0
    #: Seconds before another replica takes over a silent prober's lease.
    algorithms: Annotated[tuple[_Algorithm, ...], Meta(min_length=1)] = ("SHA-256", "MD5")
    #: Digest algorithms offered in a 407, one Proxy-Authenticate each, in this
    #: order (the registrar's ``algorithms``; MD5 alone for SIPp 3.6 and baresip 1.0).
    media: MediaMode = "nat"
    #: Media anchoring through the media service (RTPEngine): ``always``,
    #: ``never``, or ``nat``: when a registered phone of the call looks NATed.
    media_overrides: dict[str, MediaMode] = msgspec.field(default_factory=dict)
    #: Per route: ``peer:<name>``, ``set:<dispatcher set>``, ``gateway:<id>``,
    #: ``carrier:<id>`` -> mode. The destination's entry wins over the caller
    #: peer's, which wins over ``media``.
    media_timeout: PositiveFloat = 1.0
    #: Seconds to wait for the media service; then the call goes on unanchored.
    call_limits: CallLimits = CallLimits()
    #: Concurrent-call caps (``per_user``, ``per_trunk``, overrides ``users``
    #: by ``user@domain`` and ``trunks`` by gateway id or peer name; 0: none),
    #: counted from KV ``dialogs`` (:mod:`sipmesh_router.caps`).
    dialogs: DialogsMode = "always"
    #: When the router writes a record to KV ``dialogs`` (put on the 2xx,
    #: delete on the BYE: two JetStream writes per call). ``always``; or
    #: ``auto``: only while something counts them, call caps (``call_limits``)
    #: or a ``least_calls`` dispatcher set; the ``sipmesh_router_calls_active``
    #: gauge then counts only the calls answered meanwhile. A BYE still deletes
    #: the record of a call that has one (written while counting).


class RouterConfig(ServiceConfig, frozen=True, kw_only=True):
    """The router's whole configuration."""

    router: RouterSettings = RouterSettings()
    data_dir: str | None = None
    #: ``$SIPMESH_DATA_DIR``: where the shared nonce secret file is kept.


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """What :func:`sipmesh_router.core.decide` needs of the settings."""

    domains: frozenset[str]
    #: Local domains, lower-case; the first listed is ``realm``'s default.
    secret: bytes
    #: Signs Record-Route tokens and hidden Contacts.
    auth: bool = True
    edges: tuple[tuple[str, str], ...] = ()
    #: Edge id -> advertised host.
    advertised_host: str = ""
    timer_c: float = 181.0
    dialog_ttl: int = 43_200
    listeners: tuple[tuple[str, str, str, int], ...] = ()
    #: (edge id, transport, host, port) of the edges' listeners.
    algorithms: tuple[bytes, ...] = (b"SHA-256", b"MD5")
    #: Digest algorithms of a 407, in order.
    media: MediaMode = "nat"
    media_overrides: tuple[tuple[str, MediaMode], ...] = ()
    #: (``peer:x`` / ``set:x`` / ``gateway:x`` / ``carrier:x``, mode).
    call_limits: CallLimits = field(default_factory=CallLimits)
    retry_after: int = 5
    #: Seconds in the Retry-After of a 503 for a full trunk.

    def media_mode(self, keys: tuple[str, ...]) -> MediaMode:
        """The anchoring mode of the first of ``keys`` that has an override, else ``media``."""
        if not self.media_overrides:
            return self.media  # the usual case: no table to build
        table = dict(self.media_overrides)
        return next((table[k] for k in keys if k in table), self.media)

    def listener(self, edge_id: str, transport: str) -> tuple[str, int] | None:
        """The configured listener of edge ``edge_id`` for ``transport``, or None."""
        for name, tp, host, port in self.listeners:
            if name == edge_id and tp == transport:
                return host, port
        return None

    def edge_host(self, edge_id: str, local_host: str) -> str:
        """The host under which the edge ``edge_id`` is reached."""
        for name, host in self.edges:
            if name == edge_id:
                return host
        if local_host in ("0.0.0.0", "::", "") and self.advertised_host:  # noqa: S104
            return self.advertised_host
        return local_host

    def is_local(self, domain: str) -> bool:
        """True when ``domain`` (any case) is one of ours."""
        return domain.lower().rstrip(".") in self.domains


def make_policy(settings: RouterSettings, secret: bytes) -> Policy:
    """The core's :class:`Policy` from the ``router`` section and the secret."""
    domains = frozenset(d.strip().lower().rstrip(".") for d in (settings.domain, *settings.domains))
    return Policy(
        domains=domains,
        secret=secret,
        auth=settings.auth,
        edges=tuple(sorted(settings.edges.items())),
        advertised_host=settings.advertised_host,
        timer_c=settings.timer_c,
        dialog_ttl=settings.dialog_ttl,
        listeners=tuple(_listeners(settings.listeners)),
        algorithms=tuple(a.encode("ascii") for a in dict.fromkeys(settings.algorithms)),
        media=settings.media,
        media_overrides=tuple(sorted(settings.media_overrides.items())),
        call_limits=settings.call_limits,
        retry_after=settings.retry_after,
    )


def _listeners(table: dict[str, dict[str, str]]) -> list[tuple[str, str, str, int]]:
    out = []
    for edge_id, by_transport in sorted(table.items()):
        for transport, address in sorted(by_transport.items()):
            host, sep, port = address.rpartition(":")
            if not sep or not port.isdigit() or not host or int(port) > 65535:
                raise ValueError(f"router.listeners.{edge_id}.{transport}: expected host:port")
            out.append((edge_id, transport.lower(), host.strip("[]"), int(port)))
    return out


def load_secret(config: RouterConfig) -> bytes:
    """The shared secret (see the module docstring).

    Raises:
        OSError: the data dir's secret file cannot be read or created.
    """
    return load_shared_secret(
        (config.router.nonce_secret, os.environ.get("SIPMESH_REGISTRAR_NONCE_SECRET")),
        data_dir=config.data_dir,
        owner="router",
    )
