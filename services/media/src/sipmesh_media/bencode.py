"""Bencode, the value encoding of RTPEngine's ng control protocol (sans-I/O).

Four kinds of value (BEP 3, "The BitTorrent Protocol Specification")::

    string   <length>:<bytes>        "4:spam"
    integer  i<decimal>e             "i3e", "i-3e"; "i-0e" and leading zeros are invalid
    list     l<values>e
    dict     d<string key><value>...e

Strings stay ``bytes`` both ways; ``str`` is accepted when encoding (UTF-8) as a
convenience for the dict keys and flag words the ng protocol spells in ASCII.
The encoder writes dict keys sorted, as BEP 3 asks ("Keys must be strings and
appear in sorted order"). The decoder is strict about everything but key order:
RTPEngine itself writes its reply dicts in insertion order (``d3:sdp...6:result``),
so rejecting unsorted keys would reject every offer reply. Duplicate keys, leading
zeros, ``-0``, trailing bytes, truncation and nesting deeper than
:data:`MAX_DEPTH` raise :class:`~sipmesh_media.errors.NgProtocolError`, never
another exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias

from .errors import NgProtocolError

__all__ = ["MAX_DEPTH", "BValue", "EncodableValue", "decode", "encode"]

BValue: TypeAlias = bytes | int | list["BValue"] | dict[bytes, "BValue"]
#: A decoded value.
EncodableValue: TypeAlias = (
    bytes
    | str
    | int
    | Sequence["EncodableValue"]
    | Mapping[str, "EncodableValue"]
    | Mapping[bytes, "EncodableValue"]
)
#: What :func:`encode` takes: decoded values, plus ``str`` for strings and keys.

MAX_DEPTH: Final = 32
#: Nesting limit of the decoder; ng messages nest three or four levels deep.

_DIGITS: Final = frozenset(b"0123456789")
_MAX_DIGITS: Final = 19
# Beyond int64, which is all RTPEngine reads; it also keeps int() under
# Python's 4300-digit conversion limit, whose ValueError would escape.


def encode(value: EncodableValue) -> bytes:
    """Encode ``value`` as bencode.

    Args:
        value: bytes/str, int, a sequence or a mapping with bytes/str keys.

    Returns:
        The bencoded bytes, dict keys in sorted (raw byte) order.

    Raises:
        TypeError: a value of another type (``bool`` and ``float`` included:
            bencode has neither) or a duplicate key after UTF-8 encoding.
    """
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _encode(value: EncodableValue, out: list[bytes]) -> None:
    if isinstance(value, bytes | str):
        raw = _as_bytes(value)
        out.append(b"%d:%s" % (len(raw), raw))
    elif isinstance(value, bool):
        raise TypeError("bencode has no booleans; use an int or a flag word")
    elif isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, Mapping):
        items = {_as_bytes(k): v for k, v in value.items()}
        if len(items) != len(value):
            raise TypeError("duplicate dict key after UTF-8 encoding")
        out.append(b"d")
        for key in sorted(items):
            out.append(b"%d:%s" % (len(key), key))
            _encode(items[key], out)
        out.append(b"e")
    elif isinstance(value, Sequence):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


def decode(data: bytes) -> BValue:
    """Decode exactly one bencoded value that fills ``data``.

    Args:
        data: the bencoded bytes.

    Returns:
        bytes, int, list or dict (with bytes keys).

    Raises:
        NgProtocolError: the bytes are not exactly one valid value.
    """
    value, end = decode_prefix(data, 0)
    if end != len(data):
        raise NgProtocolError(f"trailing data at offset {end}")
    return value


def decode_prefix(data: bytes, start: int) -> tuple[BValue, int]:
    """Decode one value starting at ``start``; return it and the offset after it.

    Raises:
        NgProtocolError: no valid value starts there.
    """
    return _Decoder(data).value(start, 0)


class _Decoder:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def value(self, pos: int, depth: int) -> tuple[BValue, int]:
        if depth > MAX_DEPTH:
            raise NgProtocolError(f"nested deeper than {MAX_DEPTH} levels")
        if pos >= len(self.data):
            raise NgProtocolError("truncated: a value was expected")
        lead = self.data[pos]
        if lead == 0x69:  # i
            return self.integer(pos)
        if lead == 0x6C:  # l
            return self.list(pos, depth)
        if lead == 0x64:  # d
            return self.dict(pos, depth)
        if lead in _DIGITS:
            return self.string(pos)
        raise NgProtocolError(f"unexpected byte {bytes([lead])!r} at offset {pos}")

    def _number(self, start: int, end: int, *, signed: bool) -> int:
        text = self.data[start:end]
        digits = text[1:] if signed and text.startswith(b"-") else text
        if not digits or len(digits) > _MAX_DIGITS or not all(c in _DIGITS for c in digits):
            raise NgProtocolError(f"bad number {text[:20]!r} at offset {start}")
        # BEP 3: "i-0e is invalid. All encodings with a leading zero, such as
        # i03e, are invalid, other than i0e" (the same for string lengths).
        if (digits.startswith(b"0") and len(digits) > 1) or text == b"-0":
            raise NgProtocolError(f"non-canonical number {text[:20]!r} at offset {start}")
        return int(text)

    def integer(self, pos: int) -> tuple[int, int]:
        end = self.data.find(b"e", pos + 1)
        if end < 0:
            raise NgProtocolError("truncated integer")
        return self._number(pos + 1, end, signed=True), end + 1

    def string(self, pos: int) -> tuple[bytes, int]:
        colon = self.data.find(b":", pos)
        if colon < 0:
            raise NgProtocolError("truncated string length")
        length = self._number(pos, colon, signed=False)
        end = colon + 1 + length
        if end > len(self.data):
            raise NgProtocolError(f"string of {length} bytes runs past the end")
        return self.data[colon + 1 : end], end

    def list(self, pos: int, depth: int) -> tuple[list[BValue], int]:
        items: list[BValue] = []
        pos += 1
        while True:
            if pos >= len(self.data):
                raise NgProtocolError("truncated list")
            if self.data[pos] == 0x65:  # e
                return items, pos + 1
            item, pos = self.value(pos, depth + 1)
            items.append(item)

    def dict(self, pos: int, depth: int) -> tuple[dict[bytes, BValue], int]:
        items: dict[bytes, BValue] = {}
        pos += 1
        while True:
            if pos >= len(self.data):
                raise NgProtocolError("truncated dict")
            if self.data[pos] == 0x65:  # e
                return items, pos + 1
            if self.data[pos] not in _DIGITS:
                raise NgProtocolError(f"dict key at offset {pos} is not a string")
            key, pos = self.string(pos)
            if key in items:
                raise NgProtocolError(f"duplicate dict key {key[:40]!r}")
            items[key], pos = self.value(pos, depth + 1)
