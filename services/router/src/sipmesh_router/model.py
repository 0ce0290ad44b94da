"""The core's input and output types (shared by core.py and responses.py).

Frozen msgspec Structs rather than frozen dataclasses: the shell builds an
``Inputs`` and the core one or two ``Decision`` per message, and a frozen
dataclass sets each field through ``object.__setattr__`` (1.7 against 0.1 µs
for nine fields). ``msgspec.structs.replace`` copies one with changes.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from msgspec import Struct

from sipmesh_bus.records import BindingSet, Subscriber
from sipmesh_bus.schema import CallEvent, MediaAnswer, MediaDelete, MediaOffer, ReplyType
from sipmsg.digest import NonceManager

from .config import Policy
from .context import DialogRecord
from .routes import RoutingView

__all__ = ["Decision", "Inputs", "NonceClaim"]


class NonceClaim(Struct, frozen=True, kw_only=True):
    """A digest nonce-count to claim in KV ``nonces`` before the decision stands."""

    key: str
    ttl: float
    #: Seconds (until the nonce is stale anyway).
    realm: str
    #: The realm to challenge in again when the count was used already.


class Decision(Struct, frozen=True, kw_only=True):
    """What to answer and what else to do."""

    reply: ReplyType
    outcome: str
    #: A short label for metrics and logs (``forward``, ``challenge``, ``not_found`` ...).
    events: tuple[CallEvent, ...] = ()
    #: Call events to publish to JetStream.
    dialog_put: tuple[str, DialogRecord] | None = None
    dialog_delete: str | None = None
    nonce_claim: NonceClaim | None = None
    #: Set for a request whose digest credentials were accepted: when the
    #: shell cannot claim it (a replay), it answers :func:`core.replayed` instead.
    media: MediaOffer | MediaAnswer | None = None
    #: Ask the media service this first, then finish the decision with
    #: :func:`sipmesh_router.media.apply_media` (the SDP to send is its answer).
    media_delete: MediaDelete | None = None
    #: Release the call's media (sent by the shell alongside the reply).
    setup_seconds: float | None = None
    #: For the 2xx of an initial INVITE: seconds from the INVITE to it (metrics).


class Inputs(Struct, frozen=True, kw_only=True):
    """Everything the core reads, gathered by the shell."""

    routing: RoutingView
    policy: Policy
    nonces: NonceManager
    now: float
    entropy: bytes
    #: Fresh random bytes for nonces.
    locations: Mapping[str, BindingSet | None] = msgspec.field(default_factory=dict)
    #: AoR key -> its bindings, for the keys of :func:`location_keys`.
    subscribers: Mapping[str, Subscriber] = msgspec.field(default_factory=dict)
    user_calls: Mapping[str, int] = msgspec.field(default_factory=dict)
    #: Answered calls per caller ``user@domain`` (KV ``dialogs``; call caps).
    trunk_calls: Mapping[str, int] = msgspec.field(default_factory=dict)
    #: Answered calls per trusted peer name and per gateway id.
