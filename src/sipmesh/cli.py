"""The ``sipmesh`` command.

Exit codes: 0 success (and a clean stop on SIGTERM/Ctrl-C), 1 a runtime problem
(a port taken, NATS unreachable), 2 a usage or configuration error. Every error
is one line on stderr.

Environment: ``SIPMESH_DATA_DIR`` (default ``./.sipmesh``) and ``SIPMESH_NATS_URL``
are the defaults of ``--data-dir`` and ``--nats-url``. Without a NATS URL, every
subcommand but ``up`` connects to the server a running ``sipmesh up`` announced
in ``DATA_DIR/nats.url``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

from sipmesh.services import SERVICES, ServiceSpec
from sipmesh.up import UpError, UpSettings, nats_url_file, run_up
from sipmesh_bus.config import ConfigError
from sipmesh_bus.kv import JetStreamTooOldError
from sipmesh_bus.natsserver import NatsServerError, find_nats_server, nats_server_version
from sipmesh_bus.runtime import run_service

__all__ = ["CliError", "build_parser", "main", "resolve_nats_url"]


class CliError(Exception):
    """A one-line error for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("SIPMESH_DATA_DIR", ".sipmesh")),
        help="state directory (default: $SIPMESH_DATA_DIR or ./.sipmesh)",
    )
    common.add_argument(
        "--nats-url",
        default=os.environ.get("SIPMESH_NATS_URL") or None,
        help="NATS server URL (default: $SIPMESH_NATS_URL, else the one `sipmesh up` runs)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and shell completion)."""
    common = _common()
    parser = argparse.ArgumentParser(prog="sipmesh", description="sipmesh SIP platform")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[common], help="run NATS and every service on this machine")
    up.add_argument("--sip-host", default="127.0.0.1", help="SIP listen address")
    up.add_argument("--sip-port", type=_port, default=5060, help="SIP port (UDP and TCP)")
    up.add_argument("--domain", default="localhost", help="the SIP domain served")
    up.add_argument("--http-host", default="127.0.0.1", help="health/metrics address")
    up.add_argument(
        "--http-port", type=_port, default=0, help="health/metrics port (0: pick a free one)"
    )
    up.add_argument("--nats-host", default="127.0.0.1", help="embedded NATS address")
    up.add_argument(
        "--nats-port", type=_port, default=4222, help="embedded NATS port (0: pick a free one)"
    )

    sub.add_parser("version", parents=[common], help="print versions")
    for spec in SERVICES:
        sub.add_parser(spec.name, parents=[common], help=f"run the {spec.name} ({spec.help})")
    return parser


def resolve_nats_url(nats_url: str | None, data_dir: Path) -> str:
    """The NATS URL a subcommand other than ``up`` should use.

    Args:
        nats_url: ``--nats-url`` (or ``$SIPMESH_NATS_URL``), if given.
        data_dir: where ``sipmesh up`` wrote ``nats.url``.

    Returns:
        The URL.

    Raises:
        CliError: neither given nor announced by a running ``sipmesh up``.
    """
    if nats_url:
        return nats_url
    try:
        return nats_url_file(data_dir).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise CliError(
            f"no NATS URL: pass --nats-url, set SIPMESH_NATS_URL, or start `sipmesh up` "
            f"(none is running with data dir {data_dir})"
        ) from None


def _cmd_up(args: argparse.Namespace) -> None:
    settings = UpSettings(
        data_dir=args.data_dir,
        nats_url=args.nats_url,
        nats_host=args.nats_host,
        nats_port=args.nats_port,
        sip_host=args.sip_host,
        sip_port=args.sip_port,
        domain=args.domain,
        http_host=args.http_host,
        http_port=args.http_port,
    )
    run_service(run_up(settings))


def _cmd_version(_args: argparse.Namespace) -> None:
    print(f"sipmesh {importlib.metadata.version('sipmesh')}")
    print(f"python {sys.version.split()[0]}")
    try:
        binary = find_nats_server()
    except NatsServerError as exc:
        print(f"nats-server: {exc}")
    else:
        print(f"nats-server {'.'.join(map(str, nats_server_version(binary)))} ({binary})")


def _cmd_service(spec: ServiceSpec, args: argparse.Namespace) -> None:
    if not spec.is_available():
        raise CliError(f"{spec.name} is not there yet (no module {spec.module}.__main__)")
    os.environ["SIPMESH_NATS_URL"] = resolve_nats_url(args.nats_url, args.data_dir)
    os.environ["SIPMESH_DATA_DIR"] = str(args.data_dir)
    runpy.run_module(spec.module, run_name="__main__", alter_sys=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sipmesh`` command.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status (the console script passes it to ``sys.exit``).
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            _cmd_up(args)
        elif args.command == "version":
            _cmd_version(args)
        else:
            spec = next(s for s in SERVICES if s.name == args.command)
            _cmd_service(spec, args)
    except ConfigError as exc:
        print(f"sipmesh: {exc}", file=sys.stderr)
        return 2
    except (CliError, UpError, NatsServerError, JetStreamTooOldError) as exc:
        print(f"sipmesh: error: {exc}", file=sys.stderr)
        return getattr(exc, "code", 1)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
