"""Secrets shared by every replica of a service, and between services (nonce secret).

The digest nonces of the registrar and the router are stateless HMACs (see
``sipmsg.digest.NonceManager``), so every replica that checks a nonce must hold
the secret that made it: a phone answers a challenge of one replica to
another, and answers the router's 407 with a nonce the registrar issued. The
router also signs its Record-Route tokens with it.

Where the secret comes from, first match wins (:func:`load_shared_secret`):

1. the first non-empty configured value (a setting, an environment variable);
2. the file ``<data_dir>/<file_name>`` when a data directory is set
   (``$SIPMESH_DATA_DIR``, which ``sipmesh up`` sets): created with 32 random
   bytes (hex), mode 0600, by whichever process needs it first, then shared
   by every process on that host (:func:`file_secret`);
3. otherwise a random secret for this process, with a warning: correct for a
   single process only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets as _random
from collections.abc import Iterable
from pathlib import Path
from typing import Final

__all__ = ["MIN_SECRET_LENGTH", "NONCE_SECRET_FILE", "file_secret", "load_shared_secret"]

log = logging.getLogger(__name__)

NONCE_SECRET_FILE: Final = "registrar-nonce-secret"  # noqa: S105 - a file name
#: The nonce secret's file in the data directory (its name predates the router).
MIN_SECRET_LENGTH: Final = 16
#: Characters; a shorter secret in a file is refused.


def load_shared_secret(
    configured: Iterable[str | None],
    *,
    data_dir: str | Path | None,
    owner: str,
    file_name: str = NONCE_SECRET_FILE,
) -> bytes:
    """The shared secret (see the module docstring for the order).

    Args:
        configured: explicit values, in order of precedence; None or empty
            ones are skipped.
        data_dir: the data directory, or None.
        owner: the service asking (logs, and the temporary file's name).
        file_name: the secret's file in ``data_dir``.

    Returns:
        The secret's bytes (UTF-8 of a configured value, ASCII hex otherwise).

    Raises:
        OSError: the data dir's file cannot be read or created, or is too short.
    """
    for value in configured:
        if value:
            return value.encode("utf-8")
    if data_dir:
        return file_secret(Path(data_dir) / file_name, owner=owner)
    log.warning(
        "%s: no shared secret configured and no data_dir: using a random one, so "
        "what this process signs is valid here only",
        owner,
    )
    return _random.token_hex(32).encode("ascii")


def file_secret(path: Path, *, owner: str = "sipmesh") -> bytes:
    """Read the secret in ``path``, creating it first (race-free) when missing.

    Raises:
        OSError: it cannot be read or created, or holds fewer than
            :data:`MIN_SECRET_LENGTH` characters.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Write aside, then link into place: the link fails when another
        # process won the race, and nobody ever reads a half-written file.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{owner}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(_random.token_hex(32) + "\n")
        try:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink()
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise OSError(f"{path}: the secret is shorter than {MIN_SECRET_LENGTH} characters")
    return secret.encode("ascii")
