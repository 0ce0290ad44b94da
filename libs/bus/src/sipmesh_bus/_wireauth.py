"""Server URLs and credentials for :mod:`sipmesh_bus.wire`: URLs, ``.creds`` files, nkeys.

The signature over the server's nonce is what nats-py sends too (docs.nats.io,
"Client Protocol", ``CONNECT`` ``sig``): the nonce signed with the user's
nkey seed, base64url without padding.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from sipmesh_bus._wireproto import WireAuthError

__all__ = ["Server", "parse_url", "public_key", "read_creds", "sign"]

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
    """The user JWT and the nkey seed of a ``.creds`` file."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    jwt = seed = None
    for i, line in enumerate(lines):
        if "BEGIN NATS USER JWT" in line:
            jwt = next((x for x in lines[i + 1 :] if x and not x.startswith("---")), None)
        elif "BEGIN USER NKEY SEED" in line:
            seed = next((x for x in lines[i + 1 :] if x and not x.startswith("---")), None)
    if not jwt or not seed:
        raise WireAuthError(f"{path.name}: not a NATS credentials file")
    return jwt, seed.encode()


def sign(seed: bytes, nonce: bytes) -> str:
    import nkeys  # type: ignore[import-untyped]  # noqa: PLC0415 - only for nkeys/creds

    signature: bytes = nkeys.from_seed(bytearray(seed)).sign(nonce)
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def public_key(seed: bytes) -> str:
    import nkeys  # noqa: PLC0415

    key: bytes = nkeys.from_seed(bytearray(seed)).public_key
    return key.decode()
