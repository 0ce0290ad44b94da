"""Server URLs and credentials for :mod:`sipmesh_bus.wire`: URLs, ``.creds`` files, nkeys.

The signature over the server's nonce (docs.nats.io, "Client Protocol",
``CONNECT`` ``sig``) is the nonce signed with the user's nkey seed, sent in
base64url without padding; nats-py sends the same bytes in padded standard
base64, and nats-server takes either (tests/integration/test_bus_nats_nkeys.py
connects both kinds of client to one server).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from sipmesh_bus._wireproto import WireAuthError

__all__ = ["Server", "format_creds", "parse_url", "public_key", "read_creds", "read_seed", "sign"]

_DEFAULT_PORT: Final = 4222


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    host: str
    port: int
    tls: bool
    user: str | None = None
    password: str | None = None
    token: str | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"  # never the credentials


def parse_url(url: str) -> Server:
    if "://" not in url:
        url = "nats://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("nats", "tls"):
        raise ValueError(f"unsupported NATS URL scheme {parts.scheme!r}")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    token = None
    if user is not None and password is None:
        user, token = None, user  # nats://<token>@host
    return Server(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or _DEFAULT_PORT,
        tls=parts.scheme == "tls",
        user=user,
        password=password,
        token=token,
    )


def read_creds(path: Path) -> tuple[str, bytes]:
    """The user JWT and the nkey seed of a ``.creds`` file.

    Each is the first non-blank line after its ``-----BEGIN ...-----`` line
    (as ``nsc generate creds`` writes them), spaces and CR around it dropped.

    Raises:
        WireAuthError: unreadable, not laid out as a credentials file, or the
            seed is not the key of the JWT's user (one line, never the content).
    """
    lines = _read_text(path, "credentials file").splitlines()
    jwt = _token_after(lines, "BEGIN NATS USER JWT")
    seed = _token_after(lines, "BEGIN USER NKEY SEED")
    if not jwt or not seed:
        raise WireAuthError(f"{path}: not a NATS credentials file")
    subject = _jwt_subject(jwt)
    if subject is None:
        raise WireAuthError(f"{path}: the user JWT is malformed")
    key = seed.encode()
    if _public_key(key, path) != subject:
        raise WireAuthError(f"{path}: the nkey seed is not the key of the JWT's user")
    return jwt, key


def format_creds(jwt: str, seed: bytes) -> str:
    """A ``.creds`` text in the layout ``nsc`` writes (what nats-py parses)."""
    return (
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n------END USER NKEY SEED------\n"
    )


def read_seed(path: Path) -> bytes:
    """The nkey seed (``SU...``) of a seed file; spaces and newlines around it are dropped.

    Raises:
        WireAuthError: unreadable, or not an nkey seed (one line, never the content).
    """
    seed = _read_text(path, "nkey seed file").strip().encode()
    _public_key(seed, path)
    return seed


def sign(seed: bytes, nonce: bytes) -> str:
    """The server's nonce signed with ``seed``, base64url without padding.

    Raises:
        WireAuthError: ``seed`` is not an nkey seed.
    """
    signature: bytes = _keypair(seed, None).sign(nonce)
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def public_key(seed: bytes) -> str:
    """The public key (``U...``) of an nkey seed.

    Raises:
        WireAuthError: ``seed`` is not an nkey seed.
    """
    return _public_key(seed, None)


def _public_key(seed: bytes, path: Path | None) -> str:
    key: bytes = _keypair(seed, path).public_key
    return key.decode()


def _keypair(seed: bytes, path: Path | None) -> Any:
    try:
        import nkeys  # type: ignore[import-untyped]  # noqa: PLC0415 - only for nkeys/creds
    except ImportError:
        raise WireAuthError("nkey and creds authentication need the nkeys package") from None
    try:
        return nkeys.from_seed(bytearray(seed))
    except (nkeys.NkeysError, ValueError):
        where = f"{path}: " if path is not None else ""
        raise WireAuthError(f"{where}not a valid nkey seed") from None


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WireAuthError(f"{path}: not a {what}") from None
    except OSError as exc:
        raise WireAuthError(f"{path}: {exc.strerror or type(exc).__name__}") from None


def _token_after(lines: list[str], marker: str) -> str | None:
    """The first non-blank line after the one holding ``marker``, unless it ends the block."""
    for i, line in enumerate(lines):
        if marker in line:
            value = next((x.strip() for x in lines[i + 1 :] if x.strip()), "")
            return None if "-----" in value else value
    return None


def _jwt_subject(jwt: str) -> str | None:
    """The ``sub`` claim of a JWT (its signature is the server's business)."""
    parts = jwt.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else None
