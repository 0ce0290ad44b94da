"""The registrar's CPU per digest exchange without NATS: what Python costs alone.

    python bench/register/core_bench.py [--number 2000] [--profile]

Builds the SIPp REG-AUTH pair (the first REGISTER, then the one with MD5
credentials, as bench/register/sipp/reg_auth.xml sends them) and times, in one
process, what the registrar does per message apart from NATS:

- **challenge**: envelope decode, parse, ``core.admit`` (401 with a nonce),
  ``bytes()`` of the response, the reply envelope encode;
- **register**: envelope decode, parse, ``core.admit`` (digest check),
  ``core.apply_bindings`` against the stored set, ``records.encode_record``,
  ``bytes()`` of the 200, the reply envelope encode.

Both go through :class:`sipmesh_registrar.fastpath.FastPath` first, as the
registrar does (``--typed``: the typed path of :mod:`sipmesh_registrar.core`
alone, the registrar's fallback for everything unusual).

``--profile`` runs the pair under cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
import timeit

from sipmesh_bus import records, schema
from sipmesh_bus.records import Subscriber, aor_key
from sipmesh_bus.schema import Envelope, SendResponse
from sipmesh_registrar import core
from sipmesh_registrar.config import RegistrarSettings, make_policy
from sipmesh_registrar.fastpath import FastAdmitted, FastPath
from sipmsg import Request, Response, parse
from sipmsg.digest import NonceManager, build_authorization, ha1_md5, ha1_sha256

DOMAIN = "127.0.0.1"
USER = "user00042"
PASSWORD = f"pw-{USER}"


def sipp_register(cseq: int, authorization: bytes | None = None) -> bytes:
    """A REGISTER as SIPp's reg_auth.xml sends it."""
    lines = [
        f"REGISTER sip:{DOMAIN}:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1234-1-{cseq};rport",
        "Max-Forwards: 70",
        f"From: <sip:{USER}@{DOMAIN}>;tag=1234-1",
        f"To: <sip:{USER}@{DOMAIN}>",
        "Call-ID: 1-1234@127.0.0.1",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{USER}@127.0.0.1:5062;transport=UDP>",
    ]
    if authorization is not None:
        lines.append("Authorization: " + authorization.decode())
    lines += ["Expires: 3600", "User-Agent: sipp-bench", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def wrap(data: bytes) -> bytes:
    return schema.encode(
        Envelope(
            edge_id="bench-edge",
            transport="udp",
            source_host="127.0.0.1",
            source_port=5062,
            local_host="127.0.0.1",
            local_port=5060,
            received_at=time.time(),
            data=data,
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--number", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--typed", action="store_true", help="the typed path alone")
    ap.add_argument("--sort", default="tottime", help="pstats order with --profile")
    a = ap.parse_args()

    policy = make_policy(RegistrarSettings(domain=DOMAIN, algorithms=("MD5",)))
    nonces = NonceManager(secret=b"bench-secret-bench-secret", ttl=300.0)
    u, d, p = USER.encode(), DOMAIN.encode(), PASSWORD.encode()
    subscribers = {
        aor_key(USER, DOMAIN): Subscriber(
            user=USER,
            domain=DOMAIN,
            ha1_md5=ha1_md5(u, d, p).decode(),
            ha1_sha256=ha1_sha256(u, d, p).decode(),
        )
    }
    first = wrap(sipp_register(1))
    now = time.time()
    fast = FastPath(policy, nonces)

    def fast_challenge() -> bytes:
        env = schema.decode_envelope(first)
        req = parse(env.data)
        assert isinstance(req, Request)
        data = fast.admit(req, subscribers=subscribers, now=now, entropy=os.urandom(12))
        assert isinstance(data, bytes)
        return schema.encode(SendResponse(data=data))

    def challenge() -> bytes:
        env = schema.decode_envelope(first)
        req = parse(env.data)
        assert isinstance(req, Request)
        step = core.admit(
            req, policy, subscribers=subscribers, nonces=nonces, now=now, entropy=os.urandom(12)
        )
        assert isinstance(step, core.Answer)
        return schema.encode(SendResponse(data=bytes(step.response)))

    reply = schema.decode_reply(challenge() if a.typed else fast_challenge())
    assert isinstance(reply, SendResponse)
    answer = parse(reply.data)
    assert isinstance(answer, Response)
    creds = build_authorization(
        answer.www_authenticate[0],
        username=u,
        method=b"REGISTER",
        uri=f"sip:{DOMAIN}:5060".encode(),
        cnonce=b"6b8b4567",
        password=p,
    )
    second = wrap(sipp_register(2, bytes(creds)))
    stored = None

    def register() -> bytes:
        env = schema.decode_envelope(second)
        req = parse(env.data)
        assert isinstance(req, Request)
        step = core.admit(
            req, policy, subscribers=subscribers, nonces=nonces, now=now, entropy=os.urandom(12)
        )
        assert isinstance(step, core.Admitted), step
        decision = core.apply_bindings(step, stored, env, policy, now=now)
        assert isinstance(decision, core.Registered)
        assert decision.bindings is not None
        records.encode_record(decision.bindings)
        return schema.encode(SendResponse(data=bytes(decision.response)))

    def fast_register() -> bytes:
        env = schema.decode_envelope(second)
        req = parse(env.data)
        assert isinstance(req, Request)
        step = fast.admit(req, subscribers=subscribers, now=now, entropy=os.urandom(12))
        assert isinstance(step, FastAdmitted), step
        decision = fast.apply(step, stored, env, now=now)
        assert decision is not None
        assert decision.record is not None
        records.encode_record(decision.record)
        return schema.encode(SendResponse(data=decision.response))

    if not a.typed:
        challenge, register = fast_challenge, fast_register
    register()
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(a.number):
            challenge()
            register()
        prof.disable()
        pstats.Stats(prof).sort_stats(a.sort).print_stats(40)
        return
    for name, fn in (("challenge", challenge), ("register", register)):
        # Process CPU time, not wall time: the box is shared (see docs/benchmarks.md).
        runs = timeit.repeat(fn, number=a.number, repeat=a.repeat, timer=time.process_time)
        best = min(runs) / a.number
        print(f"{name:10s} {best * 1e6:7.1f} us")


if __name__ == "__main__":
    main()
