"""The registrar's settings (section ``registrar``), loaded by ``sipmesh_bus.config``.

Environment: ``SIPMESH_REGISTRAR_<KEY>``, e.g. ``SIPMESH_REGISTRAR_DOMAIN=example.com``,
``SIPMESH_REGISTRAR_AUTH=false``, ``SIPMESH_REGISTRAR_NONCE_SECRET=...``.

The nonce secret must be the same on every replica, so that a challenge issued
by one replica is answered to another. It is loaded by
:func:`sipmesh_bus.secrets.load_shared_secret`, first match wins:

1. ``registrar.nonce_secret`` (``$SIPMESH_REGISTRAR_NONCE_SECRET``): set it in
   any deployment with several hosts (the Helm chart passes a Secret);
2. the file ``<data_dir>/registrar-nonce-secret`` when ``data_dir`` is set
   (``$SIPMESH_DATA_DIR``, which ``sipmesh up`` sets), shared by every process
   on that host (the router too);
3. otherwise a random secret for this process, with a warning: correct for a
   single replica only.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

import msgspec
from msgspec import Meta

from sipmesh_bus.config import PositiveFloat, ServiceConfig, Settings

from .model import Policy

__all__ = ["RegistrarConfig", "RegistrarSettings", "make_policy"]

Seconds: TypeAlias = Annotated[int, Meta(ge=0, le=2**32 - 1)]


class RegistrarSettings(Settings, frozen=True, kw_only=True):
    """Section ``registrar``."""

    domain: str = "localhost"
    #: The domain served (also the digest realm of its users).
    domains: tuple[str, ...] = ()
    #: More domains served; with ``domain``, the whole set. ``"*"`` serves any.
    aliases: dict[str, str] = msgspec.field(default_factory=dict)
    #: Other names of a domain, e.g. ``{"192.0.2.10": "example.com"}``.
    min_expires: Annotated[int, Meta(ge=1, le=3600)] = 60
    #: Below it a registration gets 423 (RFC 3261 §10.3 only allows that under an hour).
    max_expires: Seconds = 7200
    #: Longer requests are granted this much.
    default_expires: Seconds = 3600
    #: Used when neither the contact nor the request says (RFC 3261 §10.3 step 7).
    max_contacts: Annotated[int, Meta(ge=1)] = 10
    #: Bindings per AoR.
    on_too_many_contacts: Literal["reject", "evict_oldest"] = "reject"
    #: 403, or drop the least recently refreshed bindings to make room.
    auth: bool = True
    #: False: anyone registers anything (tests, benchmarks, closed networks).
    algorithms: Annotated[tuple[Literal["SHA-256", "MD5"], ...], Meta(min_length=1)] = (
        "SHA-256",
        "MD5",
    )
    #: Digest algorithms offered, one WWW-Authenticate each, in this order (RFC
    #: 8760 §2.4: most preferred first). ``MD5`` alone for clients that read only
    #: the first challenge and know no SHA-256 (SIPp 3.6, baresip 1.0).
    nonce_secret: str | None = None
    #: Shared by every replica; see the module docstring.
    nonce_ttl: PositiveFloat = 300.0
    #: Seconds a challenge's nonce stays valid.
    kv_retries: Annotated[int, Meta(ge=1)] = 16
    #: Optimistic-concurrency attempts on one AoR before answering 500.
    retry_after: Annotated[int, Meta(ge=1)] = 5
    #: Retry-After of a 503 when NATS fails.


class RegistrarConfig(ServiceConfig, frozen=True, kw_only=True):
    """The registrar's whole configuration."""

    registrar: RegistrarSettings = RegistrarSettings()
    data_dir: str | None = None
    #: ``$SIPMESH_DATA_DIR``: where the nonce secret file is kept.


def make_policy(settings: RegistrarSettings) -> Policy:
    """The core's :class:`Policy` from the ``registrar`` section."""
    domains = frozenset(_domain(d) for d in (settings.domain, *settings.domains))
    return Policy(
        domains=frozenset() if "*" in domains else domains,
        aliases={_domain(k): _domain(v) for k, v in settings.aliases.items()},
        min_expires=settings.min_expires,
        max_expires=settings.max_expires,
        default_expires=settings.default_expires,
        max_contacts=settings.max_contacts,
        evict_oldest=settings.on_too_many_contacts == "evict_oldest",
        auth=settings.auth,
        algorithms=tuple(a.encode("ascii") for a in dict.fromkeys(settings.algorithms)),
    )


def _domain(name: str) -> str:
    return name.strip().lower().rstrip(".")
