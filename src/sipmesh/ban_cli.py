"""``sipmesh ban list|add|del``: the bans every edge shares (the ``bans`` KV bucket).

``add`` bans an address or CIDR for ``--ttl`` seconds; every edge drops its
traffic silently within about a second. ``del`` lifts a ban (the edges let
the source in again), ``list`` shows the live bans with their reason and the
time left. Bans the edges decide themselves (rate, scanner, auth_failures)
show and can be lifted the same way.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias

from nats.js.kv import KeyValue

from sipmesh._console import format_table
from sipmesh_bus import bans

__all__ = ["BanError", "Command", "add_ban_parser", "format_remaining"]

Command: TypeAlias = Callable[[argparse.Namespace, KeyValue], Awaitable[None]]
#: A ban action, run with the ``bans`` bucket open.
Runner: TypeAlias = Callable[[Command], Callable[[argparse.Namespace], None]]

_DEFAULT_TTL: Final = 3600
_MAX_TTL: Final = 86_400
#: The bucket keeps nothing longer than a day (sipmesh_bus.kv).


class BanError(Exception):
    """A one-line error for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _ttl(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 1 <= value <= _MAX_TTL:
        raise argparse.ArgumentTypeError(f"--ttl must be 1 to {_MAX_TTL} seconds, got {value}")
    return value


def add_ban_parser(sub: Any, common: argparse.ArgumentParser, run: Runner) -> None:
    """Add ``ban list|add|del`` to the ``sipmesh`` parser.

    Args:
        sub: the top-level subparsers action.
        common: the parent parser with ``--data-dir`` and ``--nats-url``.
        run: wraps a :data:`Command` into an argparse handler (opens the bucket).
    """
    ban = sub.add_parser("ban", help="list, add and lift bans of source addresses")
    actions = ban.add_subparsers(dest="ban_command", required=True, metavar="ACTION")
    ls = actions.add_parser("list", parents=[common], help="live bans, with reason and time left")
    ls.set_defaults(run=run(_list))
    add = actions.add_parser(
        "add",
        parents=[common],
        help="ban an address or CIDR on every edge",
        description="Ban TARGET (an IPv4/IPv6 address or CIDR) on every edge for --ttl "
        "seconds; its traffic is dropped without an answer. Banning a target again "
        "replaces its ban.",
    )
    add.add_argument("target", metavar="TARGET", help="203.0.113.9, 203.0.113.0/24, 2001:db8::/32")
    add.add_argument(
        "--ttl",
        type=_ttl,
        default=_DEFAULT_TTL,
        help=f"seconds (default {_DEFAULT_TTL}, max 1 day)",
    )
    add.add_argument("--reason", default="manual", help="shown by `ban list` (default: manual)")
    add.set_defaults(run=run(_add))
    rm = actions.add_parser("del", parents=[common], help="lift a ban")
    rm.add_argument("target", metavar="TARGET", help="the address or CIDR, as banned")
    rm.set_defaults(run=run(_del))


def format_remaining(seconds: int) -> str:
    """``45s``, ``12m05s``, ``3h02m``."""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _target(text: str) -> str:
    try:
        return bans.canonical_target(text)
    except ValueError as exc:
        raise BanError(str(exc), code=2) from None


async def _list(_args: argparse.Namespace, bucket: KeyValue) -> None:
    now = time.time()
    found = await bans.read_bans(bucket, now)
    if not found:
        print("no bans")
        return
    rows = [
        (b.target, b.reason, f"in {format_remaining(b.remaining(now))}", b.source or "-")
        for b in found
    ]
    print(format_table(("TARGET", "REASON", "EXPIRES", "BY"), rows))


async def _add(args: argparse.Namespace, bucket: KeyValue) -> None:
    target = _target(args.target)
    reason = " ".join(str(args.reason).split()) or "manual"
    now = time.time()
    ban = bans.Ban(
        target=target, reason=reason, created_at=now, expires_at=now + args.ttl, source="cli"
    )
    await bans.put_ban(bucket, ban, now=now)
    print(f"banned {target} for {format_remaining(args.ttl)} ({reason})")


async def _del(args: argparse.Namespace, bucket: KeyValue) -> None:
    target = _target(args.target)
    if not await bans.delete_ban(bucket, target):
        raise BanError(f"no ban on {target}")
    print(f"lifted the ban on {target}")
