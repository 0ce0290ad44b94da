"""``python -m sipmesh_media``: run one media replica (RTPEngine control over NATS)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import msgspec

from sipmesh_bus.config import ConfigError, load_config
from sipmesh_bus.runtime import Service, run_service
from sipmesh_media.app import MediaService, serve
from sipmesh_media.config import MediaConfig
from sipmesh_media.local import (
    NOT_FOUND_MESSAGE,
    LocalRtpEngine,
    LocalRtpEngineError,
    find_binary,
)
from sipmesh_media.pool import Instance

log = logging.getLogger("sipmesh_media")


def build_config(argv: list[str] | None = None) -> MediaConfig:
    """The config from ``--config`` (or ``$SIPMESH_CONFIG``), the environment and flags.

    Raises:
        ConfigError: a setting is invalid.
    """
    parser = argparse.ArgumentParser(prog="python -m sipmesh_media", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML settings file")
    parser.add_argument("--nats-url", help="NATS URL(s), comma-separated")
    parser.add_argument(
        "--local-rtpengine",
        action="store_true",
        help="start a local rtpengine child process (when installed)",
    )
    args = parser.parse_args(argv)
    config = load_config(MediaConfig, path=args.config)
    if args.nats_url:
        config = msgspec.structs.replace(
            config, nats=msgspec.structs.replace(config.nats, url=args.nats_url)
        )
    if args.local_rtpengine:
        config = msgspec.structs.replace(
            config, media=msgspec.structs.replace(config.media, local_rtpengine=True)
        )
    try:
        config.media.pool_instances()
    except ValueError as exc:
        raise ConfigError(f"config error: {exc}") from None
    return config


async def _start_local(config: MediaConfig) -> LocalRtpEngine | None:
    settings = config.media
    binary = find_binary(settings.local_binary)
    if binary is None:
        log.warning("%s", NOT_FOUND_MESSAGE)
        return None
    engine = LocalRtpEngine(
        binary=binary,
        data_dir=Path(settings.data_dir) if settings.data_dir else None,
        interface=settings.local_interface,
        port_min=settings.local_port_min,
        port_max=settings.local_port_max,
    )
    try:
        await engine.start()
    except LocalRtpEngineError as exc:
        log.warning("%s; running without media anchoring", exc)
        return None
    log.info(
        "media: local rtpengine %s on ng %s:%d, RTP %s:%d-%d (log %s)",
        binary,
        engine.ng_host,
        engine.ng_port,
        engine.interface,
        engine.port_min,
        engine.port_max,
        engine.log_path,
    )
    return engine


async def main(argv: list[str] | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    # A ConfigError reaches run_service: one line and exit status 2, which
    # `sipmesh up` takes as final (no restart loop on a bad setting).
    config = build_config(argv)
    local = await _start_local(config) if config.media.local_rtpengine else None
    try:
        instances: list[Instance] = config.media.pool_instances()
        if local is not None:
            instances.append(local.instance)
        elif not instances and not config.media.local_rtpengine:
            log.warning("no rtpengine instance configured: running without media anchoring")
        async with Service("media", config) as svc:
            media = MediaService(config.media, instances=instances, registry=svc.registry)
            await media.start()
            try:
                await serve(svc, media)
                await svc.wait_stopped()
            finally:
                await media.close()
    finally:
        if local is not None:
            await local.stop()


def run() -> None:
    """Console entry point."""
    run_service(main())


if __name__ == "__main__":
    run()
