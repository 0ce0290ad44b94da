"""Helpers of the router's shell tests that share one nats-server (test_app*)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

_ids = itertools.count()


def fresh(prefix: str) -> str:
    """A name no other test of this process uses (users, Call-IDs on the shared server)."""
    return f"{prefix}{next(_ids)}x{id(object())}"


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait up to ~3 s for ``check`` (a KV watch to deliver); fail naming ``what``."""
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)
