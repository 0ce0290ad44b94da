"""``sipmesh ban list|add|del`` as real subprocesses on a real NATS."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from sipmesh.ban_cli import format_remaining
from sipmesh_bus import bans, kv

pytestmark = pytest.mark.integration


def _sipmesh(*args: str, data_dir: Path, nats_url: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sipmesh",
            *args,
            "--data-dir",
            str(data_dir),
            "--nats-url",
            nats_url,
        ],
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def js_url(nats_url: str) -> str:
    async def ensure() -> None:
        nc = await nats.connect(nats_url)
        try:
            await kv.ensure_jetstream(nc.jetstream())
        finally:
            await nc.close()

    asyncio.run(ensure())
    return nats_url


async def _stored(url: str) -> list[bans.Ban]:
    nc = await nats.connect(url)
    try:
        bucket = await nc.jetstream().key_value(kv.BUCKET_BANS)
        return await bans.read_bans(bucket, time.time())
    finally:
        await nc.close()


def test_cli_ban_add_list_del(js_url: str, tmp_path: Path) -> None:
    network = f"198.18.{random.randrange(256)}.0/24"
    added = _sipmesh(
        "ban", "add", network.replace(".0/24", ".9/24"), "--ttl", "600", "--reason",
        "toll fraud", data_dir=tmp_path, nats_url=js_url,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"banned {network} for 10m00s (toll fraud)"
    stored = {b.target: b for b in asyncio.run(_stored(js_url))}
    assert stored[network].reason == "toll fraud"
    assert stored[network].source == "cli"
    assert 599 <= stored[network].expires_at - stored[network].created_at <= 601

    listed = _sipmesh("ban", "list", data_dir=tmp_path, nats_url=js_url)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["TARGET", "REASON", "EXPIRES", "BY"]
    row = next(r for r in rows if r.startswith(network + " "))
    assert "toll fraud" in row
    assert "in 9m5" in row or "in 10m00s" in row
    assert row.split()[-1] == "cli"

    deleted = _sipmesh("ban", "del", network, data_dir=tmp_path, nats_url=js_url)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"lifted the ban on {network}"
    assert network not in {b.target for b in asyncio.run(_stored(js_url))}

    again = _sipmesh("ban", "del", network, data_dir=tmp_path, nats_url=js_url)
    assert (again.returncode, again.stderr.strip()) == (1, f"sipmesh: error: no ban on {network}")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(("add", "example.com"), 2, "not an IP address or CIDR", id="name"),
        pytest.param(("add", "198.18.0.1", "--ttl", "0"), 2, "--ttl must be 1 to", id="ttl-0"),
        pytest.param(("add", "198.18.0.1", "--ttl", "x"), 2, "not a number", id="ttl-text"),
        pytest.param(("del", "1.2.3.4/40"), 2, "not an IP address or CIDR", id="bad-cidr"),
    ],
)
def test_cli_ban_bad_input_is_one_line(
    js_url: str, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    proc = _sipmesh("ban", *args, data_dir=tmp_path, nats_url=js_url)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0]


def test_cli_ban_unreachable_nats_is_one_line(tmp_path: Path) -> None:
    proc = _sipmesh("ban", "list", data_dir=tmp_path, nats_url="nats://127.0.0.1:1")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sipmesh: error: cannot reach NATS at nats://127.0.0.1:1")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m00s"), (605, "10m05s"), (3600, "1h00m"), (86399, "23h59m")],
)
def test_cli_ban_format_remaining(seconds: int, text: str) -> None:
    assert format_remaining(seconds) == text
