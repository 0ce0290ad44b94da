"""The branch the router puts on its Via, shared with the edge.

The router derives the branch of every request it forwards from the request it
received; the edge forwards the ACK of a 2xx itself on the router's behalf
(``schema.AckRoute``) and must write the very branch the router would have. One
function for both keeps them equal.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["BRANCH_PREFIX", "branch_for"]

#: Every branch the router writes starts so (loop detection knows its own Vias):
#: RFC 3261's magic cookie (§8.1.1.7, "z9hG4bK") and "sm".
BRANCH_PREFIX: Final = b"z9hG4bKsm"


def branch_for(caller_branch: bytes, call_id: bytes, attempt: int, salt: bytes = b"") -> bytes:
    """A branch for the request we send, derived from the one we received.

    §16.6 step 8: "the branch parameter value ... MUST be unique across space
    and time" and §16.11 suggests deriving it from the incoming request so a
    retransmission maps to the same branch. ``attempt`` separates failovers.
    """
    digest = hashlib.sha256(b"%s\x00%s\x00%d\x00%s" % (caller_branch, call_id, attempt, salt))
    return BRANCH_PREFIX + digest.hexdigest()[:24].encode()
