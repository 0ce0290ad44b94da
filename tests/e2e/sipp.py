"""Run SIPp scenarios (``tests/e2e/scenarios/*.xml``) and read what they report.

Every run is bounded: ``-m`` calls, ``-timeout`` with ``-timeout_error`` for the
whole run, ``-recv_timeout`` for each expected message. A run keeps its files
(screen, errors, statistics, the scenario's ``<log>`` lines, optionally every
message) in its own directory under the test's temporary directory.

SIPp exit codes: 0 every call succeeded, 1 at least one failed, 97 stopped by
an internal command, 99 ended without processing a call, 255 fatal error
(-1, e.g. a scenario or authentication problem), 254 could not bind.
"""

from __future__ import annotations

import csv
import itertools
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from tests.e2e.harness import LOOPBACK, free_port

__all__ = ["SCENARIOS", "RunSipp", "SippResult", "SippRun", "sipp_binary", "write_users"]

SCENARIOS: Final = Path(__file__).with_name("scenarios")
TRANSPORTS: Final = {"udp": "un", "tcp": "t1"}
#: ``-t un``: one UDP socket per call; ``-t t1``: one TCP connection for all.
_runs = itertools.count(1)


def sipp_binary() -> str | None:
    """The ``sipp`` on PATH (Debian package ``sip-tester``), or None."""
    return shutil.which("sipp")


def write_users(path: Path, users: Sequence[tuple[str, str]]) -> Path:
    """A SIPp injection file ``user;password`` (``sipmesh user import`` reads it too)."""
    lines = ["SEQUENTIAL", *(f"{user};{password}" for user, password in users)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class SippResult:
    """What one SIPp run left behind."""

    returncode: int
    stats: dict[str, str]
    #: The last row of ``-trace_stat`` (cumulative counters, ``...(C)`` columns).
    screen: str
    errors: str
    log_lines: list[str] = field(default_factory=list)
    #: The scenario's ``<log message=...>`` lines, in order.
    messages: str = ""
    #: Every message sent and received, when the run traced them.

    @property
    def successful(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", "0"))

    @property
    def failed(self) -> int:
        return int(self.stats.get("FailedCall(C)", "0"))

    def describe(self) -> str:
        """A summary for assertion messages."""
        return (
            f"sipp exit {self.returncode}, {self.successful} ok, {self.failed} failed\n"
            f"--- errors ---\n{self.errors[-3000:]}\n--- screen ---\n{self.screen[-3000:]}"
        )


class SippRun:
    """One SIPp process against ``target``; :meth:`wait` returns its :class:`SippResult`.

    Args:
        scenario: a file name in :data:`SCENARIOS`.
        target: ``(host, port)`` of the edge.
        workdir: where this run's files go (a new sub-directory).
        transport: ``"udp"`` or ``"tcp"``.
        users: an injection file (``-inf``), fields ``[field0]`` and ``[field1]``.
        keys: ``-key name value`` pairs, used as ``[name]`` in the scenario.
        calls: ``-m``.
        rate: ``-r`` calls per second.
        timeout: ``-timeout`` for the whole run, seconds.
        trace_messages: also keep every message (``-trace_msg``).
    """

    def __init__(
        self,
        scenario: str,
        *,
        target: tuple[str, int],
        workdir: Path,
        transport: str = "udp",
        users: Path | None = None,
        keys: Mapping[str, str] = {},
        calls: int = 1,
        rate: float = 10.0,
        timeout: float = 20.0,
        trace_messages: bool = True,
    ) -> None:
        binary = sipp_binary()
        assert binary is not None, "sipp is not installed (Debian package sip-tester)"
        self.dir = workdir / f"sipp-{next(_runs)}-{Path(scenario).stem}"
        self.dir.mkdir(parents=True)
        self.timeout = timeout
        argv = [binary, f"{target[0]}:{target[1]}", "-sf", str(SCENARIOS / scenario)]
        argv += ["-i", LOOPBACK, "-p", str(free_port()), "-t", TRANSPORTS[transport]]
        argv += ["-m", str(calls), "-r", str(rate), "-l", str(max(calls, 1))]
        argv += ["-timeout", f"{timeout:g}s", "-timeout_error", "-recv_timeout", "8000"]
        argv += ["-max_recv_loops", "10000", "-nostdin", "-max_socket", "2000"]
        argv += ["-trace_err", "-error_file", str(self.dir / "errors.log")]
        argv += ["-trace_screen", "-screen_file", str(self.dir / "screen.log")]
        argv += ["-trace_stat", "-stf", str(self.dir / "stat.csv"), "-fd", "1"]
        argv += ["-trace_logs", "-log_file", str(self.dir / "scenario.log")]
        if trace_messages:
            argv += ["-trace_msg", "-message_file", str(self.dir / "messages.log")]
        if users is not None:
            argv += ["-inf", str(users)]
        for name, value in keys.items():
            argv += ["-key", name, value]
        self.argv = argv
        with (self.dir / "stdout.log").open("wb") as out:
            self.popen = subprocess.Popen(
                argv,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self) -> SippResult:
        """Wait for the run to end (it is bounded by ``-timeout``; killed 15 s later)."""
        try:
            code = self.popen.wait(self.timeout + 15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait()
        return SippResult(
            returncode=code,
            stats=self._last_stats(),
            screen=self._read("screen.log") + self._read("stdout.log"),
            errors=self._read("errors.log"),
            log_lines=self._read("scenario.log").splitlines(),
            messages=self._read("messages.log"),
        )

    def kill(self) -> None:
        """End the run at once (a finalizer's last resort)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def _read(self, name: str) -> str:
        try:
            return (self.dir / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _last_stats(self) -> dict[str, str]:
        rows = list(csv.reader(self._read("stat.csv").splitlines(), delimiter=";"))
        if len(rows) < 2:
            return {}
        return dict(zip(rows[0], rows[-1], strict=False))


class RunSipp(Protocol):
    def __call__(
        self,
        scenario: str,
        *,
        users: list[tuple[str, str]],
        transport: str = "udp",
        expires: int = 600,
        calls: int | None = None,
        keys: Mapping[str, str] = ...,
    ) -> SippResult: ...
