"""Media settings: instance short forms, YAML/env loading, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipmesh_bus.config import ConfigError, load_config
from sipmesh_media.__main__ import build_config
from sipmesh_media.config import MediaConfig, parse_instance
from sipmesh_media.pool import Instance


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtp1=10.0.0.5:22222/2", Instance(name="rtp1", host="10.0.0.5", port=22222, weight=2)),
        ("10.0.0.6:22223", Instance(name="10_0_0_6-22223", host="10.0.0.6", port=22223)),
        ("v6=[2001:db8::1]:22222", Instance(name="v6", host="2001:db8::1", port=22222)),
        ("drain=h:1/0", Instance(name="drain", host="h", port=1, weight=0)),
    ],
    ids=["full", "no-name", "ipv6", "weight-0"],
)
def test_parse_instance(text: str, expected: Instance) -> None:
    assert parse_instance(text) == expected


@pytest.mark.parametrize("text", ["", "host", "a=host:", "h:70000", "h:1/x", "a b=h:1"])
def test_parse_instance_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"media\.instances"):
        parse_instance(text)


def test_config_from_env_short_forms() -> None:
    config = load_config(
        MediaConfig,
        env={
            "SIPMESH_MEDIA_INSTANCES": "a=127.0.0.1:2000/3, b=127.0.0.1:2001",
            "SIPMESH_MEDIA_TIMEOUT": "0.25",
            "SIPMESH_MEDIA_DEFAULT_FLAGS": "trust-address,ICE=force",
            "SIPMESH_MEDIA_LOCAL_RTPENGINE": "true",
        },
    )
    assert [i.name for i in config.media.pool_instances()] == ["a", "b"]
    assert config.media.pool_instances()[0].weight == 3
    assert config.media.timeout == 0.25
    assert config.media.default_flags == ["trust-address", "ICE=force"]
    assert config.media.local_rtpengine is True


def test_config_from_yaml_mixed_forms(tmp_path: Path) -> None:
    path = tmp_path / "media.yaml"
    path.write_text(
        "media:\n"
        "  instances:\n"
        "    - {name: big, host: 10.0.0.5, port: 22222, weight: 2}\n"
        "    - small=10.0.0.6:22222\n"
    )
    config = load_config(MediaConfig, path=path, env={})
    assert config.media.pool_instances() == [
        Instance(name="big", host="10.0.0.5", port=22222, weight=2),
        Instance(name="small", host="10.0.0.6", port=22222, weight=1),
    ]


def test_config_unknown_key_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "media.yaml"
    path.write_text("media:\n  timout: 1\n")
    with pytest.raises(ConfigError) as exc_info:
        load_config(MediaConfig, path=path, env={})
    assert str(exc_info.value) == "config error: media.timout: unknown setting"


def test_build_config_flags_and_duplicate_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIPMESH_CONFIG", raising=False)
    config = build_config(["--nats-url", "nats://127.0.0.1:1", "--local-rtpengine"])
    assert config.nats.url == "nats://127.0.0.1:1"
    assert config.media.local_rtpengine is True
    monkeypatch.setenv("SIPMESH_MEDIA_INSTANCES", "a=h:1,a=h:2")
    with pytest.raises(ConfigError) as exc_info:
        build_config([])
    assert "share a name" in str(exc_info.value)
