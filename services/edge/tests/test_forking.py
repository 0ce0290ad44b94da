"""forking.best_final: RFC 3261 §16.7 steps 6 and 7 on tables of final responses."""

from __future__ import annotations

import pytest

from sipmesh_edge.forking import Candidate, best_final, with_challenges
from sipmsg import Request, Response, make_response, parse

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.e1.x.1\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-inv1\r\n"
    b"Max-Forwards: 69\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"
    b"Call-ID: fork1@198.51.100.7\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


def response(status: int, *headers: tuple[bytes, bytes]) -> Response:
    req = parse(INVITE)
    assert isinstance(req, Request)
    return make_response(req, status, headers=list(headers))


def pick(*finals: int | tuple[int, bool]) -> int:
    candidates = [
        Candidate(response=response(f)) if isinstance(f, int)
        else Candidate(response=response(f[0]), local=f[1])
        for f in finals
    ]  # fmt: skip
    return best_final(candidates)[1].status


@pytest.mark.parametrize(
    ("finals", "status"),
    [
        ((486, 404), 486),  # same class: the first received
        ((404, 486), 404),
        ((486, 302), 302),  # lowest class
        ((500, 486, 603), 603),  # any 6xx wins
        ((486, 600), 600),
        ((486, 407), 407),  # resubmission information is preferred in 4xx
        ((404, 484, 486), 484),
        (((408, True), 486), 486),  # a UA's answer beats the edge's timeout
        (((408, True),), 408),
        ((503,), 500),  # "If the only response ... is a 503 ... generate a 500"
        (((503, True), 502), 502),
        ((500, 503), 500),
        ((503, 486), 486),
    ],
    ids=str,
)
def test_best_final_follows_16_7_step_6(
    finals: tuple[int | tuple[int, bool], ...], status: int
) -> None:
    assert pick(*finals) == status


def test_best_final_returns_the_index_of_the_chosen_branch() -> None:
    candidates = [Candidate(response=response(s)) for s in (486, 603, 404)]
    index, best = best_final(candidates)
    assert index == 1
    assert best is candidates[1].response


def test_best_final_503_becomes_500_with_the_rest_untouched() -> None:
    busy = response(503, (b"Retry-After", b"30"))
    _, best = best_final([Candidate(response=busy)])
    assert (best.status, best.reason) == (500, b"Server Internal Error")
    assert bytes(best).partition(b"\r\n")[2] == bytes(busy).partition(b"\r\n")[2]


def test_best_final_merges_every_challenge_of_401_and_407() -> None:
    www = (b"WWW-Authenticate", b'Digest realm="a.example", nonce="n1"')
    proxy1 = (b"Proxy-Authenticate", b'Digest realm="b.example", nonce="n2"')
    proxy2 = (b"Proxy-Authenticate", b'Digest realm="c.example", nonce="n3", algorithm=SHA-256')
    finals = [
        Candidate(response=response(486)),
        Candidate(response=response(401, www)),
        Candidate(response=response(407, proxy1, proxy2)),
    ]
    index, best = best_final(finals)
    assert index == 1
    assert best.status == 401
    # §16.7 step 7: "add them to this response without modification".
    assert best.headers.get_lines("www-authenticate") == [www[1]]
    assert best.headers.get_lines("proxy-authenticate") == [proxy1[1], proxy2[1]]
    assert len(best.www_authenticate) == 1
    assert len(best.proxy_authenticate) == 2


def test_with_challenges_ignores_other_classes_and_keeps_own() -> None:
    own = response(407, (b"Proxy-Authenticate", b'Digest realm="a", nonce="1"'))
    other = response(486, (b"Proxy-Authenticate", b'Digest realm="x", nonce="2"'))
    assert bytes(with_challenges(own, [other])) == bytes(own)


def test_best_final_needs_a_candidate() -> None:
    with pytest.raises(ValueError, match="no final"):
        best_final([])
