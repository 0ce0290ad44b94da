"""The Python cost per message of the bus layer, without sockets: no syscall noise.

    python libs/bus/bench/inproc_bench.py [--base SRC ...] [--rounds 7] [--batch 1]

Feeds server frames straight into a :class:`~sipmesh_bus.wire.WireClient`
whose transport only counts bytes, and times (``process_time`` over many
messages, best of ``--rounds``, variants interleaved; ``--base`` is the
``libs/bus/src`` of another checkout, run in a child process):

- ``serve``: a ``Service.serve`` request (MSG frame in, envelope decoded,
  handler answering inline, ``SendResponse`` encoded, reply published and
  written), ``--batch`` frames per read;
- ``serve-suspend``: the same with a handler that awaits a future of its own
  that is resolved after the read (a task per request, as the registrar's compare-and-set);
- ``request``: ``WireClient.request`` out and its reply matched in (the edge
  and the registrar's requester side).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import Any

REGISTER = (
    b"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1-1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:user00001@127.0.0.1>;tag=1234-1\r\n"
    b"To: <sip:user00001@127.0.0.1>\r\nCall-ID: 1@127.0.0.1\r\nCSeq: 1 REGISTER\r\n"
    b"Contact: <sip:user00001@127.0.0.1:5062;transport=UDP>\r\n"
    b"Expires: 3600\r\nUser-Agent: sipp-bench\r\nContent-Length: 0\r\n\r\n"
)
COUNT = int(os.environ.get("BENCH_COUNT", "20000"))


class Transport:
    """Counts what is written."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass


async def measure(kind: str, batch: int) -> float:
    from sipmesh_bus import schema  # noqa: PLC0415 - from the variant's path
    from sipmesh_bus._wireproto import Parser  # noqa: PLC0415
    from sipmesh_bus.config import HttpConfig, NatsConfig, ServiceConfig  # noqa: PLC0415
    from sipmesh_bus.runtime import Service  # noqa: PLC0415
    from sipmesh_bus.wire import WireClient  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    config = ServiceConfig(
        nats=NatsConfig(url="nats://127.0.0.1:1", request_timeout=0.01),
        http=HttpConfig(host="127.0.0.1", port=0),
    )
    wire = WireClient(config.nats, name="bench")
    wire._loop = loop
    payload = schema.encode(
        schema.Envelope(
            edge_id="bench-edge",
            transport="udp",
            source_host="127.0.0.1",
            source_port=5062,
            local_host="127.0.0.1",
            local_port=5060,
            received_at=time.time(),
            data=REGISTER,
        )
    )
    answer = schema.SendResponse(data=REGISTER)
    parser = Parser(wire._on_msg, lambda _line: None)
    transport = Transport()
    if kind == "request":
        wire._transport = transport  # type: ignore[assignment]
        reply_payload = schema.encode(answer)
        got = 0

        def on_reply(_value: object) -> None:
            nonlocal got
            got += 1

        wire.request("bench.serve", payload, on_reply, timeout=5.0)  # subscribes the inbox
        wire._write()
        inbox = wire._inbox
        assert inbox is not None
        sid = wire._inbox_sid.decode()
        started = time.process_time()
        for _ in range(COUNT // batch):
            replies = []
            for _ in range(batch):
                wire.request("bench.serve", payload, on_reply, timeout=5.0)
                subject = inbox.prefix + b"%x" % inbox._next
                replies.append(
                    b"MSG %b %b %d\r\n%b\r\n"
                    % (subject, sid.encode(), len(reply_payload), reply_payload)
                )
            await asyncio.sleep(0)  # the loop runs the scheduled write
            parser.feed(b"".join(replies))
        used = time.process_time() - started
        assert got >= COUNT // batch * batch
        return used * 1e6 / (COUNT // batch * batch)

    svc = Service("bench", config, install_signal_handlers=False)
    svc._wire = wire
    waiting: list[asyncio.Future[None]] = []

    async def handle(_env: schema.Envelope) -> schema.SendResponse:
        if kind == "serve-suspend":
            fut = loop.create_future()  # as WireClient.ask's, one per request
            waiting.append(fut)
            await fut
        return answer

    await svc.serve("bench.serve", handle, queue="q", decode=schema.decode_envelope)
    wire._transport = transport  # type: ignore[assignment]
    frame = b"MSG bench.serve 1 _INBOX.abcdef.%d %d\r\n%b\r\n"
    frames = b"".join(frame % (i, len(payload), payload) for i in range(batch))
    started = time.process_time()
    for _ in range(COUNT // batch):
        parser.feed(frames)
        if kind == "serve-suspend":
            for fut in waiting:
                fut.set_result(None)
            waiting.clear()
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # the loop runs the scheduled write
    used = time.process_time() - started
    assert transport.written > COUNT // batch * batch * len(REGISTER), "replies missing"
    return used * 1e6 / (COUNT // batch * batch)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", action="append", default=[], help="PYTHONPATH of another variant")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--kind", choices=("serve", "serve-suspend", "request"))
    a = ap.parse_args()
    if a.kind:
        import gc  # noqa: PLC0415

        import uvloop  # noqa: PLC0415

        gc.collect()
        gc.set_threshold(50_000, 20, 100)  # as the services' __main__ do
        gc.freeze()
        print(uvloop.run(measure(a.kind, a.batch)))
        return
    variants: list[str | None] = [*a.base, None]
    kinds = ("serve", "serve-suspend", "request")
    best: dict[tuple[str | None, str], float] = {}
    for _ in range(a.rounds):
        for kind in kinds:
            for v in variants:
                env = dict(os.environ)
                if v:
                    env["PYTHONPATH"] = v
                out = subprocess.run(  # noqa: S603 - this script, the variant's path
                    [sys.executable, __file__, "--kind", kind, "--batch", str(a.batch)],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                us = float(out.split()[-1])
                best[v, kind] = min(best.get((v, kind), us), us)
    print(f"best of {a.rounds}, batch {a.batch}, us per message:")
    for v in variants:
        cells = ", ".join(f"{kind} {best[v, kind]:.2f}" for kind in kinds)
        print(f"  {v or 'this checkout'}: {cells}")


if __name__ == "__main__":
    main()
