"""sipmsg's hot paths as the edge, registrar and router use them, in process.

Run with ``.venv/bin/python libs/sipmsg/bench/parse_bench.py`` (after ``make
compile``: the compiled build is what the services run). Messages are shaped
as SIPp sends them in ``bench/register/sipp/reg_auth.xml`` and
``bench/call/sipp/call_*.xml`` (what the ladders measure), with the edge's
stamped Via and the router's Record-Route where those messages carry them.

``--base DIR`` times a second copy of sipmsg (``DIR`` put first on
``sys.path``, e.g. a copy of ``libs/sipmsg/src`` with its ``.so`` files made
before an edit) in child processes interleaved with the working tree's, round
by round, so both see the same machine state. Each figure is µs of process
CPU per call, best of ``--repeat`` runs of ``--number`` calls, then the best
over ``--rounds`` rounds. Every scenario is run and checked once before it is
timed, so a broken path fails instead of reporting a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sipmsg
from sipmsg import Request, Response, make_response

HERE = Path(__file__).resolve().parent


def _crlf(text: str) -> bytes:
    head, _, body = text.lstrip("\n").partition("\n\n")
    lines = [ln.strip() for ln in head.splitlines()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


REGISTER = _crlf("""
REGISTER sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-4711-1-0;rport
Max-Forwards: 70
From: <sip:user0042@127.0.0.1>;tag=4711-1
To: <sip:user0042@127.0.0.1>
Call-ID: 1-4711@127.0.0.1
CSeq: 1 REGISTER
Contact: <sip:user0042@127.0.0.1:5070;transport=UDP>
Expires: 3600
User-Agent: sipp-bench
Content-Length: 0

""")

REGISTER_AUTH = _crlf("""
REGISTER sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-4711-1-2;rport
Max-Forwards: 70
From: <sip:user0042@127.0.0.1>;tag=4711-1
To: <sip:user0042@127.0.0.1>
Call-ID: 1-4711@127.0.0.1
CSeq: 2 REGISTER
Contact: <sip:user0042@127.0.0.1:5070;transport=UDP>
Authorization: Digest username="user0042",realm="sipmesh",uri="sip:127.0.0.1:5060",\
nonce="AZdMCgAAAAB1c2VyMDA0MvS0Wm8YlqQkTnI",response="8b9e0f6d1c2a3b4c5d6e7f8091a2b3c4",\
algorithm=MD5,opaque="b2f1",qop=auth,cnonce="6b8b4567",nc=00000001
Expires: 3600
User-Agent: sipp-bench
Content-Length: 0

""")

# The registrar's 200 as the edge reads it back (its Via stamped by the edge).
REG_OK = _crlf("""
SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-4711-1-2;rport=5070;received=127.0.0.1
From: <sip:user0042@127.0.0.1>;tag=4711-1
To: <sip:user0042@127.0.0.1>;tag=9a4c1f2e
Call-ID: 1-4711@127.0.0.1
CSeq: 2 REGISTER
Contact: <sip:user0042@127.0.0.1:5070;transport=UDP>;expires=3600
Date: Sun, 29 Nov 2026 15:00:00 GMT
Content-Length: 0

""")

_SDP = """v=0
o=caller 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 16000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=sendrecv
"""

INVITE = _crlf(f"""
INVITE sip:uas@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-5150-7-0;rport
From: <sip:caller7@127.0.0.1:5061>;tag=5150SIPpTag007
To: <sip:uas@127.0.0.1:5060>
Call-ID: 7-5150@127.0.0.1
CSeq: 1 INVITE
Contact: <sip:caller@127.0.0.1:5061;transport=UDP>
Max-Forwards: 70
User-Agent: sipp-bench
Content-Type: application/sdp
Content-Length: {len(_SDP.replace(chr(10), chr(13) + chr(10)))}

{_SDP}""")

# A response to the INVITE the edge forwarded to the callee: its own Via on
# top, the caller's stamped one below, the router's Record-Route.
_RESP_HEAD = """
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK.e1.a8f3c2d1b0e9f8a7;rport=5060;received=127.0.0.1
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-5150-7-0;rport=5061;received=127.0.0.1
Record-Route: <sip:127.0.0.1:5060;lr;r=Ab3dEf9hIjKlMnOp>
From: <sip:caller7@127.0.0.1:5061>;tag=5150SIPpTag007
To: <sip:uas@127.0.0.1:5060>{to_tag}
Call-ID: 7-5150@127.0.0.1
CSeq: 1 INVITE
"""
TRYING = _crlf("SIP/2.0 100 Trying" + _RESP_HEAD.format(to_tag="") + "Content-Length: 0\n\n")
RINGING = _crlf(
    "SIP/2.0 180 Ringing"
    + _RESP_HEAD.format(to_tag=";tag=7SIPpTag017")
    + "Contact: <sip:127.0.0.1:5062;transport=UDP>\nContent-Length: 0\n\n"
)
CALL_OK = _crlf(
    "SIP/2.0 200 OK"
    + _RESP_HEAD.format(to_tag=";tag=7SIPpTag017")
    + "Contact: <sip:127.0.0.1:5062;transport=UDP>\nContent-Type: application/sdp\n"
    + f"Content-Length: {len(_SDP.replace(chr(10), chr(13) + chr(10)))}\n\n{_SDP}"
)
_IN_DIALOG = """
{method} sip:127.0.0.1:5062;transport=UDP SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-5150-7-{n};rport
Route: <sip:127.0.0.1:5060;lr;r=Ab3dEf9hIjKlMnOp>
From: <sip:caller7@127.0.0.1:5061>;tag=5150SIPpTag007
To: <sip:uas@127.0.0.1:5060>;tag=7SIPpTag017
Call-ID: 7-5150@127.0.0.1
CSeq: {cseq} {method}
Contact: <sip:caller@127.0.0.1:5061;transport=UDP>
Max-Forwards: 70
Content-Length: 0

"""
ACK = _crlf(_IN_DIALOG.format(method="ACK", n=4, cseq=1))
BYE = _crlf(_IN_DIALOG.format(method="BYE", n=5, cseq=2))

WWW_AUTH = (
    b"WWW-Authenticate",
    b'Digest realm="sipmesh", nonce="AZdMCgAAAAB1c2VyMDA0MvS0Wm8YlqQkTnI", '
    b'opaque="b2f1", algorithm=MD5, qop="auth"',
)


def scenarios() -> dict[str, tuple[Callable[[], object], object]]:
    """Name -> (the call timed, what it must return)."""
    parse = sipmsg.parse

    def req(data: bytes) -> Request:
        msg = parse(data)
        assert type(msg) is Request
        return msg

    def resp(data: bytes) -> Response:
        msg = parse(data)
        assert type(msg) is Response
        return msg

    def check_request(msg: Request) -> object:
        # What the edge's core.check_request reads.
        _ = msg.request_uri, msg.via, msg.call_id, msg.from_, msg.to, msg.max_forwards
        return msg.cseq.method

    def check_request_cft(msg: Request) -> object:
        # The same checks, From and To by check_from_to (added in session 5).
        _ = msg.request_uri, msg.via, msg.call_id, msg.max_forwards
        msg.check_from_to()
        return msg.cseq.method

    def edge_register_with(check: Callable[[Request], object]) -> Callable[[], object]:
        def edge_register() -> object:
            # triage + admit + stamp + the bus envelope's bytes, then the reply.
            msg = req(REGISTER_AUTH)
            check(msg)
            top = msg.via[0]
            out = bytes(top.with_received(b"127.0.0.2", 5070))
            data = bytes(msg)
            ok = resp(REG_OK)
            _ = ok.top_via, ok.cseq
            return (len(out) + len(data), ok.to_tag)

        return edge_register

    def edge_challenge_with(check: Callable[[Request], object]) -> Callable[[], object]:
        def edge_challenge() -> object:
            msg = req(REGISTER)
            check(msg)
            return bytes(make_response(msg, 401, headers=[WWW_AUTH]))[:16]

        return edge_challenge

    def registrar() -> object:
        msg = req(REGISTER_AUTH)
        _ = msg.to, msg.from_, msg.call_id, msg.cseq, msg.via, msg.expires
        contact = msg.contact
        assert isinstance(contact, tuple)
        _ = contact[0].uri, contact[0].expires
        cred = msg.authorization[0]
        return cred.params[0][1] if hasattr(cred, "params") else cred

    def registrar_200() -> object:
        msg = req(REGISTER_AUTH)
        out = make_response(
            msg,
            200,
            headers=[
                (b"Contact", b"<sip:user0042@127.0.0.1:5070;transport=UDP>;expires=3600"),
                (b"Date", b"Sun, 29 Nov 2026 15:00:00 GMT"),
            ],
        )
        return bytes(out)[:15]

    def edge_invite() -> object:
        msg = req(INVITE)
        check_request(msg)
        out = msg.prepend_header(b"Via", b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK.e1.x;rport")
        trying = make_response(msg, 100)
        return len(bytes(out)) + len(bytes(trying))

    def router_invite() -> object:
        msg = req(INVITE)
        _ = msg.request_uri, msg.via, msg.from_, msg.to, msg.call_id, msg.cseq
        _ = msg.max_forwards, msg.route, msg.contact
        fwd = msg.prepend_header(b"Record-Route", b"<sip:127.0.0.1:5060;lr;r=Ab3dEf9hIjKlMnOp>")
        fwd = fwd.replace_header(b"Max-Forwards", b"69").with_uri(b"sip:uas@127.0.0.1:5062")
        return len(bytes(fwd))

    def responses() -> object:
        # 100, 180, 200 as the edge reads them (check_response, then the
        # response forwarded with our Via removed).
        n = 0
        for data in (TRYING, RINGING, CALL_OK):
            r = resp(data)
            _ = r.top_via, r.cseq, r.to_tag
            keys = r.headers.keys()
            out = r.remove_line(keys.index(b"via"))
            n += len(bytes(out))
        return n

    def router_responses() -> object:
        n = 0
        for data in (RINGING, CALL_OK):
            r = resp(data)
            _ = r.via, r.cseq, r.to, r.from_, r.call_id, r.contact, r.record_route
            n += r.status
        return n

    def in_dialog() -> object:
        # ACK and BYE through the edge and the router.
        n = 0
        for data in (ACK, BYE):
            m = req(data)
            check_request(m)
            _ = m.route, m.contact
            via = b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK.x"
            n += len(bytes(m.prepend_header(b"Via", via)))
        return n

    def parse_only() -> object:
        return (parse(REGISTER_AUTH), parse(INVITE), parse(CALL_OK)) and 3

    table: dict[str, tuple[Callable[[], object], object]] = {
        "parse x3": (parse_only, 3),
        "edge REGISTER+200": (edge_register_with(check_request), None),
        "edge challenge 401": (edge_challenge_with(check_request), b"SIP/2.0 401 Unau"),
        "registrar read": (registrar, None),
        "registrar 200": (registrar_200, b"SIP/2.0 200 OK\r"),
        "edge INVITE+100": (edge_invite, None),
        "router INVITE": (router_invite, None),
        "edge 100/180/200": (responses, None),
        "router 180/200": (router_responses, 380),
        "ACK+BYE": (in_dialog, None),
    }
    if hasattr(Request, "check_from_to"):
        table["edge REGISTER+200 cft"] = (edge_register_with(check_request_cft), None)
        table["edge 401 cft"] = (edge_challenge_with(check_request_cft), b"SIP/2.0 401 Unau")
    return table


def _expected_fixups(table: dict[str, tuple[Callable[[], object], object]]) -> None:
    """Fill in the expected values that are derived from the messages."""
    for name, (fn, want) in table.items():
        got = fn()
        if want is None:
            table[name] = (fn, got)
        elif got != want:
            raise SystemExit(f"{name}: got {got!r}, want {want!r}")


def worker(number: int, repeat: int, only: str | None) -> dict[str, float]:
    table = scenarios()
    _expected_fixups(table)
    out: dict[str, float] = {}
    for name, (fn, want) in table.items():
        if only and only not in name:
            continue
        if fn() != want:
            raise SystemExit(f"{name}: result changed")
        best = float("inf")
        for _ in range(repeat):
            t0 = time.process_time()
            for _ in range(number):
                fn()
            best = min(best, time.process_time() - t0)
        out[name] = best / number * 1e6
    return out


def _child(src: str, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--worker", "-n", str(args.number), "-r", str(args.repeat)]
    if args.only:
        cmd += ["--only", args.only]
    # This script, run again by the same interpreter: no outside input.
    res = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)  # noqa: S603
    result: dict[str, float] = json.loads(res.stdout)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--number", type=int, default=2000)
    ap.add_argument("-r", "--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base", help="a copy of libs/sipmsg/src to compare against")
    ap.add_argument("--only", help="scenarios whose name holds this")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.number, args.repeat, args.only)))
        return
    here_src = str(HERE.parent / "src")
    runs: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
    for _ in range(args.rounds):
        if args.base:
            runs["base"].append(_child(args.base, args))
        runs["new"].append(_child(here_src, args))
    names = list(runs["new"][0])
    print(f"{'µs per call (best)':24} {'base':>8} {'new':>8} {'ratio':>6}")
    for name in names:
        new = min(r[name] for r in runs["new"])
        if args.base and name in runs["base"][0]:
            base = min(r[name] for r in runs["base"])
            print(f"{name:24} {base:8.2f} {new:8.2f} {base / new:6.2f}")
        else:
            print(f"{name:24} {'':8} {new:8.2f}")


if __name__ == "__main__":
    main()
