"""Terminal output for the command line: aligned tables and a progress bar."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final, TextIO

__all__ = ["Progress", "format_table"]

_BAR_WIDTH: Final = 30
_REDRAW_EVERY: Final = 0.1


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; no trailing spaces.

    Returns:
        The header line and one line per row, joined with newlines (no final one).
    """
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)


class Progress:
    """``label [#####.....]  450/1000  45%`` redrawn in place on a terminal.

    Call :meth:`update` with the count done so far, and :meth:`close` at the end.
    Redraws at most every 0.1 s (and always at the end).
    """

    def __init__(self, label: str, total: int, stream: TextIO) -> None:
        self._label = label
        self._total = total
        self._stream = stream
        self._drawn_at = 0.0
        self._done = 0

    def update(self, done: int) -> None:
        """Record progress; redraw if due."""
        self._done = done
        now = time.monotonic()
        if done >= self._total or now - self._drawn_at >= _REDRAW_EVERY:
            self._drawn_at = now
            self._stream.write("\r" + self.render(done))
            self._stream.flush()

    def render(self, done: int) -> str:
        """The bar for ``done`` out of the total."""
        share = done / self._total if self._total else 1.0
        filled = round(share * _BAR_WIDTH)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        width = len(str(self._total))
        return f"{self._label} [{bar}] {done:>{width}}/{self._total} {share:4.0%}"

    def close(self) -> None:
        """End the bar's line."""
        if self._drawn_at:
            self._stream.write("\n")
            self._stream.flush()
