"""``sipmesh up``'s scrape configuration: the file's shape and the per-service ports."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import yaml

from sipmesh.services import ServiceSpec, UpOptions
from sipmesh.up import _scrape_host, _Supervisor, prometheus_config, prometheus_file
from tests.observability._support import promtool


def _two(_opts: UpOptions) -> int:
    return 2


SPEC_A = ServiceSpec(name="registrar", module="sipmesh_registrar", help="", replicas=_two)
SPEC_B = ServiceSpec(name="router", module="sipmesh_router", help="")


def _opts(tmp_path: Path) -> UpOptions:
    return UpOptions(
        sip_host="127.0.0.1",
        sip_port=5060,
        domain="example.test",
        data_dir=tmp_path,
        nats_url="nats://127.0.0.1:4222",
    )


def test_prometheus_file_is_in_the_data_dir(tmp_path: Path) -> None:
    assert prometheus_file(tmp_path) == tmp_path / "prometheus.yml"


def test_prometheus_config_one_job_per_service_with_a_service_label() -> None:
    config = prometheus_config(
        {"up": ["127.0.0.1:9100"], "edge": ["127.0.0.1:9101", "127.0.0.1:9102"], "cdr": []}
    )
    assert config["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}
    assert config["scrape_configs"] == [
        {
            "job_name": "sipmesh-up",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": ["127.0.0.1:9100"], "labels": {"service": "up"}}],
        },
        {
            "job_name": "sipmesh-edge",
            "metrics_path": "/metrics",
            "static_configs": [
                {"targets": ["127.0.0.1:9101", "127.0.0.1:9102"], "labels": {"service": "edge"}}
            ],
        },
    ]


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    config = prometheus_config(
        {"up": ["127.0.0.1:9100"], "edge": ["[::1]:9101"]}, scrape_interval="1s"
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run(
        [promtool(), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test__scrape_host_reaches_wildcard_listeners_on_loopback() -> None:
    assert _scrape_host("0.0.0.0") == "127.0.0.1"
    assert _scrape_host("::") == "[::1]"
    assert _scrape_host("::1") == "[::1]"
    assert _scrape_host("10.1.2.3") == "10.1.2.3"


def test_supervisor_gives_every_replica_its_own_free_port(tmp_path: Path) -> None:
    supervisor = _Supervisor(_opts(tmp_path), [SPEC_A, SPEC_B])
    ports = [c.http_port for c in supervisor.children]
    assert len(ports) == 3
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free: nobody holds it after the choice
    assert supervisor.scrape_targets() == {
        "registrar": [f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"],
        "router": [f"127.0.0.1:{ports[2]}"],
    }


def test_supervisor_hands_the_port_and_host_to_the_child(tmp_path: Path) -> None:
    supervisor = _Supervisor(_opts(tmp_path), [SPEC_B], http_host="0.0.0.0")
    (child,) = supervisor.children
    env = supervisor._env(child)
    assert env["SIPMESH_HTTP_PORT"] == str(child.http_port)
    assert env["SIPMESH_HTTP_HOST"] == "0.0.0.0"
    assert supervisor.scrape_targets() == {"router": [f"127.0.0.1:{child.http_port}"]}
