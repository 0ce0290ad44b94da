"""Parser micro-benchmark: sipmsg against the pure-Python PyPI package ``sipmessage``.

Run with ``.venv/bin/python bench/parse/run.py`` (or ``make bench-parse``).
Every message in ``bench/parse/messages/`` is timed with :mod:`timeit` on
the process's CPU time, best of ``--repeat`` runs of a fixed iteration
count, both libraries in the same process, one message after the other.
Before anything is timed, each measured function is run once and its result
checked against the expected values below, so a benchmark that measures a
broken parse fails instead of reporting a speed.

What is timed, per message (all on the same bytes):

- ``parse``: ``sipmsg.parse(data)``: split start line and headers, nothing typed.
- ``classify (parse+accessors)``: what the edge reads to route a message through
  the general parser: parse, the start line, the top Via branch, Call-ID, CSeq,
  the From and To tags, Content-Length.
- ``peek``: ``sipmsg.peek(data)``, the one-pass classifying parse: the same
  fields plus the top Via's sent-by and Max-Forwards, in a ``Summary``.
- ``full``: parse, then every typed accessor sipmsg has, and every field of
  every value they return (a lazily parsed part, such as an Address's URI or
  a Via's parameters, is forced).
- ``bytes``: ``bytes(msg)`` of a message parsed beforehand and left untouched,
  next to two copies of the same octets: ``bytes(bytearray(data))`` and a
  slice ``data[:-1]`` (a real copy: ``data[:]`` of bytes is the same object).
- ``sm parse`` / ``sm full``: ``sipmessage.Message.parse(data)``, then every
  typed property its ``Message`` offers, read once each (its values are
  built eagerly, so reading the property parses all of the value).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
import timeit
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import sipmessage

import sipmsg
from sipmsg import Address, Request, Response, SipUri, TelUri, Via

HERE = Path(__file__).resolve().parent
MESSAGES = HERE / "messages"
RESULTS = HERE.parent / "results"

# What the classifying parse must read from each message:
# (start line, top Via branch, Call-ID, CSeq, From tag, To tag, Content-Length).
EXPECTED: dict[str, tuple[object, ...]] = {
    "register.sip": (
        b"REGISTER",
        b"z9hG4bK.6Yx2~Nn3b",
        b"aR9BZ4cH6o",
        (21, b"REGISTER"),
        b"7Vt8kEiKp",
        None,
        0,
    ),
    "invite.sip": (
        b"INVITE",
        b"z9hG4bK4a1e.b0c6c1f2d9a7e3f18b4c2d6e0a9f5b71.0",
        b"47f1d9c5e3b2a1f0",
        (24716, b"INVITE"),
        b"5e1b0f7c9a2d4e36",
        None,
        391,
    ),
    "ringing-180.sip": (
        180,
        b"z9hG4bK4a1e.b0c6c1f2d9a7e3f18b4c2d6e0a9f5b71.0",
        b"47f1d9c5e3b2a1f0",
        (24716, b"INVITE"),
        b"5e1b0f7c9a2d4e36",
        b"as6d3f1b72",
        0,
    ),
    "ok-200.sip": (
        200,
        b"z9hG4bK4a1e.b0c6c1f2d9a7e3f18b4c2d6e0a9f5b71.0",
        b"47f1d9c5e3b2a1f0",
        (24716, b"INVITE"),
        b"5e1b0f7c9a2d4e36",
        b"as6d3f1b72",
        297,
    ),
}


# -- sipmsg ------------------------------------------------------------------


def sipmsg_parse(data: bytes) -> object:
    return sipmsg.parse(data)


def sipmsg_classify(data: bytes) -> tuple[object, ...]:
    msg = sipmsg.parse(data)
    start = msg.method if type(msg) is Request else msg.status  # type: ignore[union-attr]
    cseq = msg.cseq
    return (
        start,
        msg.via_branch,
        msg.call_id,
        (cseq.seq, cseq.method),
        msg.from_tag,
        msg.to_tag,
        msg.content_length,
    )


def sipmsg_peek(data: bytes) -> tuple[object, ...]:
    s = sipmsg.peek(data)
    return (
        s.method if s.is_request else s.status,
        s.via_branch,
        s.call_id,
        (s.cseq_seq, s.cseq_method),
        s.from_tag,
        s.to_tag,
        s.content_length,
    )


def _uri(u: object) -> tuple[object, ...]:
    if type(u) is SipUri:
        return (u.scheme, u.user, u.password, u.host, u.port, u.params, u.headers)
    if type(u) is TelUri:
        return (u.number, u.params)
    return (bytes(u),)  # type: ignore[call-overload]


def _address(a: Address) -> tuple[object, ...]:
    return (a.display_name, _uri(a.uri), a.params, a.tag)


def _via(v: Via) -> tuple[object, ...]:
    return (v.protocol, v.transport, v.host, v.port, v.params, v.branch)


def sipmsg_full(data: bytes) -> list[object]:
    """Every typed accessor of sipmsg, and every field of what each returns."""
    msg = sipmsg.parse(data)
    out: list[object] = []
    add = out.append
    if type(msg) is Request:
        add(msg.method)
        add(_uri(msg.request_uri))
    else:
        add(msg.status)  # type: ignore[union-attr]
        add(msg.reason)  # type: ignore[union-attr]
    add([_via(v) for v in msg.via])
    add(_address(msg.from_))
    add(_address(msg.to))
    contact = msg.contact
    add(contact if isinstance(contact, sipmsg.Star) else [_address(a) for a in contact])
    add(msg.call_id)
    cseq = msg.cseq
    add((cseq.seq, cseq.method))
    add(msg.max_forwards)
    add([_address(a) for a in msg.route])
    add([_address(a) for a in msg.record_route])
    add([_address(a) for a in msg.path])
    ct = msg.content_type
    add(None if ct is None else (ct.type, ct.subtype, ct.params))
    add(msg.content_length)
    add(msg.expires)
    add(msg.user_agent)
    add(msg.allow)
    add(msg.supported)
    add(msg.require)
    add(msg.proxy_require)
    add(msg.unsupported)
    add([(c.scheme, c.params) for c in msg.www_authenticate])
    add([(c.scheme, c.params) for c in msg.proxy_authenticate])
    add([(c.scheme, c.username, c.response, c.params) for c in msg.authorization])
    add([(c.scheme, c.username, c.response, c.params) for c in msg.proxy_authorization])
    return out


def sipmsg_bytes(msg: Request | Response) -> bytes:
    return bytes(msg)


def copy_bytearray(data: bytes) -> bytes:
    return bytes(bytearray(data))


def copy_slice(data: bytes) -> bytes:
    return data[:-1]


# -- sipmessage --------------------------------------------------------------

_SM_PROPERTIES = frozenset(
    {
        *("accept", "authorization", "call_id", "contact", "content_language"),
        *("content_length", "content_type", "cseq", "date", "expires", "from_address"),
        *("in_reply_to", "max_forwards", "min_expires", "proxy_authenticate"),
        *("proxy_authorization", "proxy_require", "record_route", "require", "route"),
        *("server", "subject", "supported", "to_address", "unsupported", "user_agent"),
        *("via", "www_authenticate"),
    }
)


def _sm_check_properties() -> None:
    """Fail if sipmessage grew or lost a typed property since this list was written."""
    found = sorted(n for n, v in vars(sipmessage.Message).items() if isinstance(v, property))
    if set(found) != _SM_PROPERTIES:
        raise SystemExit(f"sipmessage.Message properties changed: {found}")


def sipmessage_parse(data: bytes) -> object:
    return sipmessage.Message.parse(data)


def sipmessage_full(data: bytes) -> list[object]:
    """sipmessage's parse, then each of its typed properties read once."""
    m: Any = sipmessage.Message.parse(data)
    return [
        m.uri if isinstance(m, sipmessage.Request) else m.code,
        m.accept,
        m.authorization,
        m.call_id,
        m.contact,
        m.content_language,
        m.content_length,
        m.content_type,
        m.cseq,
        m.date,
        m.expires,
        m.from_address,
        m.in_reply_to,
        m.max_forwards,
        m.min_expires,
        m.proxy_authenticate,
        m.proxy_authorization,
        m.proxy_require,
        m.record_route,
        m.require,
        m.route,
        m.server,
        m.subject,
        m.supported,
        m.to_address,
        m.unsupported,
        m.user_agent,
        m.via,
        m.www_authenticate,
    ]


# -- correctness ---------------------------------------------------------------


def check(name: str, data: bytes) -> None:
    """Assert that what is measured computes the right thing on ``data``."""
    got = sipmsg_classify(data)
    assert got == EXPECTED[name], f"{name}: classify gave {got}, expected {EXPECTED[name]}"
    got = sipmsg_peek(data)
    assert got == EXPECTED[name], f"{name}: peek gave {got}, expected {EXPECTED[name]}"
    assert bytes(sipmsg.parse(data)) is data, f"{name}: bytes(msg) is not the parsed buffer"
    full = sipmsg_full(data)
    assert len(full) == 25
    assert full == sipmsg_full(data)
    # Both libraries read the same message: what both expose must agree.
    m = sipmsg.parse(data)
    sm: Any = sipmessage.Message.parse(data)
    if isinstance(m, Request):
        assert (m.method, bytes(m.request_uri)) == (sm.method.encode(), str(sm.uri).encode())
    else:
        assert (m.status, m.reason) == (sm.code, sm.phrase.encode())
    assert m.call_id == sm.call_id.encode()
    assert (m.cseq.seq, m.cseq.method) == (sm.cseq.sequence, sm.cseq.method.encode())
    assert [(v.transport, v.host, v.port, v.branch) for v in m.via] == [
        (v.transport.encode(), v.host.encode(), v.port, v.parameters["branch"].encode())
        for v in sm.via
    ]
    for ours, theirs in [(m.from_, sm.from_address), (m.to, sm.to_address)]:
        assert _sip_uri(ours.uri) == (theirs.uri.user, theirs.uri.host, theirs.uri.port)
        assert ours.tag == (theirs.parameters.get("tag") or "").encode() or ours.tag is None
    contact = m.contact
    assert not isinstance(contact, sipmsg.Star)
    assert [_sip_uri(a.uri) for a in contact] == [
        (a.uri.user, a.uri.host, a.uri.port) for a in sm.contact
    ]
    assert [bytes(a.uri) for a in m.record_route] == [str(a.uri).encode() for a in sm.record_route]
    assert m.max_forwards == sm.max_forwards
    assert m.expires == sm.expires
    assert m.content_length == sm.content_length == len(m.body)
    ct = m.content_type
    assert (ct and ct.mime) == (sm.content_type and str(sm.content_type).encode())
    assert list(m.supported) == [s.encode() for s in sm.supported]
    assert m.user_agent == (sm.user_agent and sm.user_agent.encode())
    ours_auth = [(c.username, c.realm, c.nonce, c.response, c.nc) for c in m.authorization]
    if sm.authorization is None:
        assert ours_auth == []
    else:
        p = sm.authorization.parameters
        assert [a[:4] for a in ours_auth] == [
            tuple(p[k].encode() for k in ("username", "realm", "nonce", "response"))
        ]


def _sip_uri(u: object) -> tuple[str | None, str, int | None]:
    assert isinstance(u, SipUri)
    return (None if u.user is None else u.user.decode(), u.host.decode(), u.port)


# -- timing --------------------------------------------------------------------


def best(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Best time of one call, in microseconds of this process's CPU time.

    CPU time rather than wall time: on a shared machine another process that
    takes the core does not count against the parser (cache effects still do).
    """
    timer = timeit.Timer(fn, timer=time.process_time)
    return min(timer.repeat(number=number, repeat=repeat)) / number * 1e6


def run(number: int, repeat: int) -> str:
    _sm_check_properties()
    rows = []
    for path in sorted(MESSAGES.glob("*.sip")):
        data = path.read_bytes()
        check(path.name, data)
        msg = sipmsg.parse(data)
        t = {
            "parse": best(partial(sipmsg_parse, data), number, repeat),
            "classify": best(partial(sipmsg_classify, data), number, repeat),
            "peek": best(partial(sipmsg_peek, data), number, repeat),
            "full": best(partial(sipmsg_full, data), number, repeat),
            "bytes": best(partial(sipmsg_bytes, msg), number * 10, repeat),
            "bytearray": best(partial(copy_bytearray, data), number * 10, repeat),
            "slice": best(partial(copy_slice, data), number * 10, repeat),
            "sm_parse": best(partial(sipmessage_parse, data), number, repeat),
            "sm_full": best(partial(sipmessage_full, data), number, repeat),
        }
        rows.append((path.name, len(data), t))
    return table(rows, number, repeat)


def table(rows: list[tuple[str, int, dict[str, float]]], number: int, repeat: int) -> str:
    lines = [
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"timeit (process CPU time) best of {repeat} x {number} iterations, µs per message; "
        f"sipmessage {sipmessage_version()}.",
        "",
        "| message | octets | parse | classify (parse+accessors) | peek | full typed "
        "| bytes(msg) | bytes(bytearray) | slice copy | sm parse | sm full | sm full / full |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, size, t in rows:
        lines.append(
            f"| {name} | {size} | {t['parse']:.2f} | {t['classify']:.2f} | {t['peek']:.2f} "
            f"| {t['full']:.2f} "
            f"| {t['bytes']:.3f} | {t['bytearray']:.3f} | {t['slice']:.3f} "
            f"| {t['sm_parse']:.2f} | {t['sm_full']:.2f} | {t['sm_full'] / t['full']:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def sipmessage_version() -> str:
    return version("sipmessage")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--number", type=int, default=2000, help="iterations per timing")
    ap.add_argument("--repeat", type=int, default=7, help="timings; the best is kept")
    ap.add_argument("--write", action="store_true", help="also write bench/results/parse-DATE.md")
    args = ap.parse_args(argv)
    out = run(args.number, args.repeat)
    sys.stdout.write(out)
    if args.write:
        RESULTS.mkdir(exist_ok=True)
        dest = RESULTS / f"parse-{datetime.date.today().isoformat()}.md"
        dest.write_text("# Parser benchmark\n\n" + out)
        sys.stdout.write(f"\nwritten to {dest}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
