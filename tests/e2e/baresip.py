"""A headless baresip (Debian ``baresip``, 1.0) driven over its ``ctrl_tcp`` module.

The configuration is the one known to work on these machines (shared
TOOLING.md §6): loopback only (``net_interface 127.0.0.1``), no sound card
(``aubridge`` sink, an 8 kHz WAV file as the source, written here with
:mod:`wave`), commands and events as netstring-framed JSON on a TCP port.

On ``quit`` baresip un-REGISTERs and waits for the answer; :meth:`Baresip.stop`
kills it by PID when it does not exit in time (a registrar already gone).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from tests.e2e.harness import LOOPBACK, free_port

__all__ = ["Baresip", "BaresipError", "write_tone"]

MODULES: Final = "/usr/lib/baresip/modules"
_TONE_RATE: Final = 8000


class BaresipError(AssertionError):
    """baresip did not do what the test waited for; the message holds its log."""


class _StartupError(BaresipError):
    """baresip exited before it opened ctrl_tcp (a port taken meanwhile, most likely)."""


def write_tone(path: Path, seconds: float = 1.0) -> Path:
    """A mono 16-bit 8 kHz WAV of a quiet square wave (G.711 needs 8 kHz)."""
    frames = bytearray()
    for i in range(int(_TONE_RATE * seconds)):
        sample = 2000 if (i // 10) % 2 else -2000  # 400 Hz
        frames += sample.to_bytes(2, "little", signed=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(_TONE_RATE)
        out.writeframes(bytes(frames))
    return path


class Baresip:
    """One baresip process with one account.

    Args:
        binary: the executable.
        workdir: its configuration directory is created in here.
        account: the accounts line, e.g.
            ``<sip:alice@example.com>;auth_pass=x;outbound="sip:127.0.0.1:5060"``.
    """

    def __init__(self, binary: str, workdir: Path, *, account: str) -> None:
        self.binary = binary
        self.dir = workdir / f"baresip-{free_port(udp=False)}"
        self.dir.mkdir(parents=True)
        self.account = account
        self.sip_port = free_port()
        self.ctrl_port = free_port(udp=False)
        self.events: list[dict[str, Any]] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._buffer = b""
        self._tokens = 0
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.dir / "baresip.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- life cycle ------------------------------------------------------------------

    def start(self, timeout: float = 10.0, attempts: int = 3) -> None:
        """Write the configuration, start baresip, connect to ``ctrl_tcp``, add the account.

        Ports are picked free just before, so another process may take one in
        between: a start-up that fails is tried again on new ports.
        """
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
            except _StartupError:
                if attempt == attempts - 1:
                    raise
                self.sip_port = free_port()
                self.ctrl_port = free_port(udp=False)
            else:
                return

    def _start_once(self, timeout: float) -> None:
        rtp = free_port(tcp=False)
        tone = write_tone(self.dir / "tone8k.wav")
        config = [
            f"sip_listen {LOOPBACK}:{self.sip_port}",
            f"net_interface {LOOPBACK}",
            "audio_player aubridge,nil",
            f"audio_source aufile,{tone}",
            "audio_alert aubridge,nil",
            f"rtp_ports {rtp}-{rtp + 20}",
            f"module_path {MODULES}",
            "module g711.so",
            "module aufile.so",
            "module aubridge.so",
            "module ctrl_tcp.so",
            "module_app account.so",
            "module_app menu.so",
            f"ctrl_tcp_listen {LOOPBACK}:{self.ctrl_port}",
        ]
        (self.dir / "config").write_text("\n".join(config) + "\n", encoding="utf-8")
        # No account at start-up: it is created with ``uanew`` once ctrl_tcp is
        # connected, so that no registration event happens before we listen.
        (self.dir / "accounts").write_text("", encoding="utf-8")
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [self.binary, "-f", str(self.dir), "-v"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise _StartupError(f"baresip exited at start-up:\n{self.log()}")
            try:
                self._sock = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=0.5)
            except OSError:
                time.sleep(0.05)
                continue
            created = self.command("uanew", self.account)
            if not created.get("ok"):
                raise BaresipError(f"uanew refused {self.account!r}: {created}")
            return
        raise BaresipError(f"baresip's ctrl_tcp did not open in {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 5.0) -> int | None:
        """``quit`` (it un-REGISTERs first); SIGKILL its group after ``timeout`` s."""
        if self._proc is None:
            return None
        if self._proc.poll() is None and self._sock is not None:
            with contextlib.suppress(OSError):
                self._send({"command": "quit", "params": "", "token": "quit"})
        try:
            code: int | None = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            code = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        return code

    # -- ctrl_tcp ----------------------------------------------------------------------

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Send a command and return its response (``{"ok": ..., "data": ...}``)."""
        self._tokens += 1
        token = f"t{self._tokens}"
        self._send({"command": command, "params": params, "token": token})
        deadline = time.monotonic() + timeout
        while token not in self._responses:
            self._receive(deadline, f"no response to {command!r}")
        return self._responses.pop(token)

    def wait_event(self, *types: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first event (past or future) whose type is one of ``types``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("type") in types:
                    return event
            seen = len(self.events)
            self._receive(deadline, f"no {' or '.join(types)} event")

    def _send(self, message: dict[str, str]) -> None:
        assert self._sock is not None, "baresip is not started"
        payload = json.dumps(message).encode()
        self._sock.sendall(b"%d:%s," % (len(payload), payload))

    def _receive(self, deadline: float, what: str) -> None:
        assert self._sock is not None, "baresip is not started"
        left = deadline - time.monotonic()
        if left <= 0:
            raise BaresipError(f"{what} within the timeout; events {self.events}\n{self.log()}")
        self._sock.settimeout(left)
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            return
        if not data:
            raise BaresipError(f"baresip closed ctrl_tcp ({what}):\n{self.log()}")
        self._buffer += data
        for message in self._netstrings():
            if message.get("response"):
                self._responses[str(message.get("token"))] = message
            elif message.get("event"):
                self.events.append(message)

    def _netstrings(self) -> Iterator[dict[str, Any]]:
        while True:
            length, colon, rest = self._buffer.partition(b":")
            if not colon or len(rest) < int(length) + 1:
                return
            payload, self._buffer = rest[: int(length)], rest[int(length) + 1 :]
            decoded: dict[str, Any] = json.loads(payload)
            yield decoded
