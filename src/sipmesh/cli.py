"""The ``sipmesh`` command.

Exit codes: 0 success (and a clean stop on SIGTERM/Ctrl-C), 1 a runtime problem
(a port taken, NATS unreachable), 2 a usage or configuration error. Every error
is one line on stderr.

Environment: ``SIPMESH_DATA_DIR`` (default ``./.sipmesh``) and ``SIPMESH_NATS_URL``
are the defaults of ``--data-dir`` and ``--nats-url``. Without a NATS URL, every
subcommand but ``up`` connects to the server a running ``sipmesh up`` announced
in ``DATA_DIR/nats.url``. The ``user`` commands take their default domain from
``--domain``, else ``SIPMESH_DOMAIN``, else the ``--domain`` of the last
``sipmesh up`` (``DATA_DIR/domain``).

Provisioning: ``user add|del|list|import`` edit the ``subscribers`` bucket (HA1s
only, never a password); ``registrations`` lists the live bindings of the
``location`` bucket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import getpass
import importlib.metadata
import os
import runpy
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from sipmesh import ban_cli, cdr_cli, routing_cli, users
from sipmesh import registrations as regs
from sipmesh._console import Progress, format_table
from sipmesh.services import SERVICES, ServiceSpec
from sipmesh.up import UpError, UpSettings, domain_file, nats_url_file, run_up
from sipmesh_bus import kv
from sipmesh_bus.config import ConfigError, NatsConfig, redact_url
from sipmesh_bus.kv import JetStreamTooOldError
from sipmesh_bus.natsserver import NatsServerError, find_nats_server, nats_server_version
from sipmesh_bus.runtime import connect, run_service

__all__ = ["CliError", "build_parser", "main", "resolve_domain", "resolve_nats_url"]

_CONNECT_TIMEOUT = 2.0
_REQUEST_TIMEOUT = 5.0


class CliError(Exception):
    """A one-line error for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _edge_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"edges out of range 1-64: {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _common() -> _Parser:
    common = _Parser(add_help=False)
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
    parser = _Parser(prog="sipmesh", description="sipmesh SIP platform")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[common], help="run NATS and every service on this machine")
    up.add_argument("--sip-host", default="127.0.0.1", help="SIP listen address")
    up.add_argument("--sip-port", type=_port, default=5060, help="SIP port (UDP and TCP)")
    up.add_argument("--tls-port", type=_port, help="SIP over TLS port (default SIP+1; 0: off)")
    up.add_argument("--ws-port", type=_port, help="SIP over WebSocket port (default SIP+2; 0: off)")
    up.add_argument("--tls-cert", type=Path, help="PEM certificate (default: self-signed)")
    up.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    up.add_argument(
        "--edges",
        type=_edge_count,
        default=1,
        help="edge processes sharing the SIP ports (SO_REUSEPORT; one per core)",
    )
    up.add_argument("--domain", default="localhost", help="the SIP domain served")
    up.add_argument("--http-host", default="127.0.0.1", help="health/metrics address")
    up.add_argument(
        "--http-port", type=_port, default=0, help="health/metrics port (0: pick a free one)"
    )
    up.add_argument("--nats-host", default="127.0.0.1", help="embedded NATS address")
    up.add_argument(
        "--nats-port", type=_port, default=4222, help="embedded NATS port (0: pick a free one)"
    )

    up.set_defaults(run=_cmd_up)
    sub.add_parser("version", parents=[common], help="print versions").set_defaults(
        run=_cmd_version
    )
    _add_user_parsers(sub, common)
    reg = sub.add_parser(
        "registrations",
        parents=[common],
        help="list live registrations",
        description="List the live bindings of the location bucket (expired ones never show).",
    )
    reg.add_argument("--user", help="only this user (USER or USER@DOMAIN)")
    reg.set_defaults(run=_sync(_cmd_registrations))
    routing_cli.add_parsers(sub, common, _routing)
    ban_cli.add_ban_parser(sub, common, _bans)
    for spec in SERVICES:
        sub.add_parser(
            spec.name, parents=[common], help=f"run the {spec.name} ({spec.help})"
        ).set_defaults(run=functools.partial(_cmd_service, spec))
    cdr_cli.add_cdr_parser(sub, common)
    return parser


_DOMAIN_HELP = "the domain (default: $SIPMESH_DOMAIN, else the one of `sipmesh up`)"


def _add_user_parsers(sub: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    user = sub.add_parser("user", help="add, remove, list and import users")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    add = user_sub.add_parser(
        "add",
        parents=[common],
        help="add a user or change its password",
        description="Store the user's digest HA1s (MD5 and SHA-256, realm = domain); "
        "the password itself is stored nowhere.",
    )
    add.add_argument("name", metavar="NAME", help="USER or USER@DOMAIN")
    add.add_argument(
        "--password",
        help="the password; '-' reads one line from stdin (keeps it out of ps); "
        "omitted on a terminal: asked for",
    )
    add.add_argument("--domain", help=_DOMAIN_HELP)
    add.set_defaults(run=_sync(_cmd_user_add))

    rm = user_sub.add_parser("del", parents=[common], help="remove a user (and its old HA1s)")
    rm.add_argument("name", metavar="NAME", help="USER or USER@DOMAIN")
    rm.add_argument("--domain", help=_DOMAIN_HELP)
    rm.set_defaults(run=_sync(_cmd_user_del))

    ls = user_sub.add_parser("list", parents=[common], help="list users (never their HA1s)")
    ls.add_argument("--domain", help="only this domain (default: all)")
    ls.set_defaults(run=_sync(_cmd_user_list))

    imp = user_sub.add_parser(
        "import",
        parents=[common],
        help="add or update users from a file",
        description="Add or update the users of FILE. Formats: SIPp injection "
        "(user;password[;domain], after an optional SEQUENTIAL/RANDOM/USER line) or "
        "CSV (user,password[,domain], after an optional header line). The whole file "
        "is checked first: one bad line imports nothing and is named with its line "
        "number (exit 2). Importing again is safe: each user's record is replaced.",
    )
    imp.add_argument("file", metavar="FILE", type=Path, help="the users file ('-': stdin)")
    imp.add_argument("--domain", help="for lines that name no domain; " + _DOMAIN_HELP[4:])
    imp.set_defaults(run=_sync(_cmd_user_import))


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


def resolve_domain(domain: str | None, data_dir: Path) -> str:
    """The default domain of the ``user`` commands.

    Args:
        domain: ``--domain``, if given.
        data_dir: where ``sipmesh up`` recorded its domain.

    Returns:
        The canonical domain: ``domain``, else ``$SIPMESH_DOMAIN``, else the
        domain of the last ``sipmesh up`` with this data dir.

    Raises:
        CliError: none of them (exit 2).
        users.InputError: not a valid domain.
    """
    given = domain or os.environ.get("SIPMESH_DOMAIN")
    if not given:
        with contextlib.suppress(FileNotFoundError):
            given = domain_file(data_dir).read_text(encoding="utf-8").strip()
    if not given:
        raise CliError(
            f"no domain: pass --domain, set SIPMESH_DOMAIN, or run `sipmesh up --domain ...` "
            f"once with data dir {data_dir}",
            code=2,
        )
    return users.canonical_domain(given)


def _sync(
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
) -> Callable[[argparse.Namespace], None]:
    """Run an async command to completion."""

    def run(args: argparse.Namespace) -> None:
        asyncio.run(command(args))

    return run


def _routing(command: routing_cli.Command) -> Callable[[argparse.Namespace], None]:
    """Run a ``routing_cli`` command with the ``routing`` bucket open."""

    async def run(args: argparse.Namespace) -> None:
        async with _buckets(args, kv.BUCKET_ROUTING) as (bucket,):
            try:
                await command(args, bucket)
            except routing_cli.RoutingError as exc:
                raise CliError(str(exc), exc.code) from None

    return _sync(run)


def _bans(command: ban_cli.Command) -> Callable[[argparse.Namespace], None]:
    """Run a ``ban_cli`` command with the ``bans`` bucket open."""

    async def run(args: argparse.Namespace) -> None:
        async with _buckets(args, kv.BUCKET_BANS) as (bucket,):
            try:
                await command(args, bucket)
            except ban_cli.BanError as exc:
                raise CliError(str(exc), exc.code) from None

    return _sync(run)


@contextlib.asynccontextmanager
async def _buckets(args: argparse.Namespace, *names: str) -> AsyncIterator[list[KeyValue]]:
    """The named KV buckets of the NATS the arguments point to.

    NATS failures, there or in the body, become one-line :class:`CliError`.
    """
    url = resolve_nats_url(args.nats_url, args.data_dir)
    config = NatsConfig(url=url, connect_timeout=_CONNECT_TIMEOUT, reconnect_wait=0.2)
    try:
        nc = await connect(config, name="sipmesh-cli", forever=False)
    except Exception as exc:
        raise CliError(f"cannot reach NATS at {redact_url(url)}: {_detail(exc)}") from None
    try:
        js = nc.jetstream(timeout=_REQUEST_TIMEOUT)
        found = []
        for name in names:
            try:
                found.append(await js.key_value(name))
            except nats.js.errors.BucketNotFoundError:
                raise CliError(
                    f"NATS at {redact_url(url)} has no KV bucket {name!r}: start `sipmesh up` once "
                    "(it creates the buckets)"
                ) from None
        yield found
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise CliError(f"NATS at {redact_url(url)} failed: {_detail(exc)}") from None
    finally:
        await nc.close()


def _detail(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text or type(exc).__name__


def _read_password(args: argparse.Namespace) -> str:
    if args.password == "-":  # noqa: S105 - the stdin marker, not a password
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if args.password is not None:
        return str(args.password)
    if not sys.stdin.isatty():
        raise CliError("no password: pass --password PW, or --password - to read stdin", code=2)
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise CliError("the passwords differ", code=2)
    return first


def _user_and_domain(args: argparse.Namespace) -> tuple[str, str]:
    user, domain = users.split_name(args.name, args.domain)
    return user, domain or resolve_domain(None, args.data_dir)


async def _cmd_user_add(args: argparse.Namespace) -> None:
    user, domain = _user_and_domain(args)
    record = users.make_subscriber(user, domain, _read_password(args))
    async with _buckets(args, kv.BUCKET_SUBSCRIBERS) as (bucket,):
        existed = await users.get_subscriber(bucket, user, domain) is not None
        await users.put_subscribers(bucket, [record])
    print(f"{'updated' if existed else 'added'} {user}@{domain}")


async def _cmd_user_del(args: argparse.Namespace) -> None:
    user, domain = _user_and_domain(args)
    async with _buckets(args, kv.BUCKET_SUBSCRIBERS) as (bucket,):
        if not await users.delete_subscriber(bucket, user, domain):
            raise CliError(f"no user {user}@{domain}")
    print(f"deleted {user}@{domain}")


async def _cmd_user_list(args: argparse.Namespace) -> None:
    domain = users.canonical_domain(args.domain) if args.domain else None
    async with _buckets(args, kv.BUCKET_SUBSCRIBERS) as (bucket,):
        found = await users.read_subscribers(bucket, domain=domain)
    if not found:
        print("no users" + (f" in {domain}" if domain else ""), file=sys.stderr)
        return
    rows = [(s.user, s.domain, "yes" if s.enabled else "no") for s in found]
    print(format_table(("USER", "DOMAIN", "ENABLED"), rows))


def _read_users_file(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}", code=2) from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text", code=2) from None


async def _cmd_user_import(args: argparse.Namespace) -> None:
    source = "stdin" if str(args.file) == "-" else str(args.file)
    text = _read_users_file(args.file)
    try:
        default: str | None = resolve_domain(args.domain, args.data_dir)
    except CliError:
        default = None  # fine while every line names its domain
    rows = users.parse_users_csv(text, source=source, domain=default)
    if not rows:
        raise CliError(f"{source}: no users in it", code=2)
    records = [users.make_subscriber(r.user, r.domain, r.password) for r in rows]
    progress = Progress("importing", len(records), sys.stderr) if sys.stderr.isatty() else None
    started = time.monotonic()
    async with _buckets(args, kv.BUCKET_SUBSCRIBERS) as (bucket,):
        try:
            await users.put_subscribers(
                bucket, records, progress=progress.update if progress else None
            )
        finally:
            if progress is not None:
                progress.close()
    took = time.monotonic() - started
    print(f"imported {len(records)} users from {source} in {took:.1f} s")


async def _cmd_registrations(args: argparse.Namespace) -> None:
    user, domain = users.split_name(args.user, None) if args.user else (None, None)
    async with _buckets(args, kv.BUCKET_LOCATION) as (bucket,):
        sets = await regs.read_binding_sets(bucket, user=user, domain=domain)
    found = regs.registrations(sets, time.time())
    if not found:
        print("no live registrations" + (f" of {args.user}" if args.user else ""), file=sys.stderr)
        return
    rows = [
        (r.aor, r.contact, r.source, f"in {r.expires_in} s", r.edge_id, r.user_agent or "-")
        for r in found
    ]
    headers = ("AOR", "CONTACT", "SOURCE", "EXPIRES", "EDGE", "USER AGENT")
    print(format_table(headers, rows))


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
        tls_port=args.tls_port,
        ws_port=args.ws_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        edges=args.edges,
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
        args.run(args)
    except ConfigError as exc:
        print(f"sipmesh: {exc}", file=sys.stderr)
        return 2
    except users.InputError as exc:
        print(f"sipmesh: error: {exc}", file=sys.stderr)
        return 2
    except (CliError, UpError, NatsServerError, JetStreamTooOldError) as exc:
        print(f"sipmesh: error: {exc}", file=sys.stderr)
        return getattr(exc, "code", 1)
    except KeyboardInterrupt:
        # up stops cleanly on Ctrl-C; anything else was cut short.
        return 0 if args.command == "up" else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
