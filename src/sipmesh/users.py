"""Subscribers: names, HA1s, the users CSV, and the ``subscribers`` bucket.

The command line (``sipmesh user ...``) is a thin shell over this module. The
pure half (names, :func:`make_subscriber`, :func:`parse_users_csv`) needs no
NATS; the async half reads and writes a :class:`nats.js.kv.KeyValue`.

Only the two digest HA1 values are stored, never the password (the record is
:class:`sipmesh_bus.records.Subscriber`, keyed by :func:`aor_key`).
"""

from __future__ import annotations

import asyncio
import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from sipmesh_bus import records
from sipmesh_bus.kvlist import live_entries
from sipmesh_bus.records import Subscriber, aor_key
from sipmsg.digest import ha1_md5, ha1_sha256

__all__ = [
    "IMPORT_BATCH",
    "InputError",
    "UserRow",
    "canonical_domain",
    "check_user",
    "delete_subscriber",
    "get_subscriber",
    "make_subscriber",
    "parse_users_csv",
    "put_subscribers",
    "read_subscribers",
    "split_name",
]

IMPORT_BATCH: Final = 500
#: KV puts in flight at once during an import.

# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved ), with
# unreserved = alphanum / mark, mark = "-" / "_" / "." / "!" / "~" / "*" / "'"
# / "(" / ")", user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/".
# Escapes are left out: the stored user is the unescaped form, and a name that
# needs escaping is almost always a typo on the command line.
_USER_RE: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]+")
_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_\-]*[a-z0-9_])?"
_DOMAIN_RE: Final = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}|\[[0-9a-f:.]+\]")
_SIPP_HEADERS: Final = ("SEQUENTIAL", "RANDOM", "USER")
_CSV_HEADERS: Final = frozenset({"user,password", "user,password,domain"})


class InputError(ValueError):
    """Bad input from the user (a name, a domain, a CSV line). ``str()`` is one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRow:
    """One user of a CSV file, validated."""

    user: str
    password: str
    domain: str
    #: The canonical domain: the line's own, else the default one.
    line: int
    #: 1-based line number in the file, for messages.


def canonical_domain(domain: str) -> str:
    """The domain as keys and realms use it: lower case, no trailing dot.

    Raises:
        InputError: not a host name, IPv4 address or ``[IPv6]`` reference.
    """
    canon = domain.strip().lower().rstrip(".")
    if not _DOMAIN_RE.fullmatch(canon):
        raise InputError(f"bad domain {domain!r}: expected a host name such as example.com")
    return canon


def check_user(user: str) -> str:
    """Return ``user`` if it is a valid SIP user part (RFC 3261 §25.1, unescaped).

    Raises:
        InputError: empty, or a character a SIP user part cannot hold unescaped.
    """
    if not _USER_RE.fullmatch(user):
        raise InputError(
            f"bad user name {user!r}: use letters, digits and -_.!~*'()&=+$,;?/"
            if user
            else "empty user name"
        )
    return user


def split_name(name: str, domain: str | None) -> tuple[str, str | None]:
    """``user`` or ``user@domain`` into ``(user, domain)``, both checked.

    Args:
        name: what the user typed.
        domain: ``--domain``, if given; it must agree with a domain in ``name``.

    Returns:
        The user and the canonical domain (None when neither says).

    Raises:
        InputError: a bad user or domain, or two different domains.
    """
    user, at, in_name = name.rpartition("@") if "@" in name else (name, "", "")
    user = check_user(user)
    named = canonical_domain(in_name) if at else None
    given = canonical_domain(domain) if domain else None
    if named and given and named != given:
        raise InputError(f"{name!r} names domain {named}, but the domain given is {given}")
    return user, named or given


def make_subscriber(user: str, domain: str, password: str) -> Subscriber:
    """The stored record: HA1s over ``user:domain:password`` (realm = domain).

    Args:
        user: a checked user part.
        domain: the canonical domain (the digest realm).
        password: the password; it is hashed here and kept nowhere.

    Raises:
        InputError: an empty password.
    """
    if not password:
        raise InputError(f"empty password for {user}@{domain}")
    args = (user.encode("utf-8"), domain.encode("utf-8"), password.encode("utf-8"))
    return Subscriber(
        user=user,
        domain=domain,
        ha1_md5=ha1_md5(*args).decode("ascii"),
        ha1_sha256=ha1_sha256(*args).decode("ascii"),
    )


def _delimiter(first: str) -> str:
    return ";" if ";" in first else ","


def parse_users_csv(text: str, *, source: str, domain: str | None = None) -> list[UserRow]:
    """Parse and validate a whole users file; nothing is returned unless all is good.

    Two formats, told apart by the first data line:

    - SIPp injection files: ``user;password[;domain]``, optionally after a
      first line ``SEQUENTIAL``, ``RANDOM`` or ``USER`` (with any
      ``,PRINTF=...`` options), which is skipped;
    - CSV: ``user,password[,domain]``, standard quoting, optionally after a
      header line ``user,password[,domain]``.

    Blank lines and lines starting with ``#`` are skipped; spaces around a
    field are ignored. A user may appear once per domain.

    Args:
        text: the file's content.
        source: the file name, to prefix messages with.
        domain: the canonical domain of lines that name none; None makes
            such a line an error.

    Returns:
        The rows in file order.

    Raises:
        InputError: ``<source>:<line>: <problem>`` for the first bad line.
    """
    # Only \n ends a line (and a \r before it goes): str.splitlines() would also
    # split at \f, \x1c ... and number the lines unlike an editor does.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    start = 0
    delimiter = None
    first = lines[0].strip()
    # The CSV header first: "user,password" also starts like SIPp's "USER".
    if first.replace(" ", "").lower() in _CSV_HEADERS:
        start, delimiter = 1, ","
    elif _is_sipp_header(first):
        start, delimiter = 1, ";"
    rows: list[UserRow] = []
    seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines[start:], start + 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        delimiter = delimiter or _delimiter(line)
        row = _parse_line(line, delimiter, source=source, number=number, domain=domain)
        key = (row.user, row.domain)
        if key in seen:
            where = f"{row.user}@{row.domain}"
            raise InputError(f"{source}:{number}: {where} is already on line {seen[key]}")
        seen[key] = number
        rows.append(row)
    return rows


def _is_sipp_header(line: str) -> bool:
    # SIPp: "SEQUENTIAL", "RANDOM" or "USER", then optional ",PRINTF=n",
    # ",PRINTFMULTIPLE=n", ",PRINTFOFFSET=n". Anything else is a user line (a
    # CSV line "random,pw" is the user "random").
    keyword, *options = line.upper().split(",")
    return keyword in _SIPP_HEADERS and all(o.startswith("PRINTF") for o in options)


def _parse_line(
    line: str, delimiter: str, *, source: str, number: int, domain: str | None
) -> UserRow:
    where = f"{source}:{number}"
    expected = f"expected user{delimiter}password[{delimiter}domain]"
    try:
        fields = next(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise InputError(f"{where}: {expected} ({exc})") from None
    fields = [f.strip() for f in fields]
    if len(fields) not in (2, 3) or not fields[0] or not fields[1]:
        raise InputError(f"{where}: {expected}")
    own: str | None = None
    if len(fields) == 3:
        # Never echo the field: it may be the tail of a password that holds
        # the delimiter.
        try:
            own = canonical_domain(fields[2])
        except InputError:
            raise InputError(
                f"{where}: field 3 is not a domain (quote a password that holds {delimiter!r})"
            ) from None
    try:
        user, named = split_name(fields[0], own)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    named = named or domain
    if named is None:
        raise InputError(f"{where}: no domain: add {delimiter}domain or pass --domain")
    return UserRow(user=user, password=fields[1], domain=named, line=number)


# --- the subscribers bucket -------------------------------------------------


async def put_subscribers(
    bucket: KeyValue,
    subscribers: Sequence[Subscriber],
    *,
    batch: int = IMPORT_BATCH,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Store subscribers, ``batch`` puts in flight at a time.

    Each put replaces a user's record whole, so running it again is safe.

    Args:
        bucket: the ``subscribers`` bucket.
        subscribers: the records.
        batch: puts awaited together.
        progress: called with the number stored so far after each batch.

    Raises:
        nats.errors.Error, nats.js.errors.Error: NATS failed; earlier batches stay stored.
    """
    done = 0
    for offset in range(0, len(subscribers), batch):
        chunk = subscribers[offset : offset + batch]
        await asyncio.gather(
            *(bucket.put(aor_key(s.user, s.domain), records.encode_record(s)) for s in chunk)
        )
        done += len(chunk)
        if progress is not None:
            progress(done)


async def delete_subscriber(bucket: KeyValue, user: str, domain: str) -> bool:
    """Remove a subscriber and its history (the old HA1s too).

    Returns:
        False when there was no such subscriber.
    """
    key = aor_key(user, domain)
    try:
        await bucket.get(key)
    except KeyNotFoundError:  # get() raises it for a deleted or purged key too
        return False
    await bucket.purge(key)
    return True


async def get_subscriber(bucket: KeyValue, user: str, domain: str) -> Subscriber | None:
    """The stored subscriber, or None (an unreadable record counts as none)."""
    try:
        entry = await bucket.get(aor_key(user, domain))
    except KeyNotFoundError:
        return None
    return _decode(entry.value)


async def read_subscribers(bucket: KeyValue, *, domain: str | None = None) -> list[Subscriber]:
    """Every subscriber (of ``domain`` only, if given), by domain then user.

    Records that do not decode are skipped: the registrar ignores them too.
    """
    keys = f"{aor_key('x', domain).partition('.')[0]}.*" if domain else ">"
    found: list[Subscriber] = []
    for entry in (await live_entries(bucket, keys)).values():
        subscriber = _decode(entry.value)
        if subscriber is not None:
            found.append(subscriber)
    return sorted(found, key=lambda s: (s.domain, s.user))


def _decode(value: bytes | None) -> Subscriber | None:
    if not value:
        return None
    try:
        return records.decode_subscriber(value)
    except ValueError:  # msgspec.DecodeError and ValidationError are ValueErrors
        return None
