"""``python -m sipmesh_router``: run one router replica."""

from __future__ import annotations

from sipmesh_bus.config import ConfigError
from sipmesh_bus.gcpolicy import GcPolicy
from sipmesh_bus.runtime import (
    Service,
    parse_service_config,
    run_service,
    serve_envelopes_until_stopped,
)
from sipmesh_bus.subjects import QUEUE_ROUTER, SIP_ROUTE, SIP_ROUTE_RESPONSE
from sipmesh_router.app import Router
from sipmesh_router.config import RouterConfig, load_secret, make_policy


def build_config(argv: list[str] | None = None) -> RouterConfig:
    """The config from ``--config`` (or ``$SIPMESH_CONFIG``), the environment and flags.

    Raises:
        ConfigError: a setting is invalid.
    """
    config = parse_service_config(
        RouterConfig, argv, prog="python -m sipmesh_router", description=__doc__
    )
    secret = config.router.nonce_secret
    if secret is not None and len(secret.encode()) < 16:
        raise ConfigError("config error: router.nonce_secret: shorter than 16 bytes")
    try:
        make_policy(config.router, b"")
    except ValueError as exc:
        raise ConfigError(f"config error: {exc}") from None
    return config


async def main(argv: list[str] | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    # A ConfigError reaches run_service: one line and exit status 2, which
    # `sipmesh up` takes as final (no restart loop on a bad setting).
    config = build_config(argv)
    secret = load_secret(config)
    async with Service("router", config) as svc:
        router = Router(
            config, svc.js, secret=secret, registry=svc.registry, nc=svc.nc, wire=svc.wire
        )
        await router.start()
        try:
            svc.add_readiness_check("caches loaded", router.ready)
            # Per message a few hundred short-lived objects, nearly all freed
            # by reference counting; the default thresholds scan generation 0
            # every 700 allocations and the older ones (the watched caches,
            # the modules) often enough. Collect rarely, and never scan again
            # what start-up built, as the edge and the registrar do.
            GcPolicy(svc.registry, mode="rare").install()
            await serve_envelopes_until_stopped(
                svc, router, (SIP_ROUTE, SIP_ROUTE_RESPONSE), queue=QUEUE_ROUTER
            )
        finally:
            await router.close()


def run() -> None:
    """Console entry point."""
    run_service(main())


if __name__ == "__main__":
    run()
