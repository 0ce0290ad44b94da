"""``sipmesh user ...`` and ``sipmesh registrations`` as real subprocesses, on a real NATS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from sipmesh_bus import kv, records
from sipmesh_bus.kvlist import live_entries
from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.records import Binding, BindingSet, aor_key
from sipmsg.digest import ha1

pytestmark = pytest.mark.integration

PASSWORD = "Correct-Horse-7"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _sipmesh(
    *args: str,
    data_dir: Path,
    nats_url: str | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
    clean.update(env or {})
    url = ["--nats-url", nats_url] if nats_url else []
    return subprocess.run(
        [sys.executable, "-m", "sipmesh", *args, "--data-dir", str(data_dir), *url],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
        check=False,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def js_url(nats_url: str) -> str:
    """The session NATS with every bucket, as `sipmesh up` makes them."""

    async def ensure() -> None:
        nc = await nats.connect(nats_url)
        try:
            await kv.ensure_jetstream(nc.jetstream())
        finally:
            await nc.close()

    asyncio.run(ensure())
    return nats_url


@pytest.fixture
def domain() -> str:
    """A domain of this test alone (the NATS server is shared)."""
    return f"t{uuid.uuid4().hex[:12]}.example.com"


@contextlib.asynccontextmanager
async def _bucket(url: str, name: str) -> AsyncIterator[KeyValue]:
    nc = await nats.connect(url)
    try:
        yield await nc.jetstream().key_value(name)
    finally:
        await nc.close()


async def _entries(url: str, name: str, domain: str) -> dict[str, bytes]:
    """Every key of ``domain`` in a bucket and its value, history included.

    Read message by message from the stream (next by subject), not by a KV
    watch: see :func:`_latest`.
    """
    prefix = aor_key("x", domain).partition(".")[0]
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        found: dict[str, bytes] = {}
        seq = 1
        while True:
            try:
                msg = await js.get_msg(
                    f"KV_{name}", seq=seq, subject=f"$KV.{name}.{prefix}.*", next=True
                )
            except NotFoundError:
                return found
            assert msg.subject is not None
            assert msg.seq is not None
            found[f"{msg.subject.split('.', 2)[2]}@{msg.seq}"] = msg.data or b""
            seq = msg.seq + 1
    finally:
        await nc.close()


async def _latest(url: str, domain: str) -> dict[str, bytes]:
    """Every live key of ``domain`` in ``subscribers`` and its value.

    :func:`sipmesh_bus.kvlist.live_entries`, not a KV watch read until it
    yields None: nats-py's watch can end its initial values before it has
    delivered them (seen once in CI as an empty result after an import).
    """
    prefix = aor_key("x", domain).partition(".")[0]
    nc = await nats.connect(url)
    try:
        bucket = await nc.jetstream().key_value(kv.BUCKET_SUBSCRIBERS)
        entries = await live_entries(bucket, f"{prefix}.*")
        return {key: entry.value for key, entry in entries.items()}
    finally:
        await nc.close()


def test_user_add_list_del_round_trip(js_url: str, domain: str, tmp_path: Path) -> None:
    added = _sipmesh(
        "user", "add", f"alice@{domain}", "--password", PASSWORD, data_dir=tmp_path, nats_url=js_url
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"added alice@{domain}"

    stored = asyncio.run(_latest(js_url, domain))
    assert list(stored) == [aor_key("alice", domain)]
    sub = records.decode_subscriber(stored[aor_key("alice", domain)])
    assert (sub.user, sub.domain, sub.enabled) == ("alice", domain, True)
    realm = domain.encode()
    assert sub.ha1_md5 == ha1(b"alice", realm, PASSWORD.encode(), b"MD5").decode()
    assert sub.ha1_sha256 == ha1(b"alice", realm, PASSWORD.encode(), b"SHA-256").decode()

    listed = _sipmesh("user", "list", "--domain", domain, data_dir=tmp_path, nats_url=js_url)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["USER", "DOMAIN", "ENABLED"]
    assert [line.split() for line in lines[1:]] == [["alice", domain, "yes"]]
    assert sub.ha1_md5 not in listed.stdout

    again = _sipmesh(
        "user", "add", "alice", "--domain", domain.upper(), "--password", PASSWORD + "2",
        data_dir=tmp_path, nats_url=js_url,
    )  # fmt: skip
    assert again.stdout.strip() == f"updated alice@{domain}"

    history = asyncio.run(_entries(js_url, kv.BUCKET_SUBSCRIBERS, domain))
    assert len(history) == 2
    assert not any(PASSWORD.encode() in value for value in history.values())

    deleted = _sipmesh("user", "del", f"alice@{domain}", data_dir=tmp_path, nats_url=js_url)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted alice@{domain}"
    assert asyncio.run(_latest(js_url, domain)) == {}
    # A purge: the old HA1s are gone with the user, not only hidden.
    assert all(not v for v in asyncio.run(_entries(js_url, kv.BUCKET_SUBSCRIBERS, domain)).values())

    empty = _sipmesh("user", "list", "--domain", domain, data_dir=tmp_path, nats_url=js_url)
    assert (empty.returncode, empty.stdout, empty.stderr.strip()) == (
        0,
        "",
        f"no users in {domain}",
    )
    gone = _sipmesh("user", "del", f"alice@{domain}", data_dir=tmp_path, nats_url=js_url)
    assert _one_error_line(gone, 1) == f"sipmesh: error: no user alice@{domain}"

    for proc in (added, listed, again, deleted, empty, gone):
        assert PASSWORD not in proc.stdout + proc.stderr


def test_user_add_reads_the_password_from_stdin(js_url: str, domain: str, tmp_path: Path) -> None:
    proc = _sipmesh(
        "user", "add", "bob", "--domain", domain, "--password", "-",
        data_dir=tmp_path, nats_url=js_url, stdin="from stdin; with spaces \n",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sub = records.decode_subscriber(asyncio.run(_latest(js_url, domain))[aor_key("bob", domain)])
    assert sub.ha1_md5 == ha1(b"bob", domain.encode(), b"from stdin; with spaces ", b"MD5").decode()


def test_user_add_without_password_off_a_terminal_is_exit_2(
    js_url: str, domain: str, tmp_path: Path
) -> None:
    proc = _sipmesh("user", "add", "bob", "--domain", domain, data_dir=tmp_path, nats_url=js_url)
    assert _one_error_line(proc, 2).startswith("sipmesh: error: no password: pass --password")
    assert asyncio.run(_latest(js_url, domain)) == {}


def test_user_add_domain_defaults_to_env_then_up_file(
    js_url: str, domain: str, tmp_path: Path
) -> None:
    (tmp_path / "domain").write_text(domain + "\n")  # as `sipmesh up --domain` leaves it
    from_file = _sipmesh(
        "user", "add", "carol", "--password", "x", data_dir=tmp_path, nats_url=js_url
    )
    assert from_file.stdout.strip() == f"added carol@{domain}"

    other = f"env.{domain}"
    from_env = _sipmesh(
        "user", "add", "carol", "--password", "x", data_dir=tmp_path, nats_url=js_url,
        env={"SIPMESH_DOMAIN": other},
    )  # fmt: skip
    assert from_env.stdout.strip() == f"added carol@{other}"

    (tmp_path / "domain").unlink()
    none = _sipmesh("user", "add", "carol", "--password", "x", data_dir=tmp_path, nats_url=js_url)
    assert _one_error_line(none, 2).startswith("sipmesh: error: no domain: pass --domain")


def test_user_bad_names_are_exit_2(js_url: str, domain: str, tmp_path: Path) -> None:
    bad_user = _sipmesh(
        "user", "add", "al ice", "--domain", domain, "--password", "x",
        data_dir=tmp_path, nats_url=js_url,
    )  # fmt: skip
    assert _one_error_line(bad_user, 2).startswith("sipmesh: error: bad user name 'al ice'")
    clash = _sipmesh(
        "user", "add", "alice@a.example", "--domain", "b.example", "--password", "x",
        data_dir=tmp_path, nats_url=js_url,
    )  # fmt: skip
    assert "a.example" in _one_error_line(clash, 2)
    usage = _sipmesh("user", "add", "--password", "x", data_dir=tmp_path, nats_url=js_url)
    assert "required: NAME" in _one_error_line(usage, 2)


def _count(url: str, domain: str) -> int:
    return len(asyncio.run(_latest(url, domain)))


def test_user_import_ten_thousand(js_url: str, domain: str, tmp_path: Path) -> None:
    users_file = tmp_path / "users.csv"
    users_file.write_text("SEQUENTIAL\n" + "".join(f"u{i:05d};pw-{i}\n" for i in range(10_000)))
    started = time.monotonic()
    proc = _sipmesh(
        "user", "import", str(users_file), "--domain", domain, data_dir=tmp_path, nats_url=js_url
    )
    took = time.monotonic() - started
    print(f"\nsipmesh user import: 10000 users in {took:.2f} s (whole process)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"imported 10000 users from {users_file} in ")
    assert proc.stderr == ""  # not a terminal: no progress bar

    stored = asyncio.run(_latest(js_url, domain))
    assert len(stored) == 10_000
    sub = records.decode_subscriber(stored[aor_key("u04321", domain)])
    assert sub.ha1_sha256 == ha1(b"u04321", domain.encode(), b"pw-4321", b"SHA-256").decode()


def test_user_import_csv_with_domains_and_again(js_url: str, domain: str, tmp_path: Path) -> None:
    users_file = tmp_path / "users.csv"
    users_file.write_text(
        f'user,password,domain\nann,"p,1",{domain}\nben,p2,{domain}\ncid@{domain},p3\n'
    )
    for _ in range(2):  # importing again replaces, it does not fail
        proc = _sipmesh("user", "import", str(users_file), data_dir=tmp_path, nats_url=js_url)
        assert proc.returncode == 0, proc.stderr
    stored = asyncio.run(_latest(js_url, domain))
    assert sorted(records.decode_subscriber(v).user for v in stored.values()) == [
        "ann",
        "ben",
        "cid",
    ]
    ann = records.decode_subscriber(stored[aor_key("ann", domain)])
    assert ann.ha1_md5 == ha1(b"ann", domain.encode(), b"p,1", b"MD5").decode()


def test_user_import_bad_line_names_it_and_imports_nothing(
    js_url: str, domain: str, tmp_path: Path
) -> None:
    users_file = tmp_path / "users.csv"
    lines = [f"user{i},secret{i}" for i in range(1, 21)]
    lines[16] = "carol"  # line 17
    users_file.write_text("\n".join(lines) + "\n")
    proc = _sipmesh(
        "user", "import", str(users_file), "--domain", domain, data_dir=tmp_path, nats_url=js_url
    )
    line = _one_error_line(proc, 2)
    assert line == f"sipmesh: error: {users_file}:17: expected user,password[,domain]"
    assert _count(js_url, domain) == 0


def test_user_import_missing_file_is_exit_2(js_url: str, tmp_path: Path) -> None:
    proc = _sipmesh(
        "user", "import", str(tmp_path / "nope.csv"), data_dir=tmp_path, nats_url=js_url
    )
    assert _one_error_line(proc, 2).startswith(f"sipmesh: error: cannot read {tmp_path}/nope.csv")


def _binding(contact: str, expires_at: float, **extra: object) -> Binding:
    fields: dict[str, object] = {
        "contact": contact,
        "expires_at": expires_at,
        "call_id": "c1",
        "cseq": 1,
        "registered_at": expires_at - 600,
        "source_host": "192.0.2.7",
        "source_port": 5062,
        "transport": "udp",
        "edge_id": "edge-a",
    }
    fields.update(extra)
    return Binding(**fields)  # type: ignore[arg-type]


async def _put_location(url: str, key: str, bindings: BindingSet) -> None:
    async with _bucket(url, kv.BUCKET_LOCATION) as bucket:
        await bucket.put(key, records.encode_record(bindings))


def test_registrations_shows_live_bindings_only(js_url: str, domain: str, tmp_path: Path) -> None:
    now = time.time()
    live = _binding("sip:alice@192.0.2.7:5062", now + 600, user_agent="Linphone/5.2")
    live_v6 = _binding(
        "sip:alice@[2001:db8::1]", now + 300, source_host="2001:db8::1", transport="tcp"
    )
    expired = _binding("sip:alice@198.51.100.9", now - 5)
    alice = BindingSet(aor=f"sip:alice@{domain}", bindings=[expired, live, live_v6])
    bob = BindingSet(aor=f"sip:bob@{domain}", bindings=[_binding("sip:bob@198.51.100.10", now - 1)])
    asyncio.run(_put_location(js_url, aor_key("alice", domain), alice))
    asyncio.run(_put_location(js_url, aor_key("bob", domain), bob))

    proc = _sipmesh(
        "registrations", "--user", f"alice@{domain}", data_dir=tmp_path, nats_url=js_url
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["AOR", "CONTACT", "SOURCE", "EXPIRES"]
    assert len(lines) == 3
    first, second = lines[1].split(), lines[2].split()
    assert first[:3] == [f"sip:alice@{domain}", "sip:alice@192.0.2.7:5062", "192.0.2.7:5062/udp"]
    assert (first[3], first[5]) == ("in", "s")
    assert 500 <= int(first[4]) <= 600  # 600 s at the put; slack for a loaded machine
    assert first[6:] == ["edge-a", "Linphone/5.2"]
    assert second[1:3] == ["sip:alice@[2001:db8::1]", "[2001:db8::1]:5062/tcp"]
    assert second[-1] == "-"
    assert "198.51.100" not in proc.stdout

    everyone = _sipmesh("registrations", data_dir=tmp_path, nats_url=js_url)
    assert everyone.returncode == 0, everyone.stderr
    assert f"sip:bob@{domain}" not in everyone.stdout
    assert everyone.stdout.count(f"sip:alice@{domain}") == 2

    nobody = _sipmesh(
        "registrations", "--user", f"bob@{domain}", data_dir=tmp_path, nats_url=js_url
    )
    assert (nobody.returncode, nobody.stdout) == (0, "")
    assert nobody.stderr.strip() == f"no live registrations of bob@{domain}"


@pytest.mark.parametrize(
    "command",
    [("user", "list"), ("user", "del", "x@example.com"), ("registrations",)],
    ids=["list", "del", "registrations"],
)
def test_unreachable_nats_is_one_line_exit_1(command: tuple[str, ...], tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{_free_port()}"
    proc = _sipmesh(*command, data_dir=tmp_path, nats_url=url)
    assert _one_error_line(proc, 1).startswith(f"sipmesh: error: cannot reach NATS at {url}: ")


def test_no_nats_url_and_no_up_is_one_line_exit_1(tmp_path: Path) -> None:
    proc = _sipmesh("user", "list", data_dir=tmp_path)
    assert _one_error_line(proc, 1).startswith("sipmesh: error: no NATS URL: pass --nats-url")


def test_the_url_file_of_up_is_used(js_url: str, domain: str, tmp_path: Path) -> None:
    (tmp_path / "nats.url").write_text(js_url + "\n")
    proc = _sipmesh("user", "add", f"dan@{domain}", "--password", "x", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _count(js_url, domain) == 1


@pytest.fixture
def bare_nats(tmp_path: Path) -> Iterator[str]:
    """A NATS without the sipmesh buckets."""
    with NatsServer(store_dir=tmp_path / "bare") as server:
        yield server.url


def test_missing_bucket_is_one_line_exit_1(bare_nats: str, tmp_path: Path) -> None:
    proc = _sipmesh("user", "list", data_dir=tmp_path, nats_url=bare_nats)
    line = _one_error_line(proc, 1)
    assert line == (
        f"sipmesh: error: NATS at {bare_nats} has no KV bucket 'subscribers': "
        "start `sipmesh up` once (it creates the buckets)"
    )


def test_with_a_running_up_no_url_or_domain_is_needed(tmp_path: Path) -> None:
    """`sipmesh up --domain` leaves the URL and the domain; `user` finds both alone."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIPMESH_")}
    data_dir = tmp_path / "data"
    up = subprocess.Popen(
        [sys.executable, "-m", "sipmesh", "up", "--data-dir", str(data_dir), "--domain",
         "Up.Example.COM", "--nats-port", "0", "--sip-port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (data_dir / "nats.url").exists():
            assert up.poll() is None, "sipmesh up exited"
            assert time.monotonic() < deadline, "sipmesh up did not write nats.url"
            time.sleep(0.1)
        added = _sipmesh("user", "add", "erin", "--password", "-", data_dir=data_dir, stdin="pw\n")
        assert added.returncode == 0, added.stderr
        assert added.stdout.strip() == "added erin@up.example.com"
        listed = _sipmesh("user", "list", data_dir=data_dir)
        assert [line.split() for line in listed.stdout.splitlines()[1:]] == [
            ["erin", "up.example.com", "yes"]
        ]
    finally:
        up.terminate()
        up.wait(timeout=15)
    assert (data_dir / "domain").read_text().strip() == "Up.Example.COM"


def test_cli_unreachable_nats_error_hides_the_password() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sipmesh",
            "user",
            "list",
            "--nats-url",
            "nats://bob:s3cret@127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "s3cret" not in proc.stderr + proc.stdout
    assert "nats://***@127.0.0.1:1" in proc.stderr
