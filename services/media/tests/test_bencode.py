"""Bencode: vectors, strictness, round trip and the fuzz invariant."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipmesh_media import bencode
from sipmesh_media.bencode import BValue
from sipmesh_media.errors import NgProtocolError

# Hypothesis caches runs by their tuple of choices, and hash(b"") == hash(0): an
# empty bytes draw where another run drew the integer 0 makes that cache compare
# bytes with int, a BytesWarning under ``python -bb``. Empty strings therefore
# come from st.just (no bytes choice), never from st.binary.
strings = st.binary(min_size=1, max_size=40) | st.just(b"")
keys = st.binary(min_size=1, max_size=10) | st.just(b"")
values: st.SearchStrategy[BValue] = st.recursive(
    strings | st.integers(min_value=-(2**63), max_value=2**63 - 1),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (b"spam", b"4:spam"),
        (b"", b"0:"),
        (0, b"i0e"),
        (-42, b"i-42e"),
        ([b"a", 1, []], b"l1:ai1elee"),
        ({b"b": 1, b"a": b"x"}, b"d1:a1:x1:bi1ee"),
        ({}, b"de"),
    ],
    ids=["string", "empty-string", "zero", "negative", "list", "dict-sorted", "empty-dict"],
)
def test_bencode_vectors(value: BValue, wire: bytes) -> None:
    assert bencode.encode(value) == wire
    assert bencode.decode(wire) == value


def test_bencode_encode_accepts_str_as_utf8_bytes() -> None:
    assert bencode.encode({"call-id": "é", "flags": ["trust-address"]}) == (
        b"d7:call-id2:\xc3\xa95:flagsl13:trust-addressee"
    )


@pytest.mark.parametrize(
    "value", [True, 1.5, None, {1: b"x"}], ids=["bool", "float", "none", "int-key"]
)
def test_bencode_encode_rejects_other_types(value: object) -> None:
    with pytest.raises(TypeError):
        bencode.encode(value)  # type: ignore[arg-type]


def test_bencode_decode_accepts_unsorted_keys_as_rtpengine_writes_them() -> None:
    # An actual RTPEngine 10.5 delete reply: "warning" comes before "result".
    wire = b"d7:warning38:Call-ID not found or tags didn't match6:result2:oke"
    assert bencode.decode(wire) == {
        b"warning": b"Call-ID not found or tags didn't match",
        b"result": b"ok",
    }


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"i03e",
        b"i-0e",
        b"ie",
        b"i-e",
        b"i12",
        b"03:abc",
        b"5:abc",
        b"3abc",
        b"l1:a",
        b"d1:ai1e",
        b"di1ei2ee",
        b"d1:ai1e1:ai2ee",
        b"i1ei2e",
        b"x",
        b"-1:a",
        b"i" + b"9" * 5000 + b"e",
        b"l" * 100 + b"e" * 100,
    ],
    ids=[
        "empty",
        "leading-zero",
        "minus-zero",
        "no-digits",
        "only-minus",
        "unterminated-int",
        "length-leading-zero",
        "short-string",
        "no-colon",
        "unterminated-list",
        "unterminated-dict",
        "int-key",
        "duplicate-key",
        "trailing",
        "garbage",
        "negative-length",
        "huge-int",
        "too-deep",
    ],
)
def test_bencode_decode_rejects_malformed(wire: bytes) -> None:
    with pytest.raises(NgProtocolError):
        bencode.decode(wire)


def test_bencode_decode_prefix_returns_the_end_offset() -> None:
    assert bencode.decode_prefix(b"xx3:abcrest", 2) == (b"abc", 7)


@given(values)
def test_bencode_round_trip(value: BValue) -> None:
    wire = bencode.encode(value)
    assert bencode.decode(wire) == value
    assert bencode.encode(bencode.decode(wire)) == wire


@given(st.binary(max_size=200))
def test_bencode_fuzz_decode_raises_only_protocol_errors(data: bytes) -> None:
    try:
        value = bencode.decode(data)
    except NgProtocolError:
        return
    # Anything accepted re-encodes to the same bytes when its keys were sorted.
    assert bencode.decode(bencode.encode(value)) == value


@given(values, st.integers(min_value=0, max_value=50), st.binary(min_size=1, max_size=3))
def test_bencode_fuzz_mutated_valid_messages(value: BValue, at: int, junk: bytes) -> None:
    wire = bencode.encode(value)
    at = min(at, len(wire))
    for mutated in (wire[:at], wire[:at] + junk + wire[at:]):
        with contextlib.suppress(NgProtocolError):
            bencode.decode(mutated)
