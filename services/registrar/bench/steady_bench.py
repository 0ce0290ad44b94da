"""In-process CPU of the two halves of REG-AUTH over many phones, in steady state.

    python services/registrar/bench/steady_bench.py [--users 10000] [--number 10000]
        [--rounds 5] [--fill 20] [--only challenge|register]

- **challenge**: the edge's 401 (:class:`sipmesh_edge.challenge.RegisterChallenger`)
  for SIPp REG-AUTH REGISTERs, one Call-ID per exchange, each phone behind its
  own source address; the request already parsed as the edge parses it before
  (its Via, From and To read). What ``--users`` phones cost the per-phone memos.
- **register**: what the registrar does with the answered REGISTER apart from
  NATS: envelope decode, parse, ``FastPath.admit`` (digest, nonce, replay
  rules), ``FastPath.apply`` against the AoR's record, ``encode_record`` of the
  new record, the reply envelope. Each AoR's record first goes through
  ``--fill`` exchanges, so that it holds what refreshes leave in it (the
  remembered nonces); the median stored record size is printed too.

Process CPU (``time.process_time``), best of ``--rounds``, the garbage
collector off while timing: the box is shared. Compare two versions by running
this with each on ``PYTHONPATH`` in turn, interleaved.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from sipmesh_bus import records, schema
from sipmesh_bus.records import BindingSet, Subscriber, aor_key
from sipmesh_bus.schema import Envelope, SendResponse
from sipmesh_edge.challenge import RegisterChallenger
from sipmesh_registrar.config import RegistrarSettings, make_policy
from sipmesh_registrar.fastpath import FastAdmitted, FastPath
from sipmsg import Request, Response, parse
from sipmsg.digest import NonceManager, build_authorization, ha1_md5, ha1_sha256

DOMAIN = "127.0.0.1"
SECRET = b"steady-bench-secret-0123456789ab"
T = TypeVar("T")


def sipp_register(user: str, n: int, cseq: int, authorization: bytes | None = None) -> bytes:
    """The REGISTER of SIPp's reg_auth.xml, exchange ``n`` (its own Call-ID and branch)."""
    lines = [
        f"REGISTER sip:{DOMAIN}:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-{n}-1-{cseq};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{DOMAIN}>;tag=1234-{n}",
        f"To: <sip:{user}@{DOMAIN}>",
        f"Call-ID: {n}-1234@127.0.0.1",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@127.0.0.1:5062;transport=UDP>",
    ]
    if authorization is not None:
        lines.append("Authorization: " + authorization.decode())
    lines += ["Expires: 3600", "User-Agent: sipp-bench", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def source_of(i: int) -> tuple[str, int]:
    """Phone ``i``'s public address (one per phone, as behind NATs)."""
    return f"10.{i // 250 % 250}.{i % 250}.1", 5062


def best_of(rounds: int, prepare: Callable[[], list[T]], run: Callable[[T], object]) -> float:
    """Best CPU seconds per item of ``run`` over ``rounds`` fresh batches."""
    best = float("inf")
    for _ in range(rounds):
        batch = prepare()
        gc.collect()
        gc.disable()
        start = time.process_time()
        for item in batch:
            run(item)
        best = min(best, (time.process_time() - start) / len(batch))
        gc.enable()
    return best


def bench_challenge(users: int, number: int, rounds: int) -> float:
    settings = RegistrarSettings(domain=DOMAIN, algorithms=("SHA-256", "MD5"))
    challenger = RegisterChallenger(settings, SECRET)
    raw = [
        (sipp_register(f"user{i % users:05d}", i, 1), source_of(i % users)) for i in range(number)
    ]
    now = time.time()

    def prepare() -> list[tuple[Request, tuple[str, int]]]:
        out = []
        for data, source in raw:
            req = parse(data)
            assert isinstance(req, Request)
            _ = req.via, req.from_, req.to  # as the edge's core.admit reads them
            out.append((req, source))
        return out

    def run(item: tuple[Request, tuple[str, int]]) -> object:
        req, source = item
        return challenger.challenge(req, source, now)

    return best_of(rounds, prepare, run)


class Registrar:
    """The registrar's in-process work per answered REGISTER, its records kept here."""

    def __init__(self, users: int) -> None:
        self.names = [f"user{i:05d}" for i in range(users)]
        self.subscribers: dict[str, Subscriber] = {}
        for u in self.names:
            ub, d, p = u.encode(), DOMAIN.encode(), f"pw-{u}".encode()
            self.subscribers[aor_key(u, DOMAIN)] = Subscriber(
                user=u,
                domain=DOMAIN,
                ha1_md5=ha1_md5(ub, d, p).decode(),
                ha1_sha256=ha1_sha256(ub, d, p).decode(),
            )
        policy = make_policy(RegistrarSettings(domain=DOMAIN, algorithms=("MD5",)))
        self.fast = FastPath(policy, NonceManager(secret=SECRET, ttl=300.0))
        self.store: dict[str, tuple[bytes, BindingSet | None]] = {}
        self.now = time.time()
        self.n = 0

    def answered(self, count: int) -> list[bytes]:
        """``count`` answered REGISTER envelopes, the phones in turn (2 ms apart)."""
        out: list[bytes] = []
        for _ in range(count):
            self.n += 1
            self.now += 0.002
            user = self.names[self.n % len(self.names)]
            first = parse(sipp_register(user, self.n, 1))
            assert isinstance(first, Request)
            answer = self.fast.admit(
                first, subscribers=self.subscribers, now=self.now, entropy=os.urandom(12)
            )
            assert isinstance(answer, bytes)
            challenge = parse(answer)
            assert isinstance(challenge, Response)
            creds = build_authorization(
                challenge.www_authenticate[0],
                username=user.encode(),
                method=b"REGISTER",
                uri=f"sip:{DOMAIN}:5060".encode(),
                cnonce=b"6b8b4567",
                password=f"pw-{user}".encode(),
            )
            out.append(wrap(sipp_register(user, self.n, 2, bytes(creds))))
        return out

    def register(self, raw: bytes) -> bytes:
        env = schema.decode_envelope(raw)
        req = parse(env.data)
        assert isinstance(req, Request)
        step = self.fast.admit(req, subscribers=self.subscribers, now=self.now, entropy=b"e" * 12)
        assert isinstance(step, FastAdmitted), step
        known = self.store.get(step.key)
        decision = self.fast.apply(step, None if known is None else known[1], env, now=self.now)
        assert decision is not None
        assert decision.record is not None
        self.store[step.key] = (records.encode_record(decision.record), decision.record)
        return schema.encode(SendResponse(data=decision.response))


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


def bench_register(users: int, number: int, rounds: int, fill: int) -> tuple[float, int]:
    registrar = Registrar(users)
    for _ in range(fill):
        for raw in registrar.answered(users):
            registrar.register(raw)
    best = best_of(rounds, lambda: registrar.answered(number), registrar.register)
    size = int(statistics.median(len(value) for value, _ in registrar.store.values()))
    return best, size


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--number", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fill", type=int, default=20, help="exchanges per AoR before timing")
    ap.add_argument("--only", choices=("challenge", "register"))
    a = ap.parse_args()
    if a.only != "register":
        us = bench_challenge(a.users, a.number, a.rounds) * 1e6
        print(f"challenge {us:6.1f} us  ({a.users} phones)")
    if a.only != "challenge":
        best, size = bench_register(a.users, a.number, a.rounds, a.fill)
        print(f"register  {best * 1e6:6.1f} us  ({a.users} AoRs, median record {size} B)")


if __name__ == "__main__":
    main()
