"""``python -m sipmesh_edge``: run one edge."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import msgspec

from sipmesh_bus.config import ConfigError, load_config
from sipmesh_bus.gcpolicy import GcPolicy
from sipmesh_bus.runtime import run_service
from sipmesh_bus.secrets import MIN_SECRET_LENGTH
from sipmesh_edge.app import Edge, EdgeConfig


def build_config(argv: list[str] | None = None) -> EdgeConfig:
    """The config from ``--config`` (or ``$SIPMESH_CONFIG``), the environment and flags.

    Raises:
        sipmesh_bus.config.ConfigError: a setting is invalid.
    """
    parser = argparse.ArgumentParser(prog="python -m sipmesh_edge", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML settings file")
    parser.add_argument("--nats-url", help="NATS URL(s), comma-separated")
    parser.add_argument("--sip-host", help="UDP listen host (replaces the udp list)")
    parser.add_argument("--sip-port", type=int, help="UDP listen port")
    parser.add_argument("--edge-id", help="this edge's id")
    parser.add_argument("--http-port", type=int, help="metrics/health port")
    args = parser.parse_args(argv)
    config = load_config(EdgeConfig, path=args.config)
    if args.nats_url:
        config = msgspec.structs.replace(
            config, nats=msgspec.structs.replace(config.nats, url=args.nats_url)
        )
    if args.sip_host or args.sip_port is not None:
        host = args.sip_host or "0.0.0.0"  # noqa: S104 - a SIP server listens on all interfaces
        host = f"[{host}]" if ":" in host else host
        port = 5060 if args.sip_port is None else args.sip_port
        config = msgspec.structs.replace(config, udp=[f"{host}:{port}"])
    if args.edge_id:
        config = msgspec.structs.replace(config, edge_id=args.edge_id)
    if args.http_port is not None:
        config = msgspec.structs.replace(
            config, http=msgspec.structs.replace(config.http, port=args.http_port)
        )
    _check_challenge(config)
    return config


def _check_challenge(config: EdgeConfig) -> None:
    """The edge's 401s are only worth sending with the registrars' nonce secret."""
    if not (config.challenge_registers and config.registrar.auth):
        return
    secret = config.registrar.nonce_secret
    if secret is not None and len(secret.encode()) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"config error: registrar.nonce_secret: shorter than {MIN_SECRET_LENGTH} bytes"
        )
    if not secret and not config.data_dir:
        # A secret of our own would sign nonces no registrar accepts.
        raise ConfigError(
            "config error: challenge_registers: needs the registrars' nonce secret "
            "(registrar.nonce_secret, or data_dir with its file)"
        )


async def main(argv: list[str] | None = None) -> None:
    """Run until SIGTERM/SIGINT."""
    edge = Edge(build_config(argv))
    try:
        await edge.start()
    except OSError as exc:
        # A taken port or an unreadable certificate: one line, exit status 2
        # (run_service), and `sipmesh up` does not restart a hopeless edge.
        raise ConfigError(f"edge: {exc.strerror or exc}") from None
    # The transaction table keeps tens of thousands of small objects alive
    # (Timer J holds each UDP REGISTER 32 s, Timers K, L, M each call's
    # transactions): the default thresholds cost about half the CPU of the
    # hot path (8.8k -> 15k REGISTER/s through the sink), and scanning those
    # objects again and again stalled the edge for up to 335 ms at 1,200
    # calls/s. So: rare scans, and what survives a scan is never scanned again.
    policy = GcPolicy(edge.service.registry, mode="young")
    policy.install()
    maintaining = asyncio.create_task(policy.maintain_forever())
    try:
        await edge.service.wait_stopped()
    finally:
        maintaining.cancel()
        policy.uninstall()
        await edge.close()


def run() -> None:
    """Console entry point."""
    run_service(main())


if __name__ == "__main__":
    run()
