"""Least cost routing: numbers to E.164, prefixes to gateways, durations to money. Pure.

:func:`lookup` takes the E.164 number (from :func:`normalize_e164`) and the
routing snapshot, and returns every gateway that can take the call in the order
to try them (serial failover: the core sends the call to the next one on 408,
5xx or a transport error).

Ordering rules:

1. Each carrier's rate for a number is its *longest* matching prefix: a
   carrier that prices ``4917`` (German mobile) apart from ``49`` charges the
   ``4917`` rate for ``491701234567``, whatever other carriers publish.
2. The carriers' routes are then ordered by ``priority`` (lower first; an
   operator's override, 0 by default), then by rate (cheapest first), then by
   ``weight`` (higher first), then by carrier id (a stable order).
3. Each route expands to its pinned gateway, or to all of the carrier's
   gateways (lower gateway priority first). A gateway that a fresh health
   record marks down is left out; a gateway listed twice keeps its first place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Final

from msgspec import Struct

from sipmesh_bus.routing import (
    Gateway,
    Health,
    Increments,
    NumberSettings,
    Route,
    RoutingSnapshot,
    is_down,
)

__all__ = [
    "E164_MAX_DIGITS",
    "GatewayChoice",
    "billable_seconds",
    "cost",
    "lookup",
    "normalize_e164",
]

E164_MAX_DIGITS: Final = 15
#: ITU-T E.164 §6.1: "the maximum number of digits ... is 15".

# RFC 3966 §3: visual-separator = "-" / "." / "(" / ")"; people also type spaces.
_SEPARATORS: Final = str.maketrans("", "", "-.() ")
_DIGITS_RE: Final = re.compile(r"[0-9]+")


class GatewayChoice(Struct, frozen=True, kw_only=True):
    """One gateway to try for a number, with the price of the call through it."""

    carrier: str
    gateway: Gateway
    prefix: str
    #: The carrier's longest prefix that matched.
    rate_per_minute: float
    increments: Increments
    currency: str
    dial: str
    #: The number as this gateway wants it (its strip/prefix applied).

    def request_uri(self) -> str:
        """``sip:<dial>@<host>:<port>`` (with ``;transport=`` unless UDP)."""
        gw = self.gateway
        host = f"[{gw.host}]" if ":" in gw.host and not gw.host.startswith("[") else gw.host
        uri = f"sip:{self.dial}@{host}:{gw.port}"
        return uri if gw.transport == "udp" else f"{uri};transport={gw.transport}"


def normalize_e164(number: str, settings: NumberSettings) -> str | None:
    """A dialled number as E.164 digits (no ``+``), or None when it cannot be one.

    ``+49 30 1234`` and ``0049301234`` (international prefix) give
    ``49301234``; ``0301234`` (national prefix) gives the country code plus the
    rest; any other string of digits is taken as E.164 already (what carriers
    and PBXes send). Visual separators (RFC 3966 §3: ``- . ( )``) and spaces go.

    Args:
        number: the Request-URI user part (or a tel URI's number).
        settings: the country code and the national and international prefixes.

    Returns:
        1 to 15 digits; None for letters, an empty number, too many digits, or
        a national number when no country code is configured.
    """
    digits = number.translate(_SEPARATORS)
    if digits.startswith("+"):
        digits = digits[1:]
    elif settings.international_prefix and digits.startswith(settings.international_prefix):
        digits = digits[len(settings.international_prefix) :]
    elif settings.national_prefix and digits.startswith(settings.national_prefix):
        if not settings.country_code:
            return None
        digits = settings.country_code + digits[len(settings.national_prefix) :]
    if not _DIGITS_RE.fullmatch(digits) or len(digits) > E164_MAX_DIGITS:
        return None
    return digits


def lookup(
    number: str,
    snapshot: RoutingSnapshot,
    *,
    health: Mapping[str, Health] | None = None,
    now: float = 0.0,
) -> list[GatewayChoice]:
    """The gateways to try for an E.164 number, best first (see the module doc).

    Args:
        number: E.164 digits without ``+`` (from :func:`normalize_e164`).
        snapshot: the routing snapshot (its LCR index and gateways).
        health: ``health`` records by key; gateways marked down are skipped.
        now: wall-clock seconds, to tell fresh health records from stale ones.

    Returns:
        The choices in failover order; empty when no carrier has a route (or
        every gateway that has one is down).
    """
    if not number.isdigit():
        return []
    best: dict[str, tuple[str, tuple[Route, ...]]] = {}
    lcr = snapshot.lcr
    for length in range(min(len(number), E164_MAX_DIGITS), 0, -1):
        by_carrier = lcr.get(number[:length])
        if by_carrier is None:
            continue
        for carrier, routes in by_carrier.items():
            if carrier not in best:
                best[carrier] = (number[:length], routes)
    candidates = [(prefix, r) for prefix, routes in best.values() for r in routes]
    candidates.sort(key=lambda c: (c[1].priority, c[1].rate_per_minute, -c[1].weight, c[1].carrier))
    choices: list[GatewayChoice] = []
    used: set[str] = set()
    for prefix, route in candidates:
        for gw in _gateways(route, snapshot):
            if gw.id in used or (health is not None and is_down(health, gw.key, now)):
                continue
            used.add(gw.id)
            choices.append(_choice(route, gw, prefix, number))
    return choices


def _gateways(route: Route, snapshot: RoutingSnapshot) -> list[Gateway]:
    if route.gateway is None:
        return snapshot.gateways_of(route.carrier)
    gw = snapshot.gateways.get(route.gateway)
    return [gw] if gw is not None else []


def _choice(route: Route, gw: Gateway, prefix: str, number: str) -> GatewayChoice:
    return GatewayChoice(
        carrier=route.carrier,
        gateway=gw,
        prefix=prefix,
        rate_per_minute=route.rate_per_minute,
        increments=route.increments,
        currency=route.currency,
        dial=gw.dial(number),
    )


def billable_seconds(duration: float, increments: Increments) -> int:
    """The seconds a call of ``duration`` is charged for.

    The first ``first`` seconds are charged whole as soon as the call is
    answered, then each started block of ``next`` seconds: with ``(60, 60)`` a
    61 s call is 120 s; with ``(30, 6)`` it is 30 + 6 * 6 = 66 s; with ``(1, 1)``
    it is 61 s (fractions round up).

    Args:
        duration: answered seconds (0 or less: not charged).
        increments: ``(first, next)`` in seconds.
    """
    first, step = increments
    if duration <= 0:
        return 0
    if duration <= first:
        return first
    return first + math.ceil((duration - first) / step) * step


def cost(duration: float, rate: float | Decimal, increments: Increments) -> Decimal:
    """The price of a call: billable minutes times the rate per minute.

    Decimal, so that sums of many calls do not drift (``0.1 + 0.2``); the rate
    is taken through its shortest repr (``0.012`` stays 0.012). Not rounded:
    the currency's rounding is the biller's.

    Args:
        duration: answered seconds.
        rate: price per minute.
        increments: ``(first, next)`` in seconds.
    """
    per_minute = rate if isinstance(rate, Decimal) else Decimal(repr(rate))
    return per_minute * billable_seconds(duration, increments) / 60
