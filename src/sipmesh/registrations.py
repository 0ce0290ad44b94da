"""Live registrations from the ``location`` bucket, as rows for ``sipmesh registrations``.

The registrar writes one :class:`sipmesh_bus.records.BindingSet` per AoR; a key
outlives some of its bindings, so only :func:`sipmesh_bus.records.live_bindings`
decides what is shown: an expired binding never is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nats.js.kv import KeyValue

from sipmesh_bus import records
from sipmesh_bus.kvlist import live_entries
from sipmesh_bus.records import Binding, BindingSet, aor_key, live_bindings, parse_aor_key

__all__ = ["Registration", "read_binding_sets", "registrations", "source_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """One live binding, ready to print."""

    aor: str
    #: ``sip:user@domain``.
    user: str
    domain: str
    contact: str
    source: str
    #: ``host:port/transport`` the REGISTER came from.
    expires_in: int
    #: Whole seconds left (at least 1).
    edge_id: str
    user_agent: str | None


def source_of(binding: Binding) -> str:
    """``host:port/transport``, with an IPv6 host in brackets."""
    host = binding.source_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{binding.source_port}/{binding.transport}"


async def read_binding_sets(
    bucket: KeyValue, *, user: str | None = None, domain: str | None = None
) -> list[tuple[str, str, BindingSet]]:
    """Every stored binding set, as ``(user, domain, set)``, live or not.

    Args:
        bucket: the ``location`` bucket.
        user: only this user (in any domain, unless ``domain`` is given too).
        domain: only this canonical domain.

    Records that do not decode are skipped (the router ignores them too).
    """
    if user and domain:
        keys = aor_key(user, domain)
    elif domain:
        keys = f"{aor_key('x', domain).partition('.')[0]}.*"
    else:
        keys = ">"
    found: list[tuple[str, str, BindingSet]] = []
    for entry in (await live_entries(bucket, keys)).values():
        try:
            key_user, key_domain = parse_aor_key(entry.key)
            bindings = records.decode_binding_set(entry.value)
        except ValueError:  # a foreign key, or msgspec.DecodeError/ValidationError
            continue
        if user is None or key_user == user:
            found.append((key_user, key_domain, bindings))
    return found


def registrations(sets: Iterable[tuple[str, str, BindingSet]], now: float) -> list[Registration]:
    """The live bindings of ``sets`` at ``now``: by domain, user, then best first.

    Args:
        sets: ``(user, domain, set)`` as :func:`read_binding_sets` returns them.
        now: wall-clock seconds.
    """
    rows: list[Registration] = []
    for user, domain, bindings in sorted(sets, key=lambda t: (t[1], t[0])):
        rows.extend(
            Registration(
                aor=bindings.aor,
                user=user,
                domain=domain,
                contact=b.contact,
                source=source_of(b),
                expires_in=b.remaining(now),
                edge_id=b.edge_id,
                user_agent=b.user_agent,
            )
            for b in live_bindings(bindings, now)
        )
    return rows
