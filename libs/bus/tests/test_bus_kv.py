"""sipmesh_bus.kv: the bucket/stream table and the server-version guard (no network)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError

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


class _ExistingJs(_FakeJs):
    """Every bucket and stream already exists with ``existing`` replicas."""

    def __init__(self, existing: int) -> None:
        super().__init__(5)
        self.existing = existing
        self.updated: dict[str, int | None] = {}

    async def create_key_value(self, config: Any) -> None:
        raise BadRequestError(code=400, err_code=10058, description="name already in use")

    async def add_stream(self, config: Any) -> None:
        raise BadRequestError(code=400, err_code=10058, description="name already in use")

    async def stream_info(self, name: str) -> Any:
        return SimpleNamespace(config=StreamConfig(name=name, num_replicas=self.existing))

    async def update_stream(self, config: StreamConfig) -> None:
        assert config.name is not None
        self.updated[config.name] = config.num_replicas


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


@pytest.mark.parametrize(
    ("existing", "asked", "target"),
    [(1, 1, 1), (3, 1, 3), (3, 3, 3), (1, 3, 3), (5, 3, 5), (None, 1, 1), (None, 3, 3)],
)
def test_target_replicas_never_lowers(existing: int | None, asked: int, target: int) -> None:
    assert kv._target_replicas(existing, asked) == target


def _all_names() -> set[str]:
    return {f"KV_{b.bucket}" for b in kv.BUCKETS} | {str(s.name) for s in kv.STREAMS}


async def test_ensure_jetstream_keeps_higher_replicas_of_existing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A 3-node cluster where everything is R3, and a service starts with the default.
    js = _ExistingJs(3)
    with caplog.at_level("INFO", logger="sipmesh_bus.kv"):
        await kv.ensure_jetstream(cast(JetStreamContext, js), replicas=1)
    assert js.updated == dict.fromkeys(_all_names(), 3)
    kept = [r for r in caplog.records if "never lowered" in r.getMessage()]
    assert len(kept) == 1  # one line for the whole call
    assert "CALLS (R3)" in kept[0].getMessage()


async def test_ensure_jetstream_raises_lower_replicas_of_existing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    js = _ExistingJs(1)
    with caplog.at_level("INFO", logger="sipmesh_bus.kv"):
        await kv.ensure_jetstream(cast(JetStreamContext, js), replicas=3)
    assert js.updated == dict.fromkeys(_all_names(), 3)
    assert not [r for r in caplog.records if "never lowered" in r.getMessage()]
