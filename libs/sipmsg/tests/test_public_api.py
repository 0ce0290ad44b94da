"""Pin the public surface sipmsg's message core exports (httpx-style)."""

from __future__ import annotations

import sipmsg

CORE_NAMES = {
    "COMPACT_FORMS",
    "REASON_PHRASES",
    "CSeq",
    "Headers",
    "LocalProtocolError",
    "MediaType",
    "ParseError",
    "ParserConfig",
    "Request",
    "Response",
    "SipError",
    "canonical_name",
    "make_ack_for_non2xx",
    "make_cancel",
    "make_response",
    "parse",
    "parse_cseq",
    "parse_media_type",
    "parse_token_list",
    "unsupported_options",
    "validate_request",
    "validate_response",
}


def test_public_api_core_names_exported() -> None:
    assert set(sipmsg.__all__) >= CORE_NAMES
    for name in sipmsg.__all__:
        assert getattr(sipmsg, name) is not None


def test_public_api_all_is_sorted_and_unique() -> None:
    assert len(set(sipmsg.__all__)) == len(sipmsg.__all__)


def test_public_api_errors_tree() -> None:
    assert issubclass(sipmsg.ParseError, sipmsg.SipError)
    assert issubclass(sipmsg.LocalProtocolError, sipmsg.SipError)


# The value types of the other modules that docs/architecture.md ("sipmsg API")
# promises at the top level.
CONTRACT_NAMES = {
    "AbsoluteUri",
    "Address",
    "Challenge",
    "Credentials",
    "NonceManager",
    "SessionDescription",
    "SipUri",
    "Star",
    "StreamFramer",
    "Summary",
    "TelUri",
    "Via",
    "parse_address",
    "parse_address_list",
    "parse_challenge",
    "parse_contact_list",
    "parse_credentials",
    "parse_sdp",
    "parse_uri",
    "parse_via_list",
    "peek",
}


def test_public_api_contract_value_types_reexported() -> None:
    assert set(sipmsg.__all__) >= CONTRACT_NAMES
