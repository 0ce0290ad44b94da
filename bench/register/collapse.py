"""Summarise a py-spy ``--format raw`` (collapsed stacks) profile.

    python bench/register/collapse.py PROFILE.raw [--top 30]

Prints the share of samples per leaf function (self time), and per "bucket":
the innermost frame of each stack that matches one of the module patterns
below (sipmsg parse, digest, nats-py, msgspec, asyncio/uvloop, ...), so the
time inside a library counts once, for that library.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

BUCKETS = (
    ("sipmsg/digest", "digest (sipmsg.digest)"),
    ("hashlib", "digest (hashlib)"),
    ("hmac", "digest (hmac)"),
    ("sipmsg/", "sipmsg parse/build"),
    ("sipmesh_bus/records", "records (msgspec structs)"),
    ("msgspec", "msgspec"),
    ("sipmesh_bus/schema", "bus schema"),
    ("nats/js/kv", "nats-py kv"),
    ("nats/js/", "nats-py jetstream"),
    ("nats/", "nats-py core"),
    ("prometheus_client", "prometheus metrics"),
    ("sipmesh_registrar/", "registrar logic"),
    ("sipmesh_edge/", "edge logic"),
    ("sipmesh_bus/runtime", "bus runtime"),
    ("email/", "email.utils (Date)"),
    ("asyncio/", "asyncio"),
    ("uvloop", "uvloop"),
    ("json/", "json"),
)


def bucket(frames: list[str]) -> str:
    for frame in reversed(frames):
        for needle, name in BUCKETS:
            if needle in frame:
                return name
    return "other: " + (frames[-1] if frames else "?")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    leaves: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    total = 0
    for line in a.profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        leaves[frames[-1]] += n
        buckets[bucket(frames)] += n
    print(f"{total} samples\n\nby bucket (innermost matching frame):")
    for name, n in buckets.most_common(a.top):
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("\nby leaf function (self):")
    for name, n in leaves.most_common(a.top):
        print(f"  {100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
