"""Active calls per destination, folded from a watch of KV ``dialogs`` (for ``least_calls``).

The router writes a :class:`~sipmesh_router.context.DialogRecord` when a call
is answered and deletes it on BYE; every replica watches the bucket, so every
replica counts every replica's calls: ``len()`` is every answered call (the
``sipmesh_router_calls_active`` gauge), ``counts`` those of the calls that
name a destination by ``destination_key`` (``Destination.key``, the health
key of the address: a dispatcher or LCR hop, not a registered phone), the
counts :func:`sipmesh_router.dispatcher.select_destinations` reads.

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
        self._calls: dict[str, tuple[str, float]] = {}
        #: Dialog key -> (destination key or "", answered at).
        self._counts: dict[str, int] = {}

    @property
    def counts(self) -> Mapping[str, int]:
        """Destination key -> active calls (keys with no call are absent)."""
        return self._counts

    def __len__(self) -> int:
        """Every active call, with a destination key or not."""
        return len(self._calls)

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
        self._calls[key] = (dest, record.answered_at)
        if dest:
            self._counts[dest] = self._counts.get(dest, 0) + 1
        return True

    def prune(self, *, older_than: float) -> int:
        """Forget calls answered before ``older_than`` (expired in KV); returns how many."""
        old = [k for k, (_, at) in self._calls.items() if at < older_than]
        for key in old:
            self._forget(key)
        return len(old)

    def _forget(self, key: str) -> None:
        held = self._calls.pop(key, None)
        if held is None:
            return
        dest = held[0]
        if not dest:
            return
        left = self._counts.get(dest, 0) - 1
        if left > 0:
            self._counts[dest] = left
        else:
            self._counts.pop(dest, None)
