"""sipmesh_bus.records: KV keys for AoRs and the stored subscriber/binding values."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.js.kv import VALID_KEY_RE

from sipmesh_bus.records import (
    Binding,
    BindingSet,
    Subscriber,
    aor_key,
    decode_binding_set,
    decode_subscriber,
    encode_record,
    live_bindings,
    parse_aor_key,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("user", "domain", "key"),
    [
        pytest.param("alice", "example.com", "example=2Ecom.alice", id="plain"),
        pytest.param("alice", "EXAMPLE.com", "example=2Ecom.alice", id="domain-lowered"),
        pytest.param("Alice", "example.com", "example=2Ecom.Alice", id="user-case-kept"),
        pytest.param("+1555", "10.0.0.1", "10=2E0=2E0=2E1.=2B1555", id="phone-ip"),
        pytest.param("a.b=c/d", "x.org", "x=2Eorg.a=2Eb=3Dc=2Fd", id="reserved-escaped"),
        pytest.param("jürgen", "x.org", "x=2Eorg.j=C3=BCrgen", id="utf8"),
    ],
)
def test_aor_key_examples(user: str, domain: str, key: str) -> None:
    assert aor_key(user, domain) == key
    assert parse_aor_key(key) == (user, domain.lower())


@given(st.text(min_size=1), st.text(min_size=1))
def test_aor_key_round_trips_and_is_a_valid_kv_key(user: str, domain: str) -> None:
    try:
        domain.lower().encode("utf-8")
        user.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates cannot be a SIP user or host
    key = aor_key(user, domain)
    assert VALID_KEY_RE.match(key)
    assert parse_aor_key(key) == (user, domain.lower())


@pytest.mark.parametrize(
    "key", ["", "nodot", "a.b.c", "a.=zz", "a.b=", ".a", "a.", "a.=FF"], ids=repr
)
def test_parse_aor_key_rejects(key: str) -> None:
    with pytest.raises(ValueError, match="AoR key") as exc_info:
        parse_aor_key(key)
    assert key in str(exc_info.value) or not key


def test_aor_key_needs_user_and_domain() -> None:
    with pytest.raises(ValueError, match="needs a user"):
        aor_key("", "example.com")


def _binding(contact: str, **kw: object) -> Binding:
    fields: dict[str, object] = {
        "contact": contact,
        "expires_at": NOW + 60,
        "call_id": "c",
        "cseq": 1,
        "registered_at": NOW,
        "source_host": "192.0.2.1",
        "source_port": 5060,
        "transport": "udp",
        "edge_id": "e1",
    }
    fields.update(kw)
    return Binding(**fields)  # type: ignore[arg-type]


def test_records_round_trip() -> None:
    sub = Subscriber(user="alice", domain="example.com", ha1_md5="a" * 32, ha1_sha256="b" * 64)
    assert decode_subscriber(encode_record(sub)) == sub
    bs = BindingSet(aor="sip:alice@example.com", bindings=[_binding("sip:a@h", path=["<sip:p>"])])
    assert decode_binding_set(encode_record(bs)) == bs


def test_location_values_leave_defaults_out_and_full_maps_still_decode() -> None:
    bs = BindingSet(aor="sip:alice@example.com", bindings=[_binding("sip:a@h")])
    stored = msgspec.msgpack.decode(encode_record(bs))
    assert stored.keys() == {"aor", "bindings"}
    assert set(stored["bindings"][0]) == {
        *("contact", "expires_at", "call_id", "cseq", "registered_at"),
        *("source_host", "source_port", "transport", "edge_id"),
    }
    # What a writer that kept every field stored (earlier versions) reads the same.
    full = msgspec.msgpack.encode(
        msgspec.structs.asdict(bs) | {"bindings": [msgspec.structs.asdict(b) for b in bs.bindings]}
    )
    assert len(full) > len(encode_record(bs))
    assert decode_binding_set(full) == bs


def test_records_old_reader_ignores_new_fields() -> None:
    newer = msgspec.msgpack.encode(
        {"user": "u", "domain": "d", "ha1_md5": "x", "ha1_sha256": "y", "future": 1}
    )
    assert decode_subscriber(newer).user == "u"


def test_live_bindings_drops_expired_and_orders_by_q() -> None:
    bs = BindingSet(
        aor="sip:a@b",
        bindings=[
            _binding("sip:none-old", registered_at=NOW - 10),
            _binding("sip:expired", expires_at=NOW, q=1.0),
            _binding("sip:low", q=0.1),
            _binding("sip:none-new"),
            _binding("sip:high", q=0.9),
        ],
    )
    assert [b.contact for b in live_bindings(bs, NOW)] == [
        "sip:high",
        "sip:low",
        "sip:none-new",
        "sip:none-old",
    ]
    assert live_bindings(None, NOW) == []


@pytest.mark.parametrize(
    ("left", "remaining"),
    [(60.0, 60), (0.4, 1), (59.6, 60), (0.0, 0), (-5.0, 0)],
    ids=["whole", "under-one", "rounds", "at-expiry", "past"],
)
def test_binding_remaining(left: float, remaining: int) -> None:
    assert _binding("sip:x", expires_at=NOW + left).remaining(NOW) == remaining
