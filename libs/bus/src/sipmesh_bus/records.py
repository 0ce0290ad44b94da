"""Records stored in the ``subscribers`` and ``location`` KV buckets, and their keys.

The registrar writes them, the router reads bindings, the command line writes
subscribers; all three import this module so that the wire format lives in one
place. Values are msgpack (msgspec Structs); the evolution rules of
:mod:`sipmesh_bus.schema` apply: new fields go last with defaults.

Keys: one per address-of-record, in both buckets, built by :func:`aor_key` from
the canonical user and domain (RFC 3261 §10.3 step 5: "all URI parameters MUST
be removed (including the user-param), and any escaped characters MUST be
converted to their unescaped form"). NATS KV keys allow ``[-/_=.A-Za-z0-9]``, so
every other octet of the UTF-8 text, and ``.``, ``/`` and ``=`` themselves,
become ``=XX`` (upper-case hex). The key is ``<domain>.<user>``, so a watch on
``example=2Ecom.*`` sees one domain::

    aor_key("alice", "example.com") == "example=2Ecom.alice"
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec
from msgspec import Meta, Struct

from sipmesh_bus.schema import Port, Transport

__all__ = [
    "Binding",
    "BindingSet",
    "SeenNonce",
    "Subscriber",
    "aor_key",
    "decode_binding_set",
    "decode_subscriber",
    "encode_record",
    "live_bindings",
    "parse_aor_key",
]

_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_ESCAPE_RE: Final = re.compile(r"=([0-9A-F]{2})")
_KEY_RE: Final = re.compile(r"[-_=A-Za-z0-9]+\.[-_=A-Za-z0-9]+")


class Subscriber(Struct, frozen=True, kw_only=True):
    """A user allowed to register (bucket ``subscribers``, key :func:`aor_key`).

    Never a password: the two digest HA1 values, as RFC 8760 §3 lets a server
    store "H(username:realm:password)" per algorithm. The realm is ``domain``.
    """

    user: str
    #: The user part of the AoR, unescaped (case-sensitive, RFC 3261 §19.1.4).
    domain: str
    #: The canonical domain, lower-case; also the digest realm.
    ha1_md5: str
    #: ``MD5(user:domain:password)``, lower-case hex (RFC 2617 §3.2.2.2).
    ha1_sha256: str
    #: ``SHA-256(user:domain:password)``, lower-case hex (RFC 7616 §3.4.2).
    enabled: bool = True
    #: A disabled subscriber is refused like an unknown one.


class Binding(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One contact registered for an AoR (RFC 3261 §10.3).

    Fields at their default are left out of the stored map (``omit_defaults``:
    ~80 bytes less per binding); a reader fills them in from the defaults, so
    values written with or without them decode alike.
    """

    contact: str
    #: The Contact URI, as the UA sent it.
    expires_at: float
    #: Wall-clock seconds; a binding at or past it does not exist any more.
    call_id: str
    cseq: Annotated[int, Meta(ge=0)]
    #: For the §10.3 step 7 ordering rule.
    registered_at: float
    #: When this binding was last refreshed.
    source_host: str
    source_port: Port
    transport: Transport
    #: Where the REGISTER came from (RFC 3581 received/rport): behind a NAT
    #: this, not the Contact, is where requests must go.
    edge_id: str
    #: The edge that received the REGISTER (and holds its connection).
    connection_id: str | None = None
    #: The stream connection on that edge; None for UDP.
    q: float | None = None
    #: The Contact's q-value, 0..1 (None when absent).
    params: str = ""
    #: The Contact's other header parameters, raw (``;+sip.instance="<...>"``),
    #: without ``expires`` and ``q``; echoed in the 200 (OK).
    instance: str | None = None
    #: RFC 5626 ``+sip.instance``, unquoted (``<urn:uuid:...>``).
    reg_id: Annotated[int, Meta(ge=1)] | None = None
    #: RFC 5626 ``reg-id``: with ``instance``, identifies a flow.
    path: list[str] = []
    #: RFC 3327 Path header values, top first: the route back to the UA.
    user_agent: str | None = None

    def remaining(self, now: float) -> int:
        """Whole seconds until expiry (at least 1 while live, 0 once expired)."""
        left = self.expires_at - now
        return 0 if left <= 0 else max(1, int(left + 0.5))


class SeenNonce(Struct, frozen=True, kw_only=True, array_like=True):
    """The highest nonce-count the registrar accepted for one digest nonce.

    Kept in the AoR's :class:`BindingSet` (the registrar's replay detection,
    see ``sipmesh_registrar.replay``). Encoded as a msgpack array: dozens of
    them may ride in every location value.
    """

    nonce: str
    #: A short hash of the nonce (hex), not the nonce itself.
    nc: Annotated[int, Meta(ge=1)]
    #: The highest nonce-count accepted with it.
    until: float
    #: Wall-clock seconds after which no replica accepts the nonce any more
    #: (its expiry plus the allowed clock skew): then it can be forgotten.


class BindingSet(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """All bindings of one AoR (bucket ``location``, key :func:`aor_key`).

    Like :class:`Binding`, stored without the fields at their default.

    Readers must ignore bindings whose ``expires_at`` has passed (see
    :func:`live_bindings`): the key lives until its last binding expires, or
    until its last seen nonce does, whichever is later; a set may then hold
    no binding at all.
    """

    aor: str
    #: The canonical AoR, ``sip:user@domain``.
    bindings: list[Binding] = []
    seen_nonces: list[SeenNonce] = []
    #: Digest nonces accepted for this AoR and their highest nonce-count
    #: (registrar replay detection), at most a few dozen, none expired.
    nonce_floor: float = 0.0
    #: Every nonce forgotten while still valid (the list is bounded) had an
    #: ``until`` at or below this: such a nonce is refused when not in the list.


_encoder: Final = msgspec.msgpack.Encoder()
_subscriber: Final = msgspec.msgpack.Decoder(Subscriber)
_binding_set: Final = msgspec.msgpack.Decoder(BindingSet)


def encode_record(record: Subscriber | BindingSet) -> bytes:
    """Encode a record to msgpack, the stored value."""
    return _encoder.encode(record)


def decode_subscriber(data: bytes) -> Subscriber:
    """Decode a subscriber value. Raises ``msgspec.DecodeError``/``ValidationError``."""
    return _subscriber.decode(data)


def decode_binding_set(data: bytes) -> BindingSet:
    """Decode a location value. Raises ``msgspec.DecodeError``/``ValidationError``."""
    return _binding_set.decode(data)


def live_bindings(bindings: BindingSet | None, now: float) -> list[Binding]:
    """The bindings of ``bindings`` that have not expired at ``now``, best q first.

    Higher q-values first (RFC 3261 §20.10: q "indicates a relative preference"
    among the Contact values); bindings without q after those with one; then
    the most recently registered first.
    """
    if bindings is None:
        return []
    live = [b for b in bindings.bindings if b.expires_at > now]
    live.sort(key=lambda b: (-(b.q if b.q is not None else -1.0), -b.registered_at))
    return live


def _escape(text: str) -> str:
    out = []
    for octet in text.encode("utf-8"):
        out.append(chr(octet) if octet in _SAFE else f"={octet:02X}")
    return "".join(out)


def _unescape(part: str) -> str:
    raw = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), part)
    return raw.encode("latin-1").decode("utf-8")


def aor_key(user: str, domain: str) -> str:
    """The KV key of an AoR (and of its subscriber).

    Args:
        user: the unescaped user part (case kept).
        domain: the canonical domain (lower-cased here).

    Returns:
        ``<escaped domain>.<escaped user>``, a valid NATS KV key.

    Raises:
        ValueError: ``user`` or ``domain`` is empty.
    """
    if not user or not domain:
        raise ValueError("an AoR key needs a user and a domain")
    return f"{_escape(domain.lower())}.{_escape(user)}"


def parse_aor_key(key: str) -> tuple[str, str]:
    """The ``(user, domain)`` of a key made by :func:`aor_key`.

    Raises:
        ValueError: not such a key.
    """
    if not _KEY_RE.fullmatch(key) or "=" in _ESCAPE_RE.sub("", key):
        raise ValueError(f"not an AoR key: {key!r}")
    domain, _, user = key.partition(".")
    try:
        return _unescape(user), _unescape(domain)
    except UnicodeDecodeError:
        raise ValueError(f"not an AoR key: {key!r}") from None
