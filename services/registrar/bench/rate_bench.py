"""The registrar process's CPU per digest exchange over a real nats-server.

    python services/registrar/bench/rate_bench.py [--rate 1500] [--seconds 6] [--rounds 5]
        [--old PYTHONPATH] [--profile OUT.svg|OUT.txt [--native]] [--cprofile OUT.prof]
        [--challenge-only]

Starts a private nats-server with JetStream (free loopback port), stores
``--users`` subscribers, starts ``python -m sipmesh_registrar`` and drives it
directly over NATS, as the edge would: per exchange a REGISTER envelope on
``sip.register`` (401), then the same REGISTER with an MD5 digest answer (200,
one compare-and-set write, its echo through the location watch). Exchanges
start at a fixed ``--rate`` per second; after a warm-up the registrar's
``utime + stime`` (``/proc/<pid>/stat``) over the window is divided by the
exchanges completed in it. The box is shared: process CPU, not wall time.

``--old PATH`` runs, alternating round by round with the working tree, a
second registrar whose ``PYTHONPATH`` starts with PATH (e.g. a ``git archive``
of an older commit's ``libs/bus/src:services/registrar/src``), so the two are
compared under the same load. ``--challenge-only`` sends only the first
REGISTER of each exchange (its 401): what a challenge costs alone.
``--profile`` records the (last) registrar with py-spy. ``bus_bench.py``
beside it drives the registrar closed-loop to saturation instead (and shares
its messages and subscribers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import nats

from sipmesh_bus import kv, schema
from sipmesh_bus.config import NatsConfig
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.schema import SendResponse
from sipmesh_bus.subjects import SIP_REGISTER
from sipmesh_bus.wire import Reply, RequestFailure, WireClient
from sipmsg import Response, parse
from sipmsg.digest import build_authorization

if TYPE_CHECKING:  # mypy names it from the repository root
    from services.registrar.bench import bus_bench
else:  # beside this file (the script's folder is on sys.path)
    import bus_bench

DOMAIN = bus_bench.DOMAIN
_TICK = 0.01


def register(user: str, cseq: int, tag: str, authorization: bytes | None = None) -> bytes:
    """The SIPp REG-AUTH REGISTER in the edge's envelope (one Call-ID per user and round)."""
    return bus_bench.wrap(bus_bench.register(user, cseq, f"{user}-{tag}@bench", authorization))


class Driver:
    """Runs exchanges on a wire connection and counts them."""

    def __init__(self, wire: WireClient, users: list[str]) -> None:
        self.wire = wire
        self.users = users
        self.cseq = dict.fromkeys(self.users, 0)
        self.next = 0
        self.done = 0
        self.failed = 0
        self.tag = os.urandom(4).hex()  # a new Call-ID each round: CSeq starts again
        self.challenge_only = False

    async def ask(self, payload: bytes) -> bytes:
        done: asyncio.Future[Reply | RequestFailure] = asyncio.get_running_loop().create_future()
        self.wire.request(SIP_REGISTER, payload, done.set_result, timeout=5.0)
        reply = await done
        if not isinstance(reply, Reply) or reply.status is not None:
            raise RuntimeError(f"no reply: {reply!r}")
        answer = schema.decode_reply(reply.payload)
        if not isinstance(answer, SendResponse):
            raise RuntimeError(f"unexpected {answer!r}")
        return answer.data

    async def exchange(self) -> None:
        user = self.users[self.next % len(self.users)]
        self.next += 1
        self.cseq[user] += 2
        seq = self.cseq[user]
        try:
            first = parse(await self.ask(register(user, seq - 1, self.tag)))
            if not isinstance(first, Response) or first.status != 401:
                raise RuntimeError(f"expected a 401: {first!r}")
            if self.challenge_only:
                self.done += 1
                return
            creds = build_authorization(
                first.www_authenticate[-1],
                username=user.encode(),
                method=b"REGISTER",
                uri=f"sip:{DOMAIN}:5060".encode(),
                cnonce=b"6b8b4567",
                password=f"pw-{user}".encode(),
            )
            second = parse(await self.ask(register(user, seq, self.tag, bytes(creds))))
            if not isinstance(second, Response) or second.status != 200:
                raise RuntimeError(f"expected a 200: {second!r}")
            self.done += 1
        except Exception as exc:
            self.failed += 1
            if self.failed < 5 and self.done:
                print(f"exchange failed: {exc!r}", file=sys.stderr)

    async def run(self, rate: float, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        started = 0
        tasks: set[asyncio.Task[None]] = set()
        while (now := loop.time()) - start < seconds:
            due = int((now - start) * rate) - started
            for _ in range(due):
                task = asyncio.create_task(self.exchange())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            started += max(due, 0)
            await asyncio.sleep(_TICK)
        if tasks:
            await asyncio.wait(tasks)


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime, stime) of ``pid`` in clock ticks (fields 14 and 15 of its stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


async def one_round(
    url: str,
    *,
    server_pid: int,
    users: list[str],
    pythonpath: str,
    args: argparse.Namespace,
    profile: str | None,
) -> float:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=pythonpath,
        SIPMESH_REGISTRAR_DOMAIN=DOMAIN,
        SIPMESH_REGISTRAR_NONCE_SECRET="exchange-bench-secret-0123456789",  # noqa: S106
        SIPMESH_HTTP_PORT="0",
        SIPMESH_NATS_URL=url,
    )
    command = [sys.executable, "-m", "sipmesh_registrar"]
    if args.cprofile:
        # The whole life of the process (the stop comes by SIGTERM, handled).
        code = (
            "import cProfile, sipmesh_registrar.__main__ as m; p = cProfile.Profile(); "
            f"p.enable(); m.run(); p.disable(); p.dump_stats({args.cprofile!r})"
        )
        command = [sys.executable, "-c", code]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)  # noqa: S603 - our argv
    wire = WireClient(NatsConfig(url=url), name="exchange-bench")
    await wire.connect()
    try:
        driver = Driver(wire, users)
        for _ in range(600):  # wait until it answers
            await driver.exchange()  # counts its failures
            if driver.done:
                break
            await asyncio.sleep(0.1)
        driver.failed = 0
        driver.challenge_only = args.challenge_only
        await driver.run(args.rate, 1.0)  # warm-up
        spy = None
        if profile:
            spy = subprocess.Popen(  # noqa: S603 - our own argv
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "-o",
                    profile,
                    "-p",
                    str(proc.pid),
                    "-d",
                    str(int(args.seconds)),
                    "-r",
                    "250",
                    *(["--native"] if args.native else ["--nonblocking"]),
                    # --nonblocking: pausing the process for each sample distorts
                    # it; --native (compiled frames) needs the pause.
                    *(["--format", "raw"] if profile.endswith(".txt") else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        print(f"  registrar pid {proc.pid}", file=sys.stderr, flush=True)
        before, done = cpu_ticks(proc.pid), driver.done
        server_before = sum(cpu_ticks(server_pid))
        await driver.run(args.rate, args.seconds)
        after, count = cpu_ticks(proc.pid), driver.done - done
        server = sum(cpu_ticks(server_pid)) - server_before
        user, system = after[0] - before[0], after[1] - before[1]
        ticks = user + system
        if spy is not None:
            spy.wait()
        if driver.failed:
            print(f"  {driver.failed} exchanges failed", file=sys.stderr)
        tick_us = 1e6 / os.sysconf("SC_CLK_TCK") / count
        print(
            f"  user {user * tick_us:.1f} us + system {system * tick_us:.1f} us per exchange;"
            f" nats-server {server * tick_us:.1f} us"
        )
        return ticks * tick_us
    finally:
        await wire.close()
        proc.terminate()
        proc.wait(10)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=1500.0)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--old", help="PYTHONPATH prefix of the code to compare with")
    ap.add_argument("--cprofile", help="cProfile stats file of the registrar (last round)")
    ap.add_argument("--profile", help="py-spy SVG of the last round (.txt: collapsed stacks)")
    ap.add_argument("--native", action="store_true", help="py-spy --native (compiled frames)")
    ap.add_argument(
        "--challenge-only", action="store_true", help="each exchange is the first REGISTER alone"
    )
    args = ap.parse_args()
    here = os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(store_dir=Path(store))
        server.start()
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await kv.ensure_jetstream(js)
            users = await bus_bench.store_users(js, args.users)
            await nc.close()
            assert server._proc is not None  # private: the pid of our own server
            server_pid = server._proc.pid
            variants = [("new", here)]
            if args.old:
                variants.insert(0, ("old", args.old + (os.pathsep + here if here else "")))
            results: dict[str, list[float]] = {name: [] for name, _ in variants}
            for r in range(args.rounds):
                for name, path in variants:
                    last = r == args.rounds - 1 and name == variants[-1][0]
                    us = await one_round(
                        server.url,
                        server_pid=server_pid,
                        users=users,
                        pythonpath=path,
                        args=args,
                        profile=args.profile if last else None,
                    )
                    results[name].append(us)
                    print(f"round {r} {name}: {us:6.1f} us CPU per exchange", flush=True)
            for name, values in results.items():
                print(f"{name}: best {min(values):.1f}  all {' '.join(f'{v:.1f}' for v in values)}")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
