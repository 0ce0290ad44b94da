"""The best final response of a fork (RFC 3261 §16.7 steps 6 and 7): pure functions.

When every branch of one ``Forward`` group has a final response and none was a
2xx (a 2xx is passed on at once), the edge asks the router once, with the
response :func:`best_final` picks:

- §16.7 step 6: "It MUST choose from the 6xx class responses if any exist in
  the context. If no 6xx class responses are present, the proxy SHOULD choose
  from the lowest response class stored in the response context. The proxy
  MAY select any response within that chosen class. The proxy SHOULD give
  preference to responses that provide information affecting resubmission of
  this request, such as 401, 407, 415, 420, and 484 if the 4xx class is chosen."
  Within a class this module prefers, in order: those five codes; a response
  a UA sent over one the edge made up (a timeout's 408, a transport failure's
  503); the one received first. So 486 then 404 gives 486, 404 then 486 gives
  404, and a 486 beats the 408 of a branch that never answered (the caller
  hears "busy", not "timeout").
- "If the only response that was received is a 503, the proxy SHOULD generate
  a 500 response and forward that upstream": a chosen 503 becomes a 500 ("a
  503 means that the proxy knows it cannot service any requests").
- §16.7 step 7: "If the selected response is a 401 (Unauthorized) or 407
  (Proxy Authentication Required), the proxy MUST collect any WWW-Authenticate
  and Proxy-Authenticate header field values from all other 401 (Unauthorized)
  and 407 (Proxy Authentication Required) responses received so far in this
  response context and add them to this response without modification".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sipmsg import ParseError, Response, parse

__all__ = ["Candidate", "best_final", "with_challenges"]

_RESUBMISSION: Final = frozenset({401, 407, 415, 420, 484})
_CHALLENGES: Final = (
    (b"WWW-Authenticate", "www-authenticate"),
    (b"Proxy-Authenticate", "proxy-authenticate"),
)


class Candidate:
    """One branch's final response, in the order they arrived.

    (A plain class, not a frozen dataclass: mypyc compiles a written
    ``__init__``, where a dataclass's generated one runs interpreted.)
    """

    __slots__ = ("local", "response")

    def __init__(self, *, response: Response, local: bool = False) -> None:
        self.response: Final = response
        self.local: Final = local
        #: Made up by the edge (Timer B/C 408, transport failure 503), not sent by a UA.


def best_final(candidates: Sequence[Candidate]) -> tuple[int, Response]:
    """The response to pass upstream for a fork whose branches all failed.

    Args:
        candidates: the non-2xx final responses, in arrival order (not empty).

    Returns:
        The index of the chosen candidate, and the response to send upstream
        (the 503 to 500 conversion and the challenge merge applied).

    Raises:
        ValueError: ``candidates`` is empty (a caller bug, not wire input).
    """
    if not candidates:
        raise ValueError("no final responses to choose from")
    index = min(range(len(candidates)), key=lambda i: _rank(candidates[i], i))
    best = candidates[index].response
    if best.status in (401, 407):
        others = [c.response for i, c in enumerate(candidates) if i != index]
        best = with_challenges(best, others)
    elif best.status == 503:
        best = _as_500(best)
    return index, best


def with_challenges(best: Response, others: Sequence[Response]) -> Response:
    """``best`` with the WWW-/Proxy-Authenticate values of the other 401/407s appended (step 7)."""
    for other in others:
        if other.status not in (401, 407):
            continue
        for name, key in _CHALLENGES:
            for value in other.headers.get_lines(key):
                best = best.with_header(name, value)
    return best


def _rank(candidate: Candidate, arrival: int) -> tuple[int, int, int, int]:
    status = candidate.response.status
    klass = 0 if status >= 600 else status // 100
    return (klass, 0 if status in _RESUBMISSION else 1, int(candidate.local), arrival)


def _as_500(resp: Response) -> Response:
    data = bytes(resp)
    end = data.find(b"\r\n")
    out = parse(b"SIP/2.0 500 Server Internal Error" + data[end:])
    if not isinstance(out, Response):  # pragma: no cover - a status line stays a status line
        raise ParseError("not a response after rewriting the status line")
    return out
