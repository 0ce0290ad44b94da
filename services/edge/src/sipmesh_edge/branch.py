"""The edge's Via branch: who sent a request onwards, and a hash that tells loops from spirals.

Every request the edge forwards carries, in the edge's own Via, a branch of the form::

    z9hG4bK.<edge-id>.<loop-hash>.<unique>

* ``z9hG4bK`` is the RFC 3261 §8.1.1.7 magic cookie ("The branch ID inserted
  by an element compliant with this specification MUST always begin with the
  characters "z9hG4bK"").
* ``<edge-id>`` names the edge that holds the client transaction, so a response
  that reaches another replica (over a connection that lives there) can be
  handed to its owner (ARCHITECTURE.md, "edge ids are carried in the Via branch").
* ``<loop-hash>`` is the §16.6 item 8 hash, which §16.3 item 4 uses: "the
  element MAY perform the branch parameter calculation described in Section
  16.6 on this message and compare it to the parameter received in that Via
  header field. If the parameters match, the request has looped. If they
  differ, the request has spiraled".
* ``<unique>`` makes the branch unique in space and time (§8.1.1.7).

Edge ids are NATS tokens (letters, digits, ``_``, ``-``) and hashes and unique
parts are lower-case base 32, so ``.`` separates the parts unambiguously and the
whole is a valid ``token`` (§25.1).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

from sipmsg import Request

__all__ = ["BranchInfo", "BranchMaker", "is_loop", "loop_hash", "parse_branch"]

_PREFIX: Final = b"z9hG4bK."
_HASH_BYTES: Final = 10


class BranchInfo:
    """What an edge branch says.

    (A plain class, not a frozen dataclass: mypyc compiles a written
    ``__init__``, where a dataclass's generated one runs interpreted.)
    """

    __slots__ = ("edge_id", "loop_hash")

    def __init__(self, *, edge_id: str, loop_hash: bytes) -> None:
        self.edge_id: Final = edge_id
        #: The edge that sent the request onwards (and holds its client transaction).
        self.loop_hash: Final = loop_hash
        #: :func:`loop_hash` of the request that edge received.


def loop_hash(req: Request) -> bytes:
    """The §16.6 item 8 hash of the fields that stay the same when a request loops.

    "the proxy may choose to incorporate into its branch parameter a hash of
    the values of: To tag, From tag, Call-ID header field, the Request-URI of
    the request received (before translation), the topmost Via header, and the
    sequence number from the CSeq header field, in addition to any
    Proxy-Require and Proxy-Authorization header fields that may be present."

    The topmost Via is left out on purpose: it is the previous hop's, so a
    request that comes back through another proxy (the loop this is meant to
    catch) always has a different one, and the hash would never match.

    Args:
        req: the request as received (before the Request-URI is translated).

    Returns:
        16 characters of lower-case base 32.

    Raises:
        ParseError: the From, To, Call-ID or CSeq header is malformed.
    """
    # One hash of the parts, each ended by a NUL (one update per part, as
    # before, hashes the same bytes: the branches of older edges still match).
    parts = [req.uri, req.to_tag or b"", req.from_tag or b"", req.call_id, b"%d" % req.cseq.seq]
    keys = req.headers.keys()
    for name in _ALSO_HASHED:
        if name in keys:
            parts.extend(req.headers.get_lines(name))
    parts.append(b"")
    return _b32(_BLAKE2B(b"\x00".join(parts), digest_size=_HASH_BYTES).digest())


def parse_branch(branch: bytes) -> BranchInfo | None:
    """Read an edge branch; None when ``branch`` is not one (another element's)."""
    if not branch.startswith(_PREFIX):
        return None
    parts = branch[len(_PREFIX) :].split(b".")
    if len(parts) < 3 or not parts[0] or not parts[1]:
        return None
    try:
        edge_id = parts[0].decode("ascii")
    except UnicodeDecodeError:
        return None
    return BranchInfo(edge_id=edge_id, loop_hash=parts[1])


class BranchMaker:
    """Makes the branches of one edge: a random prefix per process and a counter.

    Args:
        edge_id: this edge's id (a NATS token, so it holds no ``.``).
    """

    __slots__ = ("_count", "_head", "_salt")

    def __init__(self, edge_id: str) -> None:
        self._head = _PREFIX + edge_id.encode("ascii") + b"."
        self._count = 0
        self._salt = b"." + secrets.token_hex(3).encode()
        #: The unique part's random prefix, with the dot before it.

    def make(self, received: Request) -> bytes:
        """A new branch for a request forwarded on behalf of ``received``.

        Raises:
            ParseError: see :func:`loop_hash`.
        """
        count = self._count + 1
        self._count = count
        # One join (a compiled int attribute, no itertools.count to call).
        return b"".join((self._head, loop_hash(received), self._salt, b"%x" % count))


def is_loop(req: Request, own: list[BranchInfo]) -> bool:
    """Whether ``req`` looped, given the edge branches of the Vias that name this platform.

    Raises:
        ParseError: see :func:`loop_hash`.
    """
    if not own:
        return False
    mine = loop_hash(req)
    return any(info.loop_hash == mine for info in own)


def _b32(digest: bytes) -> bytes:
    """``base64.b32encode(digest).rstrip(b"=").lower()`` for the 10-byte digest, faster.

    80 bits are exactly 16 base 32 digits: 8 table lookups of 10 bits each,
    read from two 40-bit halves (small ints: compiled, no long arithmetic).
    """
    pairs = _B32_PAIRS
    # Indexing bytes is a compiled primitive; int.from_bytes is a Python call.
    d = digest
    hi = (d[0] << 32) | (d[1] << 24) | (d[2] << 16) | (d[3] << 8) | d[4]
    lo = (d[5] << 32) | (d[6] << 24) | (d[7] << 16) | (d[8] << 8) | d[9]
    return b"".join(
        [
            pairs[hi >> 30],
            pairs[(hi >> 20) & 0x3FF],
            pairs[(hi >> 10) & 0x3FF],
            pairs[hi & 0x3FF],
            pairs[lo >> 30],
            pairs[(lo >> 20) & 0x3FF],
            pairs[(lo >> 10) & 0x3FF],
            pairs[lo & 0x3FF],
        ]
    )


_BLAKE2B: Final = hashlib.blake2b
#: Bound once (not looked up on the module per branch).
_ALSO_HASHED: Final = (b"proxy-require", b"proxy-authorization")
_B32_ALPHABET: Final = b"abcdefghijklmnopqrstuvwxyz234567"
#: RFC 4648 §6 base 32, lower-cased.
_B32_PAIRS: Final = tuple(
    bytes((_B32_ALPHABET[i >> 5], _B32_ALPHABET[i & 31])) for i in range(1024)
)
