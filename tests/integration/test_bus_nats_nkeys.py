"""NATS nkey and credentials-file (operator mode) authentication, on real nats-servers.

A service holds two NATS connections (nats-py for JetStream and KV, the wire
client for request/reply); both must sign the server's nonce with the same
nkey. Each test builds its keys here: a user nkey for ``nkeys_seed_file``, and
for ``creds_file`` an operator, an account and a user with their JWTs (NATS JWT
v2: header ``{"typ":"JWT","alg":"ed25519-nkey"}``, the claims, and the issuer's
ed25519 signature over ``header.claims``, each part base64url without padding),
loaded by a nats-server with ``resolver: MEMORY``. Wrong keys must fail in one
line that never shows a seed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nkeys  # type: ignore[import-untyped]
import pytest

from sipmesh_bus.config import ConfigError, NatsConfig, ServiceConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.runtime import NatsAuthError, Service, connect, security_options
from sipmesh_bus.wire import Reply, WireAuthError, WireClient

pytestmark = pytest.mark.integration


# -- keys, JWTs and files -------------------------------------------------------------


class _Key:
    """An nkey pair: ``seed`` (``S...``, secret) and ``public`` (``U...``, ``A...``, ``O...``)."""

    def __init__(self, prefix: int) -> None:
        self.seed: bytes = nkeys.encode_seed(os.urandom(32), prefix)
        self.public: str = nkeys.from_seed(bytearray(self.seed)).public_key.decode()

    def sign(self, data: bytes) -> bytes:
        signature: bytes = nkeys.from_seed(bytearray(self.seed)).sign(data)
        return signature


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _encode_jwt(*, issuer: _Key, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS v2 JWT for ``subject``, signed by ``issuer``."""
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public,
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    # jti: a unique id, the hash of the other claims (base32, no padding).
    digest = hashlib.new("sha512_256", json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    header = _b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64url(json.dumps(claims).encode())
    signature = _b64url(issuer.sign(f"{header}.{body}".encode()))
    return f"{header}.{body}.{signature}"


def _operator_jwt(operator: _Key, *, system_account: str) -> str:
    nats = {"type": "operator", "system_account": system_account}
    return _encode_jwt(issuer=operator, subject=operator.public, name="op", nats=nats)


_UNLIMITED: dict[str, Any] = {
    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
    "wildcards": True, "conn": -1, "leaf": -1,
}  # fmt: skip
_JETSTREAM_UNLIMITED: dict[str, Any] = {
    "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
}  # fmt: skip


def _account_jwt(operator: _Key, account: _Key, *, name: str, jetstream: bool) -> str:
    limits = {**_UNLIMITED, **(_JETSTREAM_UNLIMITED if jetstream else {})}
    nats = {
        "type": "account",
        "limits": limits,
        "default_permissions": {"pub": {}, "sub": {}},
    }
    return _encode_jwt(issuer=operator, subject=account.public, name=name, nats=nats)


def _user_jwt(account: _Key, user: _Key) -> str:
    nats = {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}
    return _encode_jwt(issuer=account, subject=user.public, name="svc", nats=nats)


def _creds_text(jwt: str, seed: bytes) -> str:
    """The ``.creds`` layout that ``nsc generate creds`` writes."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed.decode()}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def _secret_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


# -- a nats-server started from a config file ---------------------------------------------


def _server(tmp: Path, auth: str) -> NatsServer:
    """A started nats-server with JetStream and ``auth`` (config-file text)."""
    server = NatsServer(store_dir=tmp / "nats", config=auth)
    server.start()
    return server


def _log_text(server: NatsServer) -> str:
    return server.log_path.read_text(encoding="utf-8")


# -- what every service does on a connection ------------------------------------------------


async def _echo(request: bytes) -> bytes:
    return b"echo:" + request


async def _exercise(svc: Service) -> None:
    """Serve and request over the wire client, and use KV over nats-py."""
    await svc.serve("auth.echo", _echo, queue="auth", decode=bytes, encode=bytes)
    await svc.wire.flush()
    reply = await svc.wire.ask("auth.echo", b"wire", timeout=2.0)
    assert isinstance(reply, Reply)
    assert reply.payload == b"echo:wire"
    msg = await svc.nc.request("auth.echo", b"nats-py", timeout=2.0)
    assert msg.data == b"echo:nats-py"
    kv = await svc.js.create_key_value(bucket="auth_probe")
    await kv.put("k", b"v1")
    entry = await kv.get("k")
    assert entry.value == b"v1"


async def _assert_anonymous_refused(server: NatsServer) -> None:
    # The positive tests prove nothing if the server let anyone in.
    with pytest.raises(NatsAuthError):
        await connect(NatsConfig(url=server.url), name="anonymous", forever=False)


def _assert_one_line_without(exc: BaseException, *secrets: bytes) -> str:
    text = str(exc)
    assert "\n" not in text
    for secret in secrets:
        assert secret.decode() not in text
    return text


# -- nkey authentication -------------------------------------------------------------------


@pytest.fixture
def user_key() -> _Key:
    return _Key(nkeys.PREFIX_BYTE_USER)


@pytest.fixture
def nkey_server(tmp_path: Path, user_key: _Key) -> Iterator[NatsServer]:
    auth = f'authorization {{ users = [ {{ nkey: "{user_key.public}" }} ] }}'
    server = _server(tmp_path, auth)
    yield server
    server.stop()


async def test_nkeys_seed_file_connects_both_clients_of_a_service(
    nkey_server: NatsServer, user_key: _Key, tmp_path: Path
) -> None:
    seed_file = _secret_file(tmp_path / "svc.nk", user_key.seed.decode() + "\n")
    config = ServiceConfig(nats=NatsConfig(url=nkey_server.url, nkeys_seed_file=str(seed_file)))
    async with Service("nkey-probe", config, install_signal_handlers=False) as svc:
        assert svc.nc.is_connected
        assert svc.wire.connected
        await _exercise(svc)
    await _assert_anonymous_refused(nkey_server)
    assert user_key.seed.decode() not in _log_text(nkey_server)


@pytest.mark.parametrize("forever", [False, True], ids=["one-shot", "service"])
async def test_nkeys_wrong_seed_is_one_line_without_the_seed(
    nkey_server: NatsServer, user_key: _Key, tmp_path: Path, forever: bool
) -> None:
    wrong = _Key(nkeys.PREFIX_BYTE_USER)
    seed_file = _secret_file(tmp_path / "wrong.nk", wrong.seed.decode())
    config = NatsConfig(url=nkey_server.url, nkeys_seed_file=str(seed_file))
    started = time.monotonic()
    with pytest.raises(NatsAuthError) as exc_info:
        await connect(config, name="probe", forever=forever)
    assert time.monotonic() - started < 5.0  # bad keys are not retried forever
    text = _assert_one_line_without(exc_info.value, wrong.seed, user_key.seed)
    assert "refused the credentials" in text
    assert nkey_server.url in text


async def test_nkeys_wrong_seed_is_refused_to_the_wire_client_alone(
    nkey_server: NatsServer, tmp_path: Path
) -> None:
    # In a Service nats-py connects first; the wire client must refuse cleanly too.
    wrong = _Key(nkeys.PREFIX_BYTE_USER)
    seed_file = _secret_file(tmp_path / "wrong.nk", wrong.seed.decode())
    config = NatsConfig(url=nkey_server.url, nkeys_seed_file=str(seed_file))
    client = WireClient(config, name="probe", security=security_options(config))
    with pytest.raises(WireAuthError) as exc_info:
        await asyncio.wait_for(client.connect(forever=True), 10.0)
    await client.close()
    assert "authorization violation" in _assert_one_line_without(exc_info.value, wrong.seed).lower()


async def test_nkeys_wrong_seed_stops_a_service_start(
    nkey_server: NatsServer, tmp_path: Path
) -> None:
    wrong = _Key(nkeys.PREFIX_BYTE_USER)
    seed_file = _secret_file(tmp_path / "wrong.nk", wrong.seed.decode())
    nats = NatsConfig(url=nkey_server.url, nkeys_seed_file=str(seed_file), connect_timeout=2.0)
    service = Service("probe", ServiceConfig(nats=nats), install_signal_handlers=False)
    with pytest.raises(NatsAuthError) as exc_info:
        await asyncio.wait_for(service.start(), 10.0)
    await service.close()
    _assert_one_line_without(exc_info.value, wrong.seed)


@pytest.mark.parametrize(
    "content",
    ["", "not a seed\n", "SUAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\n"],
    ids=["empty", "garbage", "bad-checksum"],
)
def test_nkeys_unusable_seed_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    seed_file = _secret_file(tmp_path / "bad.nk", content)
    with pytest.raises(ConfigError) as exc_info:
        security_options(NatsConfig(nkeys_seed_file=str(seed_file)))
    text = _assert_one_line_without(exc_info.value, content.strip().encode() or b"\x00")
    assert "nats.nkeys_seed_file" in text


# -- credentials files (operator mode) ------------------------------------------------------


class _Operator:
    """An operator with a system account and an ``APP`` account (JetStream on)."""

    def __init__(self) -> None:
        self.key = _Key(nkeys.PREFIX_BYTE_OPERATOR)
        self.system = _Key(nkeys.PREFIX_BYTE_ACCOUNT)
        self.app = _Key(nkeys.PREFIX_BYTE_ACCOUNT)

    def server_auth(self) -> str:
        """The operator-mode part of a nats-server config."""
        system_jwt = _account_jwt(self.key, self.system, name="SYS", jetstream=False)
        app_jwt = _account_jwt(self.key, self.app, name="APP", jetstream=True)
        return (
            f"operator: {_operator_jwt(self.key, system_account=self.system.public)}\n"
            f"system_account: {self.system.public}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f"  {self.system.public}: {system_jwt}\n"
            f"  {self.app.public}: {app_jwt}\n"
            "}"
        )

    def creds(self, user: _Key, *, account: _Key | None = None) -> str:
        return _creds_text(_user_jwt(account or self.app, user), user.seed)


@pytest.fixture
def operator() -> _Operator:
    return _Operator()


@pytest.fixture
def operator_server(tmp_path: Path, operator: _Operator) -> Iterator[NatsServer]:
    server = _server(tmp_path, operator.server_auth())
    yield server
    server.stop()


def _loose_layout(text: str) -> str:
    """Blank lines after the BEGIN lines and indented tokens, as a hand edit may leave."""
    out = []
    after_begin = False
    for line in text.split("\n"):
        out.append(f"  {line} " if after_begin else line)
        after_begin = "BEGIN" in line
        if after_begin:
            out.append("")
    return "\n".join(out)


_LAYOUTS = {
    "nsc": lambda text: text,
    "crlf": lambda text: text.replace("\n", "\r\n"),  # nats-py's own reader failed on it
    "loose": _loose_layout,
}


@pytest.mark.parametrize("layout", list(_LAYOUTS))
async def test_creds_file_connects_both_clients_of_a_service(
    operator_server: NatsServer, operator: _Operator, user_key: _Key, tmp_path: Path, layout: str
) -> None:
    creds = tmp_path / "svc.creds"
    creds.write_bytes(_LAYOUTS[layout](operator.creds(user_key)).encode())
    creds.chmod(0o600)
    config = ServiceConfig(nats=NatsConfig(url=operator_server.url, creds_file=str(creds)))
    async with Service("creds-probe", config, install_signal_handlers=False) as svc:
        assert svc.nc.is_connected
        assert svc.wire.connected
        await _exercise(svc)
    await _assert_anonymous_refused(operator_server)
    assert user_key.seed.decode() not in _log_text(operator_server)


@pytest.mark.parametrize("forever", [False, True], ids=["one-shot", "service"])
async def test_creds_user_of_an_unknown_account_is_one_line_without_secrets(
    operator_server: NatsServer, operator: _Operator, user_key: _Key, tmp_path: Path, forever: bool
) -> None:
    stranger = _Key(nkeys.PREFIX_BYTE_ACCOUNT)  # signed by no operator the server trusts
    text = operator.creds(user_key, account=stranger)
    creds = _secret_file(tmp_path / "stranger.creds", text)
    config = NatsConfig(url=operator_server.url, creds_file=str(creds))
    started = time.monotonic()
    with pytest.raises(NatsAuthError) as exc_info:
        await connect(config, name="probe", forever=forever)
    assert time.monotonic() - started < 5.0
    message = _assert_one_line_without(exc_info.value, user_key.seed, stranger.seed)
    assert "refused the credentials" in message


async def test_creds_user_of_an_unknown_account_is_refused_to_the_wire_client_alone(
    operator_server: NatsServer, operator: _Operator, user_key: _Key, tmp_path: Path
) -> None:
    stranger = _Key(nkeys.PREFIX_BYTE_ACCOUNT)
    creds = _secret_file(tmp_path / "s.creds", operator.creds(user_key, account=stranger))
    config = NatsConfig(url=operator_server.url, creds_file=str(creds))
    client = WireClient(config, name="probe", security=security_options(config))
    with pytest.raises(WireAuthError) as exc_info:
        await asyncio.wait_for(client.connect(forever=True), 10.0)
    await client.close()
    text = _assert_one_line_without(exc_info.value, user_key.seed, stranger.seed)
    assert "authorization violation" in text.lower()


async def test_creds_user_of_an_unknown_account_stops_a_service_start(
    operator_server: NatsServer, operator: _Operator, user_key: _Key, tmp_path: Path
) -> None:
    stranger = _Key(nkeys.PREFIX_BYTE_ACCOUNT)
    creds = _secret_file(tmp_path / "s.creds", operator.creds(user_key, account=stranger))
    nats = NatsConfig(url=operator_server.url, creds_file=str(creds))
    service = Service("probe", ServiceConfig(nats=nats), install_signal_handlers=False)
    with pytest.raises(NatsAuthError) as exc_info:
        await asyncio.wait_for(service.start(), 10.0)
    await service.close()
    _assert_one_line_without(exc_info.value, user_key.seed)


def _creds_cases(operator: _Operator, user: _Key) -> dict[str, bytes]:
    good = operator.creds(user)
    jwt = _user_jwt(operator.app, user)
    other = _Key(nkeys.PREFIX_BYTE_USER)
    return {
        "no-jwt-block": good[good.index("*") :].encode(),  # nats-py spun forever on it
        "no-seed-block": good[: good.index("*")].encode(),
        "empty-jwt-block": good.replace(jwt + "\n", "").encode(),
        "bad-jwt": good.replace(jwt, "eyJ0eXAi.not-json.sig").encode(),
        "seed-of-another-user": good.replace(user.seed.decode(), other.seed.decode()).encode(),
        "bad-seed": good.replace(user.seed.decode(), "SU" + "A" * 56).encode(),
        "not-utf8": b"\xff\xfe" + good.encode(),
    }


_CREDS_CASES = [
    "no-jwt-block", "no-seed-block", "empty-jwt-block",
    "bad-jwt", "seed-of-another-user", "bad-seed", "not-utf8",
]  # fmt: skip


@pytest.mark.parametrize("case", _CREDS_CASES)
def test_creds_unusable_file_is_a_config_error(
    operator: _Operator, user_key: _Key, tmp_path: Path, case: str
) -> None:
    creds = tmp_path / "bad.creds"
    creds.write_bytes(_creds_cases(operator, user_key)[case])
    with pytest.raises(ConfigError) as exc_info:
        security_options(NatsConfig(creds_file=str(creds)))
    text = _assert_one_line_without(exc_info.value, user_key.seed)
    assert text.startswith(f"config error: nats.creds_file: {creds}: ")


async def test_creds_file_without_a_jwt_stops_a_service_start_at_once(
    operator_server: NatsServer, operator: _Operator, user_key: _Key, tmp_path: Path
) -> None:
    # nats-py alone loops forever reading such a file once the server sends a nonce.
    creds = tmp_path / "seed-only.creds"
    creds.write_bytes(_creds_cases(operator, user_key)["no-jwt-block"])
    nats = NatsConfig(url=operator_server.url, creds_file=str(creds))
    service = Service("probe", ServiceConfig(nats=nats), install_signal_handlers=False)
    with pytest.raises(ConfigError) as exc_info:
        await asyncio.wait_for(service.start(), 10.0)
    await service.close()
    assert "not a NATS credentials file" in str(exc_info.value)
