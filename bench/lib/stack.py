"""Bring up sipmesh for a SIPp benchmark and keep it up until SIGTERM.

    python bench/lib/stack.py --workdir DIR --registrars N --users users.csv
    python bench/lib/stack.py --workdir DIR --no-auth --router [--media-instance HOST:PORT]

Starts, each as its own process on free loopback ports: nats-server with
JetStream (store in DIR/nats), N registrar replicas (``python -m
sipmesh_registrar``) and one edge (``python -m sipmesh_edge``, UDP; ``--edges N``:
N edges sharing the SIP port, EDGE_PID then lists their PIDs). Creates the
buckets, imports the users with ``sipmesh user import`` for domain 127.0.0.1
(the SIPp scenarios put ``[remote_ip]`` in To), waits until a REGISTER through
the edge gets an answer, then writes DIR/stack.env (shell assignments: SIP_PORT,
NATS_PID, EDGE_PID, REGISTRAR_PIDS, ROUTER_PID, MEDIA_PID) and waits.

``--router`` adds one router (``python -m sipmesh_router``, domain 127.0.0.1,
MD5 only, probing off) and makes 127.0.0.1/32 a trusted peer (``sipmesh peer
add``), so SIPp's caller needs no auth. ``--media-instance HOST:PORT`` also
starts the media service over that RTPEngine (its ng port) and sets the router's
``media`` policy to ``always``; without it the policy is ``never``. SIGTERM or SIGINT stops every
process it started, by PID, edge first.

The registrars offer an MD5 challenge only: SIPp 3.6 answers the first
WWW-Authenticate and knows no SHA-256 (Kamailio's reference config is MD5 too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Final

import nats
import yaml

from sipmesh_bus import kv
from sipmesh_bus.natsserver import find_nats_server

LOOPBACK: Final = "127.0.0.1"
DOMAIN: Final = LOOPBACK
CIDR: Final = f"{LOOPBACK}/32"
NONCE_SECRET: Final = "bench-register-nonce-secret-shared-by-replicas"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port free right now (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
    env.pop("NATS_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def start(argv: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


def wait_ready(proc: subprocess.Popen[bytes], name: str, http_port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    url = f"http://{LOOPBACK}:{http_port}/readyz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited at start-up:\n{log.read_text(errors='replace')[-3000:]}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=1) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    sys.exit(f"{name} not ready in 30 s:\n{log.read_text(errors='replace')[-3000:]}")


def wait_nats(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
            return
        time.sleep(0.05)
    sys.exit("nats-server did not start")


async def ensure_jetstream(url: str) -> None:
    nc = await nats.connect(url)
    try:
        await kv.ensure_jetstream(nc.jetstream())
    finally:
        await nc.close()


def probe(port: int) -> int | None:
    """One REGISTER to the edge; the first final status, or None."""
    branch = f"z9hG4bK-probe-{time.monotonic_ns()}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        s.settimeout(1.0)
        local = s.getsockname()[1]
        msg = (
            f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{DOMAIN}>;tag=p1\r\n"
            f"To: <sip:probe@{DOMAIN}>\r\n"
            f"Call-ID: {branch}@{LOOPBACK}\r\n"
            "CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), (LOOPBACK, port))
        with contextlib.suppress(TimeoutError):
            while True:
                status = int(s.recv(65535).split(b" ", 2)[1])
                if status >= 200:
                    return status
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--registrars", type=int, default=1)
    ap.add_argument("--edges", type=int, default=1, help="edges sharing the SIP port (reuse_port)")
    ap.add_argument("--users", type=Path, help="SIPp injection file user;password")
    ap.add_argument("--no-auth", action="store_true", help="registrars without digest auth")
    ap.add_argument(
        "--registrar-challenges",
        action="store_true",
        help="the registrars answer every 401 (the edge's challenge_registers off)",
    )
    ap.add_argument("--router", action="store_true", help="also a router (calls)")
    ap.add_argument(
        "--dialogs",
        choices=("always", "auto"),
        default="always",
        help="the router's dialogs mode (auto: no KV dialog record unless caps count it)",
    )
    ap.add_argument("--media-instance", help="RTPEngine ng HOST:PORT: media service, anchoring")
    a = ap.parse_args()
    work: Path = a.workdir
    work.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def stop_all() -> None:
        for _name, p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for _name, p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def on_signal(*_args: object) -> None:
        stop_all()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        nats_port = free_port()
        store = work / "nats"
        store.mkdir(exist_ok=True)
        nats_proc = start(
            [
                str(find_nats_server()),
                "-a",
                LOOPBACK,
                "-p",
                str(nats_port),
                "-js",
                "-sd",
                str(store),
            ],
            env=clean_env({}),
            log=work / "nats.log",
        )
        procs.append(("nats", nats_proc))
        wait_nats(nats_port)
        url = f"nats://{LOOPBACK}:{nats_port}"
        asyncio.run(ensure_jetstream(url))
        cli_env = clean_env({"SIPMESH_NATS_URL": url, "SIPMESH_DATA_DIR": str(work)})
        if a.users is not None:
            t0 = time.monotonic()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sipmesh",
                    "user",
                    "import",
                    str(a.users),
                    "--domain",
                    DOMAIN,
                ],
                env=cli_env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            print(f"imported {a.users} in {time.monotonic() - t0:.1f} s", flush=True)
        registrar_pids = []
        for n in range(a.registrars):
            http_port = free_port()
            env = clean_env(
                {
                    "SIPMESH_NATS_URL": url,
                    "SIPMESH_HTTP_PORT": str(http_port),
                    "SIPMESH_REGISTRAR_DOMAIN": DOMAIN,
                    "SIPMESH_REGISTRAR_NONCE_SECRET": NONCE_SECRET,
                    "SIPMESH_REGISTRAR_ALGORITHMS": "MD5",
                    "SIPMESH_REGISTRAR_AUTH": "false" if a.no_auth else "true",
                }
            )
            log = work / f"registrar-{n}.log"
            p = start([sys.executable, "-m", "sipmesh_registrar"], env=env, log=log)
            procs.append((f"registrar-{n}", p))
            wait_ready(p, f"registrar-{n}", http_port, log)
            registrar_pids.append(p.pid)
        media_pid = router_pid = ""
        if a.media_instance:
            http_port = free_port()
            env = clean_env(
                {
                    "SIPMESH_NATS_URL": url,
                    "SIPMESH_HTTP_PORT": str(http_port),
                    "SIPMESH_MEDIA_INSTANCES": f"bench={a.media_instance}",
                }
            )
            log = work / "media.log"
            p = start([sys.executable, "-m", "sipmesh_media"], env=env, log=log)
            procs.append(("media", p))
            wait_ready(p, "media", http_port, log)
            media_pid = str(p.pid)
        if a.router:
            subprocess.run(
                [sys.executable, "-m", "sipmesh", "peer", "add", "loopback", "--cidr", CIDR],
                env=cli_env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            http_port = free_port()
            settings = {
                "DOMAIN": DOMAIN,
                "NONCE_SECRET": NONCE_SECRET,
                "ALGORITHMS": "MD5",
                "PROBE": "false",
                "MEDIA": "always" if a.media_instance else "never",
                "DIALOGS": a.dialogs,
            }
            env = clean_env(
                {
                    "SIPMESH_NATS_URL": url,
                    "SIPMESH_HTTP_PORT": str(http_port),
                    **{f"SIPMESH_ROUTER_{k}": v for k, v in settings.items()},
                }
            )
            log = work / "router.log"
            p = start([sys.executable, "-m", "sipmesh_router"], env=env, log=log)
            procs.append(("router", p))
            wait_ready(p, "router", http_port, log)
            router_pid = str(p.pid)
        sip_port = free_port(socket.SOCK_DGRAM)
        edge_ids = ["bench-edge"] if a.edges == 1 else [f"bench-edge-{i}" for i in range(a.edges)]
        edge_pids = []
        for edge_id in edge_ids:
            http_port = free_port()
            config: dict[str, object] = {
                "edge_id": edge_id,
                "udp": [f"{LOOPBACK}:{sip_port}"],
                "nats": {"url": url},
                "http": {"port": http_port},
            }
            if not a.no_auth and not a.registrar_challenges:
                # The registrars' own 401, answered at the edge (sipmesh_edge.challenge).
                config["challenge_registers"] = True
                config["registrar"] = {
                    "domain": DOMAIN,
                    "nonce_secret": NONCE_SECRET,
                    "algorithms": ["MD5"],
                }
            if a.edges > 1:
                config["reuse_port"] = True
                config["siblings"] = [i for i in edge_ids if i != edge_id]
            (work / f"{edge_id}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
            log = work / f"{edge_id}.log"
            edge = start(
                [sys.executable, "-m", "sipmesh_edge"],
                env=clean_env({"SIPMESH_CONFIG": str(work / f"{edge_id}.yaml")}),
                log=log,
            )
            procs.append((edge_id, edge))
            wait_ready(edge, edge_id, http_port, log)
            edge_pids.append(str(edge.pid))
        deadline = time.monotonic() + 20
        while probe(sip_port) not in (200, 401):
            if time.monotonic() > deadline:
                sys.exit("no registrar answers through the edge")
        (work / "stack.env").write_text(
            f"SIP_PORT={sip_port}\nNATS_PID={nats_proc.pid}\nEDGE_PID={','.join(edge_pids)}\n"
            f"REGISTRAR_PIDS={','.join(map(str, registrar_pids))}\n"
            f"ROUTER_PID={router_pid}\nMEDIA_PID={media_pid}\nNATS_URL={url}\n",
            encoding="utf-8",
        )
        print(
            f"sipmesh up: {a.edges} edge(s) udp {LOOPBACK}:{sip_port}, {a.registrars} registrar(s)",
            flush=True,
        )
        while all(p.poll() is None for _n, p in procs):
            time.sleep(0.5)
        dead = [n for n, p in procs if p.poll() is not None]
        print(f"process(es) exited: {', '.join(dead)}", file=sys.stderr, flush=True)
    finally:
        stop_all()


if __name__ == "__main__":
    main()
