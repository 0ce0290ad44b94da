"""Every service stops on a bad setting with one line and exit status 2.

Status 2 is what ``sipmesh up`` takes as final: a service that exited 1 would
be restarted every second, forever, on a setting that can never work.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SERVICES = ["edge", "registrar", "router", "media", "cdr"]


@pytest.mark.parametrize("service", SERVICES)
def test_service_bad_setting_is_one_line_and_exit_2(service: str) -> None:
    env = {**os.environ, "SIPMESH_HTTP_PORT": "abc"}
    proc = subprocess.run(
        [sys.executable, "-m", f"sipmesh_{service}", "--nats-url", "nats://127.0.0.1:1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ['config error: http.port: Expected int >= 0 and <= 65535, got "abc"']
