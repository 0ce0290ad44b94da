"""Typed configuration: msgspec Structs filled from a YAML file and the environment.

A service describes its settings as a tree of :class:`Settings` Structs, one
section per field of the root::

    class EdgeSettings(Settings, frozen=True, kw_only=True):
        sip_host: str = "127.0.0.1"
        sip_port: Port = 5060

    class EdgeConfig(ServiceConfig, frozen=True, kw_only=True):
        edge: EdgeSettings = EdgeSettings()     # ServiceConfig brings nats: and http:

    config = load_config(EdgeConfig, path=Path("sipmesh.yaml"))

Sources, lowest priority first: the defaults in the Structs, the YAML file
(``path``, or the file named by ``$SIPMESH_CONFIG``), then environment variables.

Environment scheme: ``SIPMESH_<SECTION>_<KEY>``, upper case, e.g.
``SIPMESH_EDGE_SIP_PORT=5070`` sets ``edge.sip_port`` and ``SIPMESH_NATS_URL``
sets ``nats.url``. A root-level setting is ``SIPMESH_<KEY>``. Values are text,
converted to the setting's type (``"5070"`` -> 5070, ``"true"`` -> True); a list
setting takes comma-separated items. Variables that name no setting are ignored
(the same prefix carries ``SIPMESH_DATA_DIR``, ``SIPMESH_NATS_SERVER`` ... for the
command line), whereas an unknown key in the YAML file is an error: it is a typo.

Every problem becomes one :class:`ConfigError` line naming the setting, e.g.
``config error: edge.sip_port: Expected int >= 0, got "abc"``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, TypeAlias, TypeVar

import msgspec
import yaml
from msgspec import Meta, Struct
from msgspec import inspect as mi

__all__ = [
    "ENV_CONFIG_FILE",
    "ENV_PREFIX",
    "ConfigError",
    "HttpConfig",
    "NatsConfig",
    "PositiveFloat",
    "ServiceConfig",
    "Settings",
    "load_config",
    "redact_url",
]

ENV_PREFIX: Final = "SIPMESH"
ENV_CONFIG_FILE: Final = "SIPMESH_CONFIG"
PositiveFloat: TypeAlias = Annotated[float, Meta(gt=0)]
_Port: TypeAlias = Annotated[int, Meta(ge=0, le=65535)]
_Replicas: TypeAlias = Annotated[int, Meta(ge=1, le=5)]

C = TypeVar("C", bound=Struct)


class ConfigError(ValueError):
    """A setting is missing, unknown or invalid. ``str()`` is one line."""


class Settings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every configuration section: unknown keys are errors."""


class NatsConfig(Settings, frozen=True, kw_only=True):
    """How a service reaches NATS (section ``nats``)."""

    url: str = "nats://127.0.0.1:4222"
    #: One URL, or several separated by commas (a cluster).
    name: str | None = None
    #: Connection name shown by the NATS monitoring endpoints.
    connect_timeout: PositiveFloat = 2.0
    reconnect_wait: PositiveFloat = 0.5
    #: Seconds between reconnect attempts (forever).
    drain_timeout: PositiveFloat = 5.0
    #: On shutdown: how long in-flight requests may take before they are cancelled.
    request_timeout: PositiveFloat = 2.0
    user: str | None = None
    #: User name for NATS user/password authentication.
    password: str | None = None
    #: Its password; prefer ``password_file`` or ``$SIPMESH_NATS_PASSWORD``
    #: (never written in a YAML file under version control). Never logged.
    password_file: str | None = None
    #: A file holding the password (first line; trailing newline ignored).
    token: str | None = None
    #: NATS token authentication. Never logged.
    token_file: str | None = None
    #: A file holding the token.
    creds_file: str | None = None
    #: A NATS credentials file (operator mode: the user JWT and its nkey seed,
    #: as ``nsc generate creds`` writes it; needs the ``nkeys`` package). Read
    #: and checked at start; a replaced file is used from the next start.
    nkeys_seed_file: str | None = None
    #: An nkey seed file (``SU...``; needs the ``nkeys`` package), for a server
    #: with ``authorization { users = [ { nkey: U... } ] }``.
    tls_ca_file: str | None = None
    #: CAs that sign the server's certificate; setting it (or a client
    #: certificate) turns TLS on. ``tls://`` URLs use TLS with the system CAs.
    tls_cert_file: str | None = None
    #: Client certificate (PEM) for servers that verify clients (``verify: true``).
    tls_key_file: str | None = None
    tls_hostname: str | None = None
    #: The name to check the server certificate against, when the URL has an IP.
    jetstream_replicas: _Replicas = 1
    #: Replicas of each KV bucket and stream a service creates (3 on a 3-node
    #: JetStream cluster). Starting a service never lowers an existing one's.

    def __post_init__(self) -> None:
        pairs = (("password", "password_file"), ("token", "token_file"))
        for value, file in pairs:
            if getattr(self, value) and getattr(self, file):
                raise ValueError(f"set {value} or {file}, not both")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if (self.password or self.password_file) and not self.user:
            raise ValueError("a password needs a user")

    def __repr__(self) -> str:
        # Secrets never reach a log line through a repr of the config.
        shown = ", ".join(
            f"{name}={'<hidden>' if name in _SECRET_FIELDS else repr(getattr(self, name))}"
            for name in self.__struct_fields__
            if getattr(self, name) is not None
        )
        return f"NatsConfig({shown})"

    @property
    def safe_url(self) -> str:
        """``url`` with any ``user:password@`` or token in it replaced by ``***``."""
        return redact_url(self.url)

    @property
    def tls(self) -> bool:
        """Whether the connection uses TLS."""
        tls_url = any(u.strip().startswith("tls://") for u in self.url.split(","))
        return bool(self.tls_ca_file or self.tls_cert_file or tls_url)


_SECRET_FIELDS: Final = frozenset({"password", "token"})
_USERINFO_RE: Final = re.compile(r"(?<=://)[^@/,]*@")


def redact_url(url: str) -> str:
    """A URL (or comma-separated URLs) with the userinfo part hidden.

    ``nats://alice:s3cret@host:4222`` becomes ``nats://***@host:4222``.
    """
    return _USERINFO_RE.sub("***@", url)


class HttpConfig(Settings, frozen=True, kw_only=True):
    """The metrics/health HTTP endpoint (section ``http``)."""

    host: str = "127.0.0.1"
    #: ``0.0.0.0`` in a container, so the kubelet and Prometheus can reach it.
    port: _Port = 0
    #: 0 picks a free port (logged at start).


class ServiceConfig(Settings, frozen=True, kw_only=True):
    """The sections every service has; a service's config subclasses it."""

    nats: NatsConfig = NatsConfig()
    http: HttpConfig = HttpConfig()


def load_config(
    cls: type[C],
    *,
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    prefix: str = ENV_PREFIX,
) -> C:
    """Build ``cls`` from defaults, a YAML file and environment variables.

    Args:
        cls: the root Struct (a :class:`Settings` subclass).
        path: a YAML file; None uses ``$SIPMESH_CONFIG`` if set, else no file.
        env: the environment (default ``os.environ``).
        prefix: the environment variable prefix.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: one line naming the bad setting.
    """
    env = os.environ if env is None else env
    if path is None and env.get(ENV_CONFIG_FILE):
        path = Path(env[ENV_CONFIG_FILE])
    data: dict[str, Any] = _read_yaml(path) if path is not None else {}
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    _overlay_env(data, info, env, prefix)
    try:
        return msgspec.convert(data, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_one_line(str(exc), data, info)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config error: {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config error: {path}:{line}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config error: {path}: expected a mapping of sections at the top")
    return loaded


def _overlay_env(
    data: dict[str, Any], info: mi.StructType, env: Mapping[str, str], prefix: str
) -> None:
    start = prefix + "_"
    # Longest section first, so a section "sip_edge" wins over "sip".
    fields = sorted(info.fields, key=lambda f: len(f.name), reverse=True)
    for var, value in env.items():
        if not var.startswith(start):
            continue
        rest = var[len(start) :].lower()
        for field in fields:
            sub = _struct_of(field.type)
            if sub is not None and rest.startswith(field.name + "_"):
                key = rest[len(field.name) + 1 :]
                target = next((f for f in sub.fields if f.name == key), None)
                if target is not None:
                    section = data.setdefault(field.name, {})
                    if isinstance(section, dict):
                        section[key] = _env_value(value, target.type)
                    break
            elif sub is None and rest == field.name:
                data[field.name] = _env_value(value, field.type)
                break


def _struct_of(t: mi.Type) -> mi.StructType | None:
    if isinstance(t, mi.StructType):
        return t
    if isinstance(t, mi.UnionType):
        return next((m for m in t.types if isinstance(m, mi.StructType)), None)
    return None


def _env_value(value: str, t: mi.Type) -> object:
    if isinstance(t, mi.UnionType):
        t = next((m for m in t.types if not isinstance(m, mi.NoneType)), t)
    if isinstance(t, mi.ListType | mi.TupleType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


_MSG_RE: Final = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$")
_UNKNOWN_RE: Final = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING_RE: Final = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_GOT_RE: Final = re.compile(r"^Expected `(?P<type>[^`]*)`, got `[^`]*`$")
_PATH_PART_RE: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_SECRET_NAME_RE: Final = re.compile(r"password|passwd|token|secret|seed|creds|key", re.IGNORECASE)


def _one_line(error: str, data: dict[str, Any], info: mi.StructType) -> str:
    m = _MSG_RE.match(error)
    assert m is not None  # the pattern matches any string
    msg, raw_path = m["msg"], m["path"] or ""
    parts: list[str | int] = [
        name if name else int(index) for name, index in _PATH_PART_RE.findall(raw_path)
    ]
    if unknown := _UNKNOWN_RE.match(msg):
        return f"config error: {_dotted([*parts, unknown['name']])}: unknown setting"
    if missing := _MISSING_RE.match(msg):
        return f"config error: {_dotted([*parts, missing['name']])}: required setting is missing"
    found, raw = _lookup(data, parts)
    got = f", got {_show(raw)}" if found else ""
    secret = parts and isinstance(parts[-1], str) and _SECRET_NAME_RE.search(parts[-1])
    if secret or isinstance(raw, dict):
        got = ""  # never echo a password or token, nor a section that may hold one
    if typed := _GOT_RE.match(msg):
        msg = "Expected " + _describe(_type_at(info, parts), typed["type"])
    else:
        msg = msg.replace("`", "")
    return f"config error: {_dotted(parts) or '(top level)'}: {msg}{got}"


def _dotted(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _lookup(data: object, parts: list[str | int]) -> tuple[bool, object]:
    for part in parts:
        in_list = isinstance(part, int) and isinstance(data, list) and part < len(data)
        in_dict = isinstance(part, str) and isinstance(data, dict) and part in data
        if not (in_list or in_dict):
            return False, None
        data = data[part]  # type: ignore[index]
    return True, data


def _show(value: object) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _type_at(info: mi.Type, parts: list[str | int]) -> mi.Type | None:
    t: mi.Type | None = info
    for part in parts:
        if isinstance(t, mi.UnionType):
            t = next((m for m in t.types if not isinstance(m, mi.NoneType)), None)
        if isinstance(t, mi.StructType) and isinstance(part, str):
            t = next((f.type for f in t.fields if f.name == part), None)
        elif isinstance(t, mi.ListType) and isinstance(part, int):
            t = t.item_type
        else:
            return None
    return t


def _describe(t: mi.Type | None, fallback: str) -> str:
    """``int >= 0 and <= 65535`` for a constrained number, else msgspec's name."""
    if not isinstance(t, mi.IntType | mi.FloatType):
        return fallback
    bounds = [
        f"{op} {value}"
        for op, value in ((">=", t.ge), (">", t.gt), ("<=", t.le), ("<", t.lt))
        if value is not None
    ]
    return " and ".join([f"{fallback} {bounds[0]}", *bounds[1:]]) if bounds else fallback
