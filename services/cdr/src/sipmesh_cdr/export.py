"""CDR rows as CSV and JSON, and the time format of the filters.

Times are seconds since the epoch in the rows and in JSON; CSV and the CLI
table show them as ISO 8601 in UTC. A filter time is either form.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

import msgspec

from .core import PUBLIC_FIELDS, Cdr, public_dict

__all__ = ["TIME_FIELDS", "iso", "parse_time", "to_csv", "to_json"]

TIME_FIELDS: Final = frozenset({"start_at", "ring_at", "answer_at", "end_at"})
_json: Final = msgspec.json.Encoder()


def parse_time(text: str) -> float:
    """Seconds since the epoch from ``1700000000.5`` or ISO 8601 (naive means UTC).

    Raises:
        ValueError: neither form.
    """
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"not a time: {text!r}")
        return value
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (seconds since the epoch, or ISO 8601 such as "
            "2024-05-01T12:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso(value: float | None) -> str:
    """``2024-05-01T12:00:00.250Z``, or the empty string for None."""
    if value is None:
        return ""
    text = datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _cell(field: str, value: object) -> str:
    if value is None:
        return ""
    if field in TIME_FIELDS:
        return iso(value)  # type: ignore[arg-type]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(rows: Iterable[Cdr]) -> str:
    """A header line and one line per row (the public fields, times in ISO 8601)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PUBLIC_FIELDS)
    for cdr in rows:
        writer.writerow([_cell(f, getattr(cdr, f)) for f in PUBLIC_FIELDS])
    return out.getvalue()


def to_json(rows: Iterable[Cdr]) -> bytes:
    """A JSON array of objects with the public fields (times as epoch seconds)."""
    return _json.encode([public_dict(cdr) for cdr in rows])
