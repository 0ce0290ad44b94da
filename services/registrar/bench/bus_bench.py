"""One registrar driven over NATS alone (no edge, no SIPp): CPU per digest exchange.

    python services/registrar/bench/bus_bench.py [--base DIR] [--seconds 10]
        [--workers 64] [--users 2000] [--label after]

Starts a nats-server (port 0) and one ``python -m sipmesh_registrar`` (MD5
only, domain 127.0.0.1), stores ``--users`` subscribers, then ``--workers``
tasks send the SIPp REG-AUTH pair (REGISTER, 401, REGISTER with MD5
credentials, 200) straight to ``sip.register``. After 3 s of warm-up it reads
the CPU time of the registrar and of nats-server from ``/proc`` over
``--seconds`` and prints it per exchange. ``--base`` is a PYTHONPATH for the
registrar process only, e.g. the ``services/registrar/src`` of an older
checkout (``git archive <commit> services/registrar/src | tar -x -C DIR``), to
compare two versions in the same conditions. The client process does the
digest work; when it is the bottleneck the rate says little, the CPU per
exchange is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from sipmesh_bus import kv, records, schema
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.records import Subscriber, aor_key
from sipmesh_bus.schema import Envelope, SendResponse
from sipmesh_bus.subjects import SIP_REGISTER
from sipmsg import Response, parse
from sipmsg.digest import build_authorization, ha1_md5, ha1_sha256

DOMAIN = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def register(user: str, cseq: int, call_id: str, auth: bytes | None = None) -> bytes:
    branch = f"z9hG4bK-{call_id.partition('@')[0]}-{cseq}"
    lines = [
        f"REGISTER sip:{DOMAIN}:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{DOMAIN}>;tag=1234-1",
        f"To: <sip:{user}@{DOMAIN}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@127.0.0.1:5062;transport=UDP>",
    ]
    if auth is not None:
        lines.append("Authorization: " + auth.decode())
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


async def store_users(js: JetStreamContext, count: int) -> list[str]:
    """Subscribers ``user00001``... with password ``pw-<user>``; their names."""
    subs = await js.key_value(kv.BUCKET_SUBSCRIBERS)
    users = [f"user{i:05d}" for i in range(1, count + 1)]
    for u in users:
        ub, d, p = u.encode(), DOMAIN.encode(), f"pw-{u}".encode()
        rec = Subscriber(
            user=u,
            domain=DOMAIN,
            ha1_md5=ha1_md5(ub, d, p).decode(),
            ha1_sha256=ha1_sha256(ub, d, p).decode(),
        )
        await subs.put(aor_key(u, DOMAIN), records.encode_record(rec))
    return users


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", help="PYTHONPATH for the registrar (another sipmesh_registrar)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    store = tempfile.mkdtemp(prefix="drive-nats-")
    server = NatsServer(store_dir=Path(store))
    server.start()
    nc = Client()
    await nc.connect(server.url)
    js = nc.jetstream()
    await kv.ensure_jetstream(js)
    users = await store_users(js, a.users)
    http = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
    env.update(
        SIPMESH_NATS_URL=server.url,
        SIPMESH_HTTP_PORT=str(http),
        SIPMESH_REGISTRAR_DOMAIN=DOMAIN,
        SIPMESH_REGISTRAR_NONCE_SECRET="bench-secret-bench-secret-0123456789",  # noqa: S106
        SIPMESH_REGISTRAR_ALGORITHMS="MD5",
    )
    if a.base:
        env["PYTHONPATH"] = a.base
    with open(f"{store}/registrar.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sipmesh_registrar"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            await asyncio.sleep(0.1)
        counter = itertools.count()
        done = 0
        failures = 0
        stop = False

        async def worker(w: int) -> None:
            nonlocal done, failures
            cseq = 1
            while not stop:
                u = users[next(counter) % len(users)]
                call_id = f"{w}-{u}@bench"
                msg = await nc.request(SIP_REGISTER, wrap(register(u, cseq, call_id)), timeout=10)
                reply = schema.decode_reply(msg.data)
                assert isinstance(reply, SendResponse), reply
                first = parse(reply.data)
                assert isinstance(first, Response)
                assert first.status == 401, first
                creds = build_authorization(
                    first.www_authenticate[0],
                    username=u.encode(),
                    method=b"REGISTER",
                    uri=f"sip:{DOMAIN}:5060".encode(),
                    cnonce=b"6b8b4567",
                    password=f"pw-{u}".encode(),
                )
                msg = await nc.request(
                    SIP_REGISTER, wrap(register(u, cseq + 1, call_id, bytes(creds))), timeout=10
                )
                reply = schema.decode_reply(msg.data)
                assert isinstance(reply, SendResponse), reply
                ok = parse(reply.data)
                assert isinstance(ok, Response)
                cseq += 2
                if ok.status == 200:
                    done += 1
                else:
                    failures += 1

        tasks = [asyncio.create_task(worker(w)) for w in range(a.workers)]
        await asyncio.sleep(3.0)  # warm-up: the location cache fills
        assert server._proc is not None
        nats_pid = server._proc.pid
        n0, r0, s0, t0 = done, cpu(proc.pid), cpu(nats_pid), time.monotonic()
        await asyncio.sleep(a.seconds)
        n1, r1, s1, t1 = done, cpu(proc.pid), cpu(nats_pid), time.monotonic()
        stop = True
        errors = [e for e in await asyncio.gather(*tasks, return_exceptions=True) if e]
        if errors or not n1 - n0:
            sys.exit(f"no exchange measured: {errors[:1]!r}")
        n = n1 - n0
        print(
            f"{a.label:8s} exchanges/s={n / (t1 - t0):7.1f} registrar={(r1 - r0) / n * 1e6:6.0f} us"
            f" nats={(s1 - s0) / n * 1e6:6.0f} us/exchange  failures={failures}"
            f" registrar-busy={(r1 - r0) / (t1 - t0) * 100:.0f}%"
        )
    finally:
        proc.terminate()
        proc.wait(10)
        await nc.close()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
