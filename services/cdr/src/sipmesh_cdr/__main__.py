"""``python -m sipmesh_cdr``: run one CDR service replica."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path

import msgspec

from sipmesh_bus.config import load_config
from sipmesh_bus.runtime import Service, run_service
from sipmesh_cdr.api import CdrApi
from sipmesh_cdr.app import CdrConsumer
from sipmesh_cdr.config import CdrConfig, store_url_of
from sipmesh_cdr.store import open_store

log = logging.getLogger("sipmesh_cdr")


def build_config(argv: list[str] | None = None) -> CdrConfig:
    """The config from ``--config`` (or ``$SIPMESH_CONFIG``), the environment and flags.

    Raises:
        ConfigError: a setting is invalid.
    """
    parser = argparse.ArgumentParser(prog="python -m sipmesh_cdr", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML settings file")
    parser.add_argument("--nats-url", help="NATS URL(s), comma-separated")
    parser.add_argument("--store-url", help="sqlite:///path or postgresql://...")
    args = parser.parse_args(argv)
    config = load_config(CdrConfig, path=args.config)
    if args.nats_url:
        config = msgspec.structs.replace(
            config, nats=msgspec.structs.replace(config.nats, url=args.nats_url)
        )
    if args.store_url:
        config = msgspec.structs.replace(
            config, cdr=msgspec.structs.replace(config.cdr, store_url=args.store_url)
        )
    return config


async def main(argv: list[str] | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    # A ConfigError reaches run_service: one line and exit status 2, which
    # `sipmesh up` takes as final (no restart loop on a bad setting).
    config = build_config(argv)
    store = open_store(store_url_of(config))
    await store.open()
    api = CdrApi(store, host=config.cdr.api_host, port=config.cdr.api_port)
    try:
        await api.start()
        log.info("cdr: CDR API on http://%s:%d/cdrs", config.cdr.api_host, api.port)
        async with Service("cdr", config) as svc:
            consumer = CdrConsumer(
                svc.js,
                store,
                config.cdr,
                registry=svc.registry,
                replicas=config.nats.jetstream_replicas,
            )
            await consumer.start()
            stopped = asyncio.Event()
            running = asyncio.create_task(consumer.run(stopped))
            await svc.wait_stopped()
            stopped.set()
            # Let the batch in hand commit and ack; what is left is redelivered.
            _, late = await asyncio.wait({running}, timeout=config.nats.drain_timeout)
            for task in late:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await api.close()
        await store.close()


def run() -> None:
    """Console entry point."""
    run_service(main())


if __name__ == "__main__":
    run()
