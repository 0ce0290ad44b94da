"""``python -m sipmesh_registrar``: run one registrar replica."""

from __future__ import annotations

import argparse
import asyncio
import gc
from pathlib import Path
from typing import Final

import msgspec

from sipmesh_bus.config import ConfigError, load_config
from sipmesh_bus.runtime import Service, run_service
from sipmesh_bus.schema import decode_envelope
from sipmesh_bus.secrets import load_shared_secret
from sipmesh_bus.subjects import QUEUE_REGISTRAR, SIP_REGISTER
from sipmesh_registrar.app import Registrar
from sipmesh_registrar.config import RegistrarConfig

_LOAD_TIMEOUT: Final = 60.0
#: Seconds to wait for the subscriber and location caches before serving (then
#: serve anyway).


def build_config(argv: list[str] | None = None) -> RegistrarConfig:
    """The config from ``--config`` (or ``$SIPMESH_CONFIG``), the environment and flags.

    Raises:
        ConfigError: a setting is invalid.
    """
    parser = argparse.ArgumentParser(prog="python -m sipmesh_registrar", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML settings file")
    parser.add_argument("--nats-url", help="NATS URL(s), comma-separated")
    args = parser.parse_args(argv)
    config = load_config(RegistrarConfig, path=args.config)
    if args.nats_url:
        config = msgspec.structs.replace(
            config, nats=msgspec.structs.replace(config.nats, url=args.nats_url)
        )
    secret = config.registrar.nonce_secret
    if secret is not None and len(secret.encode()) < 16:
        raise ConfigError("config error: registrar.nonce_secret: shorter than 16 bytes")
    return config


async def main(argv: list[str] | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    # A ConfigError reaches run_service: one line and exit status 2, which
    # `sipmesh up` takes as final (no restart loop on a bad setting).
    config = build_config(argv)
    secret = load_shared_secret(
        (config.registrar.nonce_secret,), data_dir=config.data_dir, owner="registrar"
    )
    async with Service("registrar", config) as svc:
        registrar = Registrar(config, svc.js, secret=secret, registry=svc.registry)
        await registrar.start()
        try:
            svc.add_readiness_check("subscribers and locations loaded", registrar.ready)
            # Serve once the subscriber table is in (else every REGISTER gets
            # 401 until it is) and the location cache (else every REGISTER of
            # a known AoR costs a retry), on a stop, or after _LOAD_TIMEOUT.
            waits = {
                asyncio.ensure_future(registrar.wait_loaded(_LOAD_TIMEOUT)),
                asyncio.ensure_future(svc.wait_stopped()),
            }
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            # Per REGISTER a few hundred short-lived objects, nearly all freed by
            # reference counting; the default thresholds run a generation-0 scan
            # every 700 allocations and, often enough, a full one over the
            # subscriber table too. Collect rarely, and never scan again what
            # start-up built (the subscribers, modules): see docs/benchmarks.md.
            gc.collect()
            gc.set_threshold(50_000, 20, 100)
            gc.freeze()
            await svc.serve(
                SIP_REGISTER,
                registrar.handle,
                queue=QUEUE_REGISTRAR,
                decode=decode_envelope,
                on_error=registrar.on_error,
            )
            await svc.wait_stopped()
        finally:
            await registrar.close()


def run() -> None:
    """Console entry point."""
    run_service(main())


if __name__ == "__main__":
    run()
