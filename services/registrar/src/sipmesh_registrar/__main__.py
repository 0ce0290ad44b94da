"""``python -m sipmesh_registrar``: run one registrar replica."""

from __future__ import annotations

import asyncio
from typing import Final

from sipmesh_bus.config import ConfigError
from sipmesh_bus.gcpolicy import GcPolicy
from sipmesh_bus.runtime import (
    Service,
    parse_service_config,
    run_service,
    serve_envelopes_until_stopped,
)
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
    config = parse_service_config(
        RegistrarConfig, argv, prog="python -m sipmesh_registrar", description=__doc__
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
        registrar = Registrar(config, svc.js, secret=secret, registry=svc.registry, wire=svc.wire)
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
            GcPolicy(svc.registry, mode="rare").install()
            await serve_envelopes_until_stopped(
                svc, registrar, (SIP_REGISTER,), queue=QUEUE_REGISTRAR
            )
        finally:
            await registrar.close()


def run() -> None:
    """Console entry point."""
    run_service(main())


if __name__ == "__main__":
    run()
