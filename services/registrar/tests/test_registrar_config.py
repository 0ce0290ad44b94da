"""The registrar's settings: the digest algorithms offered."""

from __future__ import annotations

import pytest

from sipmesh_bus.config import ConfigError, load_config
from sipmesh_registrar.config import RegistrarConfig, RegistrarSettings, make_policy


def test_config_algorithms_default_sha256_then_md5() -> None:
    assert make_policy(RegistrarSettings()).algorithms == (b"SHA-256", b"MD5")


def test_config_algorithms_from_environment_in_order() -> None:
    config = load_config(RegistrarConfig, env={"SIPMESH_REGISTRAR_ALGORITHMS": "MD5, SHA-256"})
    assert make_policy(config.registrar).algorithms == (b"MD5", b"SHA-256")


def test_config_algorithms_md5_alone_and_duplicates_once() -> None:
    settings = RegistrarSettings(algorithms=("MD5", "MD5"))
    assert make_policy(settings).algorithms == (b"MD5",)


@pytest.mark.parametrize("value", ["SHA-1", ""])
def test_config_algorithms_unknown_or_empty_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"registrar\.algorithms"):
        load_config(RegistrarConfig, env={"SIPMESH_REGISTRAR_ALGORITHMS": value})
