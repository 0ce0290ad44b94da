"""The values the registrar's pure core takes and returns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from sipmesh_bus.records import BindingSet, SeenNonce
from sipmsg import Request, Response, make_response
from sipmsg.address import Address, Star

__all__ = ["Admitted", "Answer", "ContactSpec", "Policy", "Registered", "Replayed", "answer"]

KEY_TTL_MARGIN: Final = 30
#: Seconds a location key outlives its last binding (clock skew between replicas).


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """What the registrar allows, from its configuration."""

    domains: frozenset[str] = frozenset()
    #: Canonical (lower-case) domains served; empty serves any domain.
    aliases: Mapping[str, str] = field(default_factory=dict)
    #: Lower-case alias -> canonical domain.
    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    max_contacts: int = 10
    evict_oldest: bool = False
    #: At ``max_contacts``: drop the least recently refreshed (else 403).
    auth: bool = True
    algorithms: tuple[bytes, ...] = (b"SHA-256", b"MD5")
    #: Offered in this order, one WWW-Authenticate each (RFC 8760 §2.4).


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """Send ``response`` and stop."""

    response: Response
    result: str
    #: Metrics label: ``challenge``, ``auth_failed``, ``bad_request`` ...
    auth_failure: str | None = None
    #: Why authentication failed (metrics only; never in the response).


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactSpec:
    """One Contact of the request, with the expiry the registrar grants."""

    address: Address
    expires: int
    #: Granted seconds; 0 removes the binding.
    uri: str
    params: str
    q: float | None
    instance: str | None
    reg_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    """A REGISTER that passed steps 1-6; the bindings come next."""

    request: Request
    aor: str
    #: ``sip:user@domain``.
    key: str
    #: Its KV key (:func:`sipmesh_bus.records.aor_key`).
    realm: bytes
    contacts: tuple[ContactSpec, ...] | Star | None
    #: None: a query (no Contact), Star: remove all.
    replay: SeenNonce | None = None
    #: The nonce-count to accept once for this AoR, when authenticated
    #: (:mod:`sipmesh_registrar.replay`).


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered(Answer):
    """Store ``bindings`` (None: delete the key), then send the 200."""

    bindings: BindingSet | None = None
    changed: bool = False
    #: False: nothing to write (a query or a retransmission).
    ttl: int = 0
    #: Seconds the KV key should live: the last binding's expiry plus a margin.


@dataclass(frozen=True, slots=True, kw_only=True)
class Replayed:
    """The AoR's record already holds this nonce-count (or a higher one).

    The shell answers :func:`sipmesh_registrar.auth.replayed` (a fresh
    challenge, which needs the nonce source the pure step does not have).
    """

    nc: int
    #: The refused nonce-count.


def answer(
    req: Request,
    status: int,
    result: str,
    *,
    reason: bytes | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
    auth_failure: str | None = None,
) -> Answer:
    """An :class:`Answer` with the response to ``req`` (RFC 3261 §8.2.6)."""
    response = make_response(req, status, reason, headers=headers)
    return Answer(response=response, result=result, auth_failure=auth_failure)
