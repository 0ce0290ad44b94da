"""``python -m sipmesh_registrar``: run one registrar replica."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from sipmesh_bus.config import ConfigError, load_config
from sipmesh_bus.runtime import Service, run_service
from sipmesh_bus.schema import decode_envelope
from sipmesh_bus.subjects import QUEUE_REGISTRAR, SIP_REGISTER
from sipmesh_registrar.app import Registrar
from sipmesh_registrar.config import RegistrarConfig, load_nonce_secret


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
    try:
        config = build_config(argv)
    except ConfigError as exc:
        sys.exit(str(exc))
    secret = load_nonce_secret(config)
    async with Service("registrar", config) as svc:
        registrar = Registrar(config, svc.js, secret=secret, registry=svc.registry)
        await registrar.start()
        try:
            svc.add_readiness_check("subscribers loaded", registrar.ready)
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
