"""sipmesh_bus.subjects: the subject names are the contract between services."""

from __future__ import annotations

import pytest

from sipmesh_bus import subjects


def test_subject_constants_match_the_architecture() -> None:
    assert subjects.SIP_REGISTER == "sip.register"
    assert subjects.SIP_ROUTE == "sip.route"
    assert subjects.SIP_ROUTE_RESPONSE == "sip.route.response"
    assert subjects.SIP_MEDIA_OFFER == "sip.media.offer"
    assert subjects.SIP_MEDIA_ANSWER == "sip.media.answer"
    assert subjects.SIP_MEDIA_DELETE == "sip.media.delete"
    assert subjects.CALL_EVENTS == "call.events.>"


def test_edge_send_builds_the_owner_subject() -> None:
    assert subjects.edge_send("edge-7f3a") == "sip.edge.edge-7f3a.send"


def test_call_event_is_inside_the_calls_stream_wildcard() -> None:
    subject = subjects.call_event("answered")
    assert subject == "call.events.answered"
    assert subject.startswith(subjects.CALL_EVENTS.removesuffix(">"))


def test_dead_letters_are_outside_the_calls_stream() -> None:
    # Otherwise the CDR consumer would read its own dead letters back.
    dead = subjects.cdr_dead_letter("ended")
    assert dead == "cdr.dead.ended"
    assert not dead.startswith(subjects.CALL_EVENTS.removesuffix(">"))


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "*", ">", "edge\r\n"])
def test_builders_refuse_tokens_that_would_change_the_subject(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid") as exc_info:
        subjects.edge_send(bad)
    assert repr(bad) in str(exc_info.value)
    assert not subjects.is_valid_token(bad)


def test_queue_groups_are_distinct() -> None:
    groups = [
        subjects.QUEUE_REGISTRAR,
        subjects.QUEUE_ROUTER,
        subjects.QUEUE_MEDIA,
        subjects.QUEUE_CDR,
    ]
    assert len(set(groups)) == len(groups)


def test_exported_members_exist() -> None:
    for name in subjects.__all__:
        assert hasattr(subjects, name), name
