"""Replayed nonce-counts, refused through the AoR's own record, pure.

The nonces are stateless (HMAC, :class:`sipmsg.digest.NonceManager`): any
replica checks what another issued, but nothing in a nonce says whether a
request using it was seen before. RFC 7616 §3.4.5 on ``nc``: it lets the
server "detect request replays by maintaining its own copy of this count - if
the same nc-value is seen twice, then the request is a replay"; and the client
"MUST increment" it with each request using the nonce (§3.4).

**Where the counts live.** Each AoR's :class:`~sipmesh_bus.records.BindingSet`
(bucket ``location``) carries the nonces accepted for that AoR, each with the
highest nonce-count accepted (:class:`~sipmesh_bus.records.SeenNonce`). The
registrar checks a request against them (:func:`is_replay`) and stores the new
count (:func:`remember`) in the compare-and-set write of the bindings: one
write, no round trip of its own. Two replicas racing with the same
``(nonce, nc)`` cannot both win the write; the loser reads the record again,
finds the count and refuses.

**Why one AoR's record is enough.** A nonce alone is not tied to an AoR, but
an accepted REGISTER's credentials are. They verify only with the username,
realm, nonce, nc, method and digest-uri they were computed over (RFC 7616
§3.4.1), the realm must be the To domain, and the username must be the To user
(else 403, :func:`sipmesh_registrar.auth.authenticate`). So every request
that replays a given Authorization, whatever else is changed, names the same
AoR key, and that key's record sees every use of its ``(nonce, nc)``: for
REGISTER it is the global ``nonces`` bucket, partitioned by AoR. The router's
407 challenges keep that bucket: its credentials are computed over another
method, so a REGISTER's Authorization never verifies there, nor the reverse.

**Bounded.** At most :data:`MAX_SEEN` nonces per AoR, none expired. When more
are live (many phones on one AoR), the oldest are forgotten, and
``nonce_floor`` rises to their expiry: a nonce not in the list that expires at
or before the floor is refused. A forgotten nonce is thus still refused; a
never-seen old one is refused too, and its client gets a fresh challenge.

**Queries are not recorded.** A REGISTER without Contact changes nothing, so
it writes nothing; a replayed query is refused if its count is already in the
record, else answered. That is harmless: it changes nothing and shows only the
bindings the credentials' owner may see. Recording it would cost a write.
"""

from __future__ import annotations

import hashlib
from operator import attrgetter
from typing import Final

from sipmesh_bus.records import BindingSet, SeenNonce

__all__ = ["MAX_SEEN", "counted", "is_replay", "remember", "seen_nonce"]

MAX_SEEN: Final = 16
#: Nonces remembered per AoR. Each rides in every write of the AoR's record
#: (28 bytes of msgpack) and is scanned by every REGISTER of it: a phone that
#: answers each 401 (SIPp's REG-AUTH does) fills the list within a minute of
#: refreshes, 32 entries made the record 1.25 KB instead of 0.8 KB. A device
#: that reuses its nonce (nc 2, 3 ...) holds one or two live ones (RFC 7616
#: §3.4); 16 leave room for eight such devices per AoR before one of them is
#: forgotten, which costs it a fresh challenge, never a replay accepted.
_UNTIL: Final = attrgetter("until")


def seen_nonce(nonce: bytes, nc: int, *, until: float) -> SeenNonce:
    """The record of accepting ``nc`` with ``nonce``.

    Args:
        nonce: the nonce as the client sent it (authentic: checked before).
        nc: its nonce-count.
        until: when no replica accepts the nonce any more (expiry plus skew).
    """
    # 64 bits: a collision can only refuse a request (a fresh challenge), never
    # accept a replay, so the hash need not resist anything.
    tag = hashlib.blake2b(nonce, digest_size=8).hexdigest()
    return SeenNonce(nonce=tag, nc=nc, until=until)


def is_replay(stored: BindingSet | None, seen: SeenNonce) -> bool:
    """True when ``stored`` already accepted this nonce-count or a higher one.

    A stale copy of ``stored`` never refuses wrongly: a later version of the
    record refuses all that an earlier one did (counts only rise, and the
    floor covers what the list forgets).
    """
    if stored is None:
        return False
    for entry in stored.seen_nonces:
        if entry.nonce == seen.nonce:
            return seen.nc <= entry.nc
    return seen.until <= stored.nonce_floor


def remember(
    stored: BindingSet | None, seen: SeenNonce | None, *, now: float, limit: int = MAX_SEEN
) -> tuple[list[SeenNonce], float]:
    """The ``seen_nonces`` and ``nonce_floor`` to store next.

    Args:
        stored: the AoR's current record.
        seen: the count to add (None: carry the record's forward, pruned).
        now: wall-clock seconds; entries past their ``until`` are dropped.
        limit: how many to keep at most.
    """
    if stored is None:
        entries: list[SeenNonce] = []
        floor = 0.0
    else:
        skip = None if seen is None else seen.nonce
        entries = [e for e in stored.seen_nonces if e.until > now and e.nonce != skip]
        # A floor in the past guards nothing: every nonce under it is stale.
        floor = stored.nonce_floor if stored.nonce_floor > now else 0.0
    if seen is not None:
        entries.append(seen)
    return entries, _trim(entries, floor, limit)


def _trim(entries: list[SeenNonce], floor: float, limit: int) -> float:
    """Keep the ``limit`` latest-expiring ``entries``; the floor that covers the rest."""
    if len(entries) > limit:
        # Usually sorted already (each nonce expires after those issued
        # before it): the sort then only compares neighbours.
        entries.sort(key=_UNTIL)
        dropped = len(entries) - limit
        floor = max(floor, entries[dropped - 1].until)
        del entries[:dropped]
    return floor


def counted(
    stored: BindingSet | None, seen: SeenNonce, *, now: float, limit: int = MAX_SEEN
) -> tuple[list[SeenNonce], float] | None:
    """None when :func:`is_replay`, else what :func:`remember` gives, in one pass.

    Both walk the remembered nonces; an authenticated REGISTER needs both,
    and the walk is most of their cost (a full list has :data:`MAX_SEEN`).
    """
    if stored is None:
        return remember(None, seen, now=now, limit=limit)
    tag = seen.nonce
    found = False
    entries: list[SeenNonce] = []
    ordered = True
    last = 0.0
    for entry in stored.seen_nonces:
        if entry.nonce == tag:
            if not found:
                found = True
                if seen.nc <= entry.nc:
                    return None
        else:
            until = entry.until
            if until > now:
                if until < last:
                    ordered = False
                last = until
                entries.append(entry)
    if not found and seen.until <= stored.nonce_floor:
        return None
    floor = stored.nonce_floor if stored.nonce_floor > now else 0.0
    entries.append(seen)
    if ordered and len(entries) == limit + 1 and seen.until >= last:
        # A full list, in expiry order (as refreshes leave it), one over: what
        # _trim keeps, without its sort (ties stay in order, as its stable sort
        # keeps them).
        floor = max(floor, entries[0].until)
        del entries[0]
        return entries, floor
    return entries, _trim(entries, floor, limit)
