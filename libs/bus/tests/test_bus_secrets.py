"""The shared-secret loader: precedence, the data-dir file, its race and its checks."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from sipmesh_bus.secrets import NONCE_SECRET_FILE, file_secret, load_shared_secret


def test_load_shared_secret_first_configured_value_wins(tmp_path: Path) -> None:
    got = load_shared_secret((None, "", "first-value-here", "second"), data_dir=tmp_path, owner="t")
    assert got == b"first-value-here"
    assert not (tmp_path / NONCE_SECRET_FILE).exists()


def test_load_shared_secret_data_dir_file_created_once_and_shared(tmp_path: Path) -> None:
    one = load_shared_secret((None,), data_dir=tmp_path, owner="registrar")
    two = load_shared_secret((), data_dir=str(tmp_path), owner="router")
    assert one == two
    assert len(one) == 64
    path = tmp_path / NONCE_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [NONCE_SECRET_FILE]  # no temp file left


def test_load_shared_secret_random_without_source_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sipmesh_bus.secrets"):
        one = load_shared_secret((), data_dir=None, owner="router")
    two = load_shared_secret((), data_dir=None, owner="router")
    assert one != two
    assert "router: no shared secret" in caplog.text


def test_file_secret_keeps_the_winner_of_a_race(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("written-by-another-process\n", encoding="ascii")
    assert file_secret(path) == b"written-by-another-process"


def test_file_secret_refuses_a_short_secret(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("short\n", encoding="ascii")
    with pytest.raises(OSError, match="shorter than 16"):
        file_secret(path)


def test_file_secret_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "secret"
    assert file_secret(path) == path.read_text(encoding="ascii").strip().encode()
    assert os.listdir(path.parent) == ["secret"]
