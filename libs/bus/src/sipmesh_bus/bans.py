"""Ban records in the ``bans`` KV bucket, their keys, and how to write, read and delete them.

Every edge watches the bucket and keeps a local cache (``sipmesh_edge.guard``),
so a ban one edge decides, or ``sipmesh ban add`` writes, reaches every edge
within the watch's latency (milliseconds on a LAN). Each key carries its own
TTL (the ``Nats-TTL`` header, nats-server 2.11+): the server removes it when
the ban ends. Readers still compare ``expires_at`` with their clock, since a
TTL expiry produces no watch event.

Keys: ``<family>.<address>.<prefix length>``, with the address's ``.`` or
``:`` turned into ``-`` (NATS KV keys allow ``[-/_=.A-Za-z0-9]``)::

    ban_key("203.0.113.9")       == "v4.203-0-113-9.32"
    ban_key("2001:db8::/32")     == "v6.2001-db8--.32"
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Final

import msgspec
import nats.js.errors
from msgspec import Struct
from nats.js.kv import KeyValue

from sipmesh_bus.kvlist import live_entries

__all__ = [
    "Ban",
    "ban_key",
    "canonical_target",
    "decode_ban",
    "delete_ban",
    "encode_ban",
    "parse_ban_key",
    "put_ban",
    "read_bans",
]

_KEY_RE: Final = re.compile(r"v(4|6)\.([-0-9a-f]+)\.(\d{1,3})")


class Ban(Struct, frozen=True, kw_only=True):
    """One banned source address or network (bucket ``bans``, key :func:`ban_key`)."""

    target: str
    #: The address (``203.0.113.9``) or network (``203.0.113.0/24``), canonical text.
    reason: str
    #: Why: ``rate``, ``scanner``, ``auth_failures``, ``manual`` ... (free text for manual bans).
    created_at: float
    #: Wall-clock seconds.
    expires_at: float
    #: Wall-clock seconds; at or past it the ban is over.
    source: str = ""
    #: Who decided: an edge id, or ``cli``.

    def remaining(self, now: float) -> int:
        """Whole seconds left (at least 1 while live, 0 once over)."""
        left = self.expires_at - now
        return 0 if left <= 0 else max(1, math.ceil(left))


_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Ban)


def encode_ban(ban: Ban) -> bytes:
    """The stored value (msgpack)."""
    return _encoder.encode(ban)


def decode_ban(data: bytes) -> Ban:
    """Decode a stored value. Raises ``msgspec.DecodeError``/``ValidationError``."""
    return _decoder.decode(data)


def canonical_target(text: str) -> str:
    """An address or CIDR in canonical form: ``203.0.113.9`` or ``203.0.113.0/24``.

    A single address has no ``/32`` or ``/128``; host bits of a CIDR are cleared.

    Raises:
        ValueError: neither an address nor a CIDR.
    """
    try:
        network = ipaddress.ip_network(text.strip().strip("[]"), strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR: {text!r}") from None
    if network.num_addresses == 1:
        return str(network.network_address)
    return network.compressed


def ban_key(target: str) -> str:
    """The KV key of a ban on ``target`` (see the module docstring).

    Raises:
        ValueError: not an address or CIDR.
    """
    network = ipaddress.ip_network(canonical_target(target), strict=False)
    address = str(network.network_address).replace(".", "-").replace(":", "-")
    return f"v{network.version}.{address}.{network.prefixlen}"


def parse_ban_key(key: str) -> str:
    """The canonical target of a key made by :func:`ban_key`.

    Raises:
        ValueError: not such a key.
    """
    m = _KEY_RE.fullmatch(key)
    if m is None:
        raise ValueError(f"not a ban key: {key!r}")
    version, address, prefix = m.groups()
    address = address.replace("-", "." if version == "4" else ":")
    return canonical_target(f"{address}/{prefix}")


async def put_ban(bucket: KeyValue, ban: Ban, *, now: float) -> None:
    """Store ``ban``, replacing any ban on the same target, with a per-key TTL that ends with it.

    The TTL is whole seconds, at least 1. ``KeyValue.put`` takes no TTL, so
    this is ``create`` with one, and for a target already banned a delete
    first (a ban lifted and set again, never merged).

    Args:
        bucket: the ``bans`` bucket.
        ban: the ban; its target must be canonical (:func:`canonical_target`).
        now: wall-clock seconds, to turn ``expires_at`` into a TTL.

    Raises:
        ValueError: the ban is already over, or its target is not an address.
        nats.errors.Error: NATS failed.
    """
    ttl = math.ceil(ban.expires_at - now)
    if ttl <= 0:
        raise ValueError(f"ban on {ban.target} is already over")
    key, value = ban_key(ban.target), encode_ban(ban)
    try:
        await bucket.create(key, value, msg_ttl=ttl)
    except nats.js.errors.KeyWrongLastSequenceError:
        await bucket.delete(key)
        await bucket.create(key, value, msg_ttl=ttl)


async def delete_ban(bucket: KeyValue, target: str) -> bool:
    """Lift the ban on ``target``; False when there was none.

    Raises:
        ValueError: not an address or CIDR.
        nats.errors.Error: NATS failed.
    """
    key = ban_key(target)
    try:
        await bucket.get(key)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        return False
    await bucket.delete(key)
    return True


async def read_bans(bucket: KeyValue, now: float) -> list[Ban]:
    """Every live ban, soonest expiry last (records that do not decode are skipped).

    Args:
        bucket: the ``bans`` bucket.
        now: wall-clock seconds; bans over at ``now`` are left out.
    """
    found: list[Ban] = []
    for entry in (await live_entries(bucket, now=now)).values():
        try:
            ban = decode_ban(entry.value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if ban.expires_at > now:
            found.append(ban)
    found.sort(key=lambda b: (-b.expires_at, b.target))
    return found
