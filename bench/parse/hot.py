"""The services' hot paths through sipmsg, timed on process CPU time.

Run with ``.venv/bin/python bench/parse/hot.py`` (``--number``, ``--repeat``).
Each scenario mimics what one service does with one message, on the
messages of ``bench/parse/messages/``:

- ``registrar``: parse the digest REGISTER, ``validate_request``, read To,
  From, Call-ID, CSeq, Via, Contact (URI, expires, q), Expires, Supported and
  the Authorization fields, then ``make_response(200)`` with a Contact, an
  Expires-style Date line, and ``bytes()`` of it.
- ``challenge``: parse the REGISTER, ``make_response(401)`` with a
  WWW-Authenticate line, ``bytes()``.
- ``make_response``: only ``make_response(200)`` + ``bytes()`` on a REGISTER
  parsed and validated beforehand (what the registrar pays once it has read
  the request).
- ``edge``: parse the REGISTER, the top Via's ``with_received`` from another
  address, then parse the 200 the registrar answers (the reply's bytes).
- ``router``: parse the INVITE, Request-URI, Via, From, To, Call-ID, CSeq,
  Max-Forwards, Route, Record-Route, Contact; then parse the 180 and 200 and
  read Via, CSeq, To tag, Contact, Record-Route.

Before timing, each scenario is run once and its result compared with the
expected values, so a broken path fails instead of reporting a speed.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

import sipmsg
from sipmsg import Request, Response, make_response, validate_request

MESSAGES = Path(__file__).resolve().parent / "messages"
REGISTER = (MESSAGES / "register.sip").read_bytes()
INVITE = (MESSAGES / "invite.sip").read_bytes()
RINGING = (MESSAGES / "ringing-180.sip").read_bytes()
OK = (MESSAGES / "ok-200.sip").read_bytes()

_OK_HEADERS = (
    (b"Contact", b"<sip:alice@192.0.2.10;transport=udp>;expires=3600"),
    (b"Date", b"Sun, 29 Nov 2026 15:00:00 GMT"),
)
_CHALLENGE = (
    (
        b"WWW-Authenticate",
        b'Digest realm="sip.example.net", nonce="abcdef0123456789", algorithm=MD5, qop="auth"',
    ),
)


def registrar(data: bytes) -> bytes:
    req = sipmsg.parse(data)
    assert type(req) is Request
    validate_request(req)
    out: list[object] = [req.to.uri, req.to.tag, req.from_.tag, req.call_id, req.cseq.seq]
    out.append(req.via[0].branch)
    contact = req.contact
    assert not isinstance(contact, sipmsg.Star)
    for c in contact:
        out += (c.uri, c.expires, c.q, c.params)
    out += (req.expires, req.supported, req.path)
    for cred in req.authorization:
        out += (cred.username, cred.realm, cred.nonce, cred.uri, cred.response, cred.nc)
    resp = make_response(req, 200, headers=_OK_HEADERS)
    return bytes(resp)


def challenge(data: bytes) -> bytes:
    req = sipmsg.parse(data)
    assert type(req) is Request
    _ = req.to, req.request_uri
    return bytes(make_response(req, 401, headers=_CHALLENGE))


def respond(req: Request) -> bytes:
    return bytes(make_response(req, 200, headers=_OK_HEADERS))


def edge(data: bytes, reply: bytes) -> tuple[object, ...]:
    req = sipmsg.parse(data)
    top = req.via[0]
    stamped = top.with_received(b"198.51.100.99", 40000)
    resp = sipmsg.parse(reply)
    return (bytes(stamped), resp.via[0].branch, resp.cseq.method)


def router(invite: bytes, ringing: bytes, ok: bytes) -> list[object]:
    req = sipmsg.parse(invite)
    assert type(req) is Request
    out: list[object] = [req.request_uri, req.via, req.from_.tag, req.to.tag, req.call_id]
    out += (req.cseq, req.max_forwards, req.route, req.record_route, req.contact)
    for data in (ringing, ok):
        resp = sipmsg.parse(data)
        assert type(resp) is Response
        out += (resp.via, resp.cseq, resp.to.tag, resp.contact, resp.record_route)
    return out


def check() -> None:
    ok = registrar(REGISTER)
    resp = sipmsg.parse(ok)
    assert type(resp) is Response
    assert resp.status == 200
    assert resp.headers.get_lines(b"via") == [
        b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.6Yx2~Nn3b;rport"
    ]
    assert resp.to.tag is not None
    assert (resp.from_.tag, resp.cseq.seq, resp.call_id) == (b"7Vt8kEiKp", 21, b"aR9BZ4cH6o")
    assert len(resp.contact) == 1  # type: ignore[arg-type]
    assert challenge(REGISTER).startswith(b"SIP/2.0 401 Unauthorized\r\n")
    got = edge(REGISTER, ok)
    assert got[0] == (
        b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.6Yx2~Nn3b;rport=40000;received=198.51.100.99"
    ), got
    assert got[1:] == (b"z9hG4bK.6Yx2~Nn3b", b"REGISTER")
    assert len(router(INVITE, RINGING, OK)) == 20


def best(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Best time of one call, µs of this process's CPU time."""
    timer = timeit.Timer(fn, timer=time.process_time)
    return min(timer.repeat(number=number, repeat=repeat)) / number * 1e6


def run(number: int, repeat: int) -> dict[str, float]:
    check()
    req = sipmsg.parse(REGISTER)
    assert type(req) is Request
    validate_request(req)
    ok = registrar(REGISTER)
    return {
        "registrar": best(partial(registrar, REGISTER), number, repeat),
        "challenge": best(partial(challenge, REGISTER), number, repeat),
        "make_response": best(partial(respond, req), number, repeat),
        "edge": best(partial(edge, REGISTER, ok), number, repeat),
        "router": best(partial(router, INVITE, RINGING, OK), number, repeat),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--number", type=int, default=2000, help="iterations per timing")
    ap.add_argument("--repeat", type=int, default=7, help="timings; the best is kept")
    args = ap.parse_args(argv)
    for name, us in run(args.number, args.repeat).items():
        sys.stdout.write(f"{name:14} {us:8.2f} µs\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
