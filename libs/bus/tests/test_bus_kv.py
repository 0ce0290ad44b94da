"""sipmesh_bus.kv: the bucket/stream table and the server-version guard (no network)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from nats.js import JetStreamContext

from sipmesh_bus import kv, subjects


class _FakeJs:
    def __init__(self, level: int | None) -> None:
        self.level = level
        self.created: list[str] = []

    async def account_info(self) -> Any:
        return SimpleNamespace(api=SimpleNamespace(level=self.level))

    async def create_key_value(self, config: Any) -> None:
        self.created.append(config.bucket)

    async def add_stream(self, config: Any) -> None:
        self.created.append(config.name)


@pytest.mark.parametrize("level", [None, 0])
async def test_ensure_jetstream_refuses_servers_without_per_key_ttl(level: int | None) -> None:
    js = _FakeJs(level)
    with pytest.raises(kv.JetStreamTooOldError) as exc_info:
        await kv.ensure_jetstream(cast(JetStreamContext, js))
    message = str(exc_info.value)
    assert "2.11" in message
    assert "\n" not in message
    assert js.created == []


async def test_ensure_jetstream_creates_all_on_a_new_server() -> None:
    js = _FakeJs(5)
    await kv.ensure_jetstream(cast(JetStreamContext, js))
    assert js.created == [b.bucket for b in kv.BUCKETS] + [s.name for s in kv.STREAMS]


def test_buckets_cover_the_architecture() -> None:
    assert {b.bucket for b in kv.BUCKETS} == {
        "location",
        "subscribers",
        "routing",
        "health",
        "dialogs",
        "bans",
        "nonces",
    }
    assert all(b.history >= 1 for b in kv.BUCKETS)


def test_calls_stream_captures_call_events() -> None:
    calls = next(s for s in kv.STREAMS if s.name == kv.STREAM_CALLS)
    assert calls.subjects == [subjects.CALL_EVENTS]
