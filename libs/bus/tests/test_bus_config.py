"""sipmesh_bus.config: YAML + environment into typed Structs, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import pytest
from msgspec import Meta

from sipmesh_bus.config import (
    ConfigError,
    NatsConfig,
    ServiceConfig,
    Settings,
    load_config,
)


class EdgeSettings(Settings, frozen=True, kw_only=True):
    sip_host: str = "127.0.0.1"
    sip_port: Annotated[int, Meta(ge=0)] = 5060
    transports: list[str] = msgspec.field(default_factory=lambda: ["udp"])
    tls: bool = False


class SipEdgeSettings(Settings, frozen=True, kw_only=True):
    id: str = "x"


class EdgeConfig(ServiceConfig, frozen=True, kw_only=True):
    edge: EdgeSettings = EdgeSettings()
    sip_edge: SipEdgeSettings = SipEdgeSettings()
    log_level: str = "info"


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sipmesh.yaml"
    path.write_text(text)
    return path


def test_load_config_defaults_without_file_or_env() -> None:
    config = load_config(EdgeConfig, env={})
    assert config == EdgeConfig()
    assert config.nats.url == "nats://127.0.0.1:4222"
    assert config.http.port == 0


def test_load_config_reads_yaml_sections(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        "edge:\n  sip_port: 5070\n  transports: [udp, tcp]\nnats:\n  url: nats://10.0.0.1:4222\n",
    )
    config = load_config(EdgeConfig, path=path, env={})
    assert config.edge.sip_port == 5070
    assert config.edge.transports == ["udp", "tcp"]
    assert config.nats.url == "nats://10.0.0.1:4222"
    assert config.edge.sip_host == "127.0.0.1"


def test_load_config_env_overrides_yaml(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "edge:\n  sip_port: 5070\n")
    env = {
        "SIPMESH_EDGE_SIP_PORT": "5080",
        "SIPMESH_EDGE_TLS": "true",
        "SIPMESH_EDGE_TRANSPORTS": "udp, tcp ,ws",
        "SIPMESH_NATS_DRAIN_TIMEOUT": "1.5",
        "SIPMESH_LOG_LEVEL": "debug",
    }
    config = load_config(EdgeConfig, path=path, env=env)
    assert config.edge.sip_port == 5080
    assert config.edge.tls is True
    assert config.edge.transports == ["udp", "tcp", "ws"]
    assert config.nats.drain_timeout == 1.5
    assert config.log_level == "debug"


def test_load_config_longest_section_wins() -> None:
    # SIPMESH_SIP_EDGE_ID belongs to section sip_edge, not to a section "sip".
    config = load_config(EdgeConfig, env={"SIPMESH_SIP_EDGE_ID": "edge-9"})
    assert config.sip_edge.id == "edge-9"


def test_load_config_ignores_env_that_names_no_setting() -> None:
    env = {"SIPMESH_DATA_DIR": "/x", "SIPMESH_NATS_SERVER": "/bin/x", "OTHER_EDGE_SIP_PORT": "1"}
    assert load_config(EdgeConfig, env=env) == EdgeConfig()


def test_load_config_file_from_sipmesh_config_env(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "http:\n  port: 9100\n")
    config = load_config(EdgeConfig, env={"SIPMESH_CONFIG": str(path)})
    assert config.http.port == 9100


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SIPMESH_EDGE_SIP_PORT": "abc"},
            'config error: edge.sip_port: Expected int >= 0, got "abc"',
        ),
        (
            {"SIPMESH_EDGE_SIP_PORT": "-1"},
            'config error: edge.sip_port: Expected int >= 0, got "-1"',
        ),
        (
            {"SIPMESH_HTTP_PORT": "70000"},
            'config error: http.port: Expected int <= 65535, got "70000"',
        ),
        (
            {"SIPMESH_HTTP_PORT": "x"},
            'config error: http.port: Expected int >= 0 and <= 65535, got "x"',
        ),
        (
            {"SIPMESH_NATS_DRAIN_TIMEOUT": "0"},
            'config error: nats.drain_timeout: Expected float > 0.0, got "0"',
        ),
        ({"SIPMESH_EDGE_TLS": "maybe"}, 'config error: edge.tls: Expected bool, got "maybe"'),
    ],
    ids=["not-int", "negative", "too-big", "port-not-int", "zero-timeout", "not-bool"],
)
def test_load_config_env_error_is_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load_config(EdgeConfig, env=env)
    assert str(exc_info.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("edge:\n  sip_prot: 5070\n", "config error: edge.sip_prot: unknown setting"),
        ("edgy: {}\n", "config error: edgy: unknown setting"),
        ("edge:\n  sip_port: -5\n", "config error: edge.sip_port: Expected int >= 0, got -5"),
        (
            "edge:\n  transports: [udp, 7]\n",
            "config error: edge.transports[1]: Expected str, got 7",
        ),
        ("edge: [1]\n", "config error: edge: Expected object, got [1]"),
    ],
    ids=["typo-key", "typo-section", "negative", "list-item", "section-not-mapping"],
)
def test_load_config_yaml_error_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as exc_info:
        load_config(EdgeConfig, path=path, env={})
    assert str(exc_info.value) == message


def test_load_config_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "edge:\n  sip_port: [1\n")
    with pytest.raises(ConfigError) as exc_info:
        load_config(EdgeConfig, path=path, env={})
    text = str(exc_info.value)
    assert text.startswith(f"config error: {path}: line ")
    assert "\n" not in text


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as exc_info:
        load_config(EdgeConfig, path=path, env={})
    assert str(exc_info.value) == f"config error: {path}: No such file or directory"


def test_load_config_top_level_must_be_mapping(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError) as exc_info:
        load_config(EdgeConfig, path=path, env={})
    assert "expected a mapping" in str(exc_info.value)


def test_load_config_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(EdgeConfig, path=_yaml(tmp_path, ""), env={}) == EdgeConfig()


def test_nats_config_default_is_loopback() -> None:
    assert NatsConfig().url.startswith("nats://127.0.0.1:")
