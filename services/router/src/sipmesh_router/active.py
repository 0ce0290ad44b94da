"""Active calls per destination, folded from a watch of KV ``dialogs`` (for ``least_calls``).

The router writes a :class:`~sipmesh_router.context.DialogRecord` when a call
is answered and deletes it on BYE; every replica watches the bucket, so every
replica counts every replica's calls: ``len()`` is every answered call (the
``sipmesh_router_calls_active`` gauge), ``counts`` those of the calls that
name a destination by ``destination_key`` (``Destination.key``, the health
key of the address: a dispatcher or LCR hop, not a registered phone), the
counts :func:`sipmesh_router.dispatcher.select_destinations` reads. The same
fold counts calls per authenticated caller (``users``, by ``DialogRecord.user``)
and per trunk (``trunks``: the caller's trusted peer and the LCR gateway), the
counts of the call caps (:mod:`sipmesh_router.caps`).

A dialog whose BYE never came (a crashed phone, a lost BYE) leaves by the
bucket's per-key TTL, which a KV watch does not report: :meth:`ActiveCalls.prune`
forgets records older than the dialog TTL so that such calls stop counting.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from .context import decode_dialog

__all__ = ["ActiveCalls"]


class ActiveCalls:
    """Answered calls per destination key: ``apply`` each watched entry, read ``counts``."""

    def __init__(self) -> None:
        self._calls: dict[str, tuple[str, float, tuple[str, ...], tuple[str, ...]]] = {}
        #: Dialog key -> (destination key or "", answered at, users, trunks).
        self._counts: dict[str, int] = {}
        self._users: dict[str, int] = {}
        self._trunks: dict[str, int] = {}

    @property
    def counts(self) -> Mapping[str, int]:
        """Destination key -> active calls (keys with no call are absent)."""
        return self._counts

    @property
    def users(self) -> Mapping[str, int]:
        """Caller ``user@domain`` -> active calls (users with no call are absent)."""
        return self._users

    @property
    def trunks(self) -> Mapping[str, int]:
        """Trunk (trusted peer name or gateway id) -> active calls."""
        return self._trunks

    def __len__(self) -> int:
        """Every active call, with a destination key or not."""
        return len(self._calls)

    def __contains__(self, key: object) -> bool:
        """Whether the dialog ``key`` has a record (an answered call not ended)."""
        return key in self._calls

    def apply(self, key: str, value: bytes | None) -> bool:
        """Fold one ``dialogs`` entry in (None or empty: deleted).

        Returns:
            False when the value does not decode (the key is dropped).
        """
        self._forget(key)
        if not value:
            return True
        try:
            record = decode_dialog(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        dest = record.destination_key
        users = (record.user,) if record.user else ()
        trunks = tuple(dict.fromkeys(t for t in (record.peer, record.gateway) if t))
        self._calls[key] = (dest, record.answered_at, users, trunks)
        _more(self._counts, (dest,) if dest else ())
        _more(self._users, users)
        _more(self._trunks, trunks)
        return True

    def prune(self, *, older_than: float) -> int:
        """Forget calls answered before ``older_than`` (expired in KV); returns how many."""
        old = [k for k, (_, at, _, _) in self._calls.items() if at < older_than]
        for key in old:
            self._forget(key)
        return len(old)

    def _forget(self, key: str) -> None:
        held = self._calls.pop(key, None)
        if held is None:
            return
        dest, _, users, trunks = held
        _less(self._counts, (dest,) if dest else ())
        _less(self._users, users)
        _less(self._trunks, trunks)


def _more(table: dict[str, int], names: tuple[str, ...]) -> None:
    for name in names:
        table[name] = table.get(name, 0) + 1


def _less(table: dict[str, int], names: tuple[str, ...]) -> None:
    for name in names:
        left = table.get(name, 0) - 1
        if left > 0:
            table[name] = left
        else:
            table.pop(name, None)
