"""The Helm chart renders offline, lints clean, checks its values and wires the services right."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import helm_python
import msgspec
import pytest
import yaml

from sipmesh.services import SERVICES
from sipmesh_bus.config import ServiceConfig, load_config
from sipmesh_cdr.config import CdrConfig
from sipmesh_edge.app import EdgeConfig
from sipmesh_edge.streams import StreamConfig
from sipmesh_media.config import MediaConfig
from sipmesh_registrar.config import RegistrarConfig
from sipmesh_router.config import RouterConfig

from .conftest import CHART, NAMESPACE, Manifest, Render

CONFIG_CLASSES: dict[str, type[ServiceConfig]] = {
    "edge": EdgeConfig,
    "registrar": RegistrarConfig,
    "router": RouterConfig,
    "media": MediaConfig,
    "cdr": CdrConfig,
}
NAMES = [s.name for s in SERVICES]


def one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


def kinds(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def secret_value(docs: list[Manifest], name: str, key: str) -> str:
    return base64.b64decode(one(docs, "Secret", name)["data"][key]).decode()


def config_of(docs: list[Manifest], svc: str) -> dict[str, Any]:
    text = one(docs, "ConfigMap", f"sipmesh-{svc}")["data"]["config.yaml"]
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


# -- the services table and the chart agree ---------------------------------------


def test_chart_knows_every_service_of_the_table() -> None:
    assert set(CONFIG_CLASSES) == set(NAMES)


def test_every_service_gets_its_objects(render: Render) -> None:
    docs = render({})
    for svc in NAMES:
        name = f"sipmesh-{svc}"
        for kind in ("Deployment", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy", "Service"):
            one(docs, kind, name)
        if svc != "cdr":  # SQLite by default: one replica, no autoscaler
            one(docs, "HorizontalPodAutoscaler", name)
    assert "sipmesh-cdr" not in kinds(docs, "HorizontalPodAutoscaler")


def test_namespace_is_the_release_namespace(rendered: list[Manifest]) -> None:
    for doc in rendered:
        assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]


# -- pods ------------------------------------------------------------------------------


def test_deployments_run_the_module_hardened(rendered: list[Manifest]) -> None:
    deployments = kinds(rendered, "Deployment")
    assert sorted(deployments) == sorted(f"sipmesh-{s}" for s in NAMES)
    for spec in SERVICES:
        pod = deployments[f"sipmesh-{spec.name}"]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        assert container["command"] == ["python", "-m", spec.module]
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        http = next(p for p in container["ports"] if p["name"] == "http")
        assert http["containerPort"] == 9090
        assert set(container["resources"]) == {"requests", "limits"}
        env = {e["name"]: e for e in container["env"]}
        assert env["SIPMESH_CONFIG"]["value"] == "/etc/sipmesh/config/config.yaml"
        assert mounts["/etc/sipmesh/config"] == "config"
        assert "secretKeyRef" in env["SIPMESH_NATS_URL"]["valueFrom"]


def test_registrar_and_router_share_the_nonce_secret(render: Render) -> None:
    docs = render({"registrar": {"nonceSecret": {"value": "s3cret"}}})
    refs = []
    for svc in ("registrar", "router"):
        pod = one(docs, "Deployment", f"sipmesh-{svc}")["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        refs.append(env["SIPMESH_REGISTRAR_NONCE_SECRET"]["valueFrom"]["secretKeyRef"])
    assert refs[0] == refs[1] == {"name": "sipmesh-registrar", "key": "nonce-secret"}
    assert secret_value(docs, "sipmesh-registrar", "nonce-secret") == "s3cret"


def test_generated_nonce_secret_is_long_and_random(render: Render) -> None:
    first = secret_value(render({}), "sipmesh-registrar", "nonce-secret")
    second = secret_value(render({}), "sipmesh-registrar", "nonce-secret")
    assert len(first) == 48
    assert first != second


def test_existing_secrets_replace_the_charts(render: Render) -> None:
    docs = render(
        {
            "registrar": {"nonceSecret": {"existingSecret": "mine", "existingSecretKey": "k"}},
            "externalNats": {"existingSecret": "nats-url", "existingSecretKey": "u"},
            "cdr": {"store": {"existingSecret": "pg", "existingSecretKey": "dsn"}},
        }
    )
    assert kinds(docs, "Secret") == {}
    env = {
        svc: {
            e["name"]: e.get("valueFrom", {}).get("secretKeyRef")
            for e in one(docs, "Deployment", f"sipmesh-{svc}")["spec"]["template"]["spec"][
                "containers"
            ][0]["env"]
        }
        for svc in NAMES
    }
    assert env["router"]["SIPMESH_REGISTRAR_NONCE_SECRET"] == {"name": "mine", "key": "k"}
    assert env["edge"]["SIPMESH_NATS_URL"] == {"name": "nats-url", "key": "u"}
    assert env["cdr"]["SIPMESH_CDR_STORE_URL"] == {"name": "pg", "key": "dsn"}
    assert "sipmesh-cdr" not in kinds(docs, "PersistentVolumeClaim")


def test_edge_id_is_the_pod_name(render: Render) -> None:
    pod = one(render({}), "Deployment", "sipmesh-edge")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["SIPMESH_EDGE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


# -- configuration files ------------------------------------------------------------------


def test_config_files_load_with_each_services_settings(
    rendered: list[Manifest], tmp_path: Path
) -> None:
    for svc, cls in CONFIG_CLASSES.items():
        path = tmp_path / f"{svc}.yaml"
        path.write_text(
            one(rendered, "ConfigMap", f"sipmesh-{svc}")["data"]["config.yaml"], encoding="utf-8"
        )
        config = load_config(cls, path=path, env={})
        assert (config.http.host, config.http.port) == ("0.0.0.0", 9090)
        if isinstance(config, EdgeConfig):
            streams = msgspec.convert(config.streams, StreamConfig)
            assert config.udp == ["0.0.0.0:5060"]
            assert streams.tcp == ("0.0.0.0:5060",)


def test_advertised_address_reaches_edge_and_router(render: Render) -> None:
    docs = render({"domain": "voip.example.org", "edge": {"advertisedAddress": "203.0.113.10"}})
    assert config_of(docs, "edge")["advertised_hosts"] == ["203.0.113.10", "voip.example.org"]
    router = config_of(docs, "router")["router"]
    assert router == {"domain": "voip.example.org", "advertised_host": "203.0.113.10"}
    assert config_of(docs, "registrar")["registrar"] == {"domain": "voip.example.org"}


def test_advertised_address_defaults_to_the_domain(render: Render) -> None:
    docs = render({"domain": "voip.example.org"})
    assert config_of(docs, "edge")["advertised_hosts"] == ["voip.example.org"]
    assert config_of(docs, "router")["router"]["advertised_host"] == "voip.example.org"


def test_settings_merge_into_the_section(render: Render) -> None:
    docs = render(
        {
            "registrar": {"settings": {"max_expires": 600, "domain": "override.example"}},
            "media": {"rtpengine": ["rtp1=10.0.0.5:22222/2"], "settings": {"timeout": 1.5}},
            "edge": {"settings": {"retry_after": 9}},
        }
    )
    assert config_of(docs, "registrar")["registrar"] == {
        "domain": "override.example",
        "max_expires": 600,
    }
    assert config_of(docs, "media")["media"] == {
        "instances": ["rtp1=10.0.0.5:22222/2"],
        "timeout": 1.5,
    }
    assert config_of(docs, "edge")["retry_after"] == 9


def test_tls_listener_uses_the_mounted_certificate(render: Render) -> None:
    docs = render({"edge": {"tls": {"enabled": True, "secretName": "sip-tls"}}})
    streams = config_of(docs, "edge")["streams"]
    assert streams["tls"] == ["0.0.0.0:5061"]
    pod = one(docs, "Deployment", "sipmesh-edge")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "sip-tls"
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert streams["cert_file"] == mounts["tls"] + "/tls.crt"
    assert streams["key_file"] == mounts["tls"] + "/tls.key"


# -- NATS --------------------------------------------------------------------------


def test_external_nats_credentials_go_into_the_url(render: Render) -> None:
    docs = render(
        {
            "externalNats": {
                "url": "nats://n1.example.net:4222, tls://n2.example.net:4222",
                "user": "sipmesh",
                "password": "p@ss:word",
            }
        }
    )
    urls = secret_value(docs, "sipmesh-nats", "url").split(",")
    # nats-py reads user and password from urlparse, without percent-decoding.
    parsed = [urlparse(u) for u in urls]
    assert [(p.scheme, p.hostname, p.port) for p in parsed] == [
        ("nats", "n1.example.net", 4222),
        ("tls", "n2.example.net", 4222),
    ]
    assert {(p.username, p.password) for p in parsed} == {("sipmesh", "p@ss:word")}


def test_external_nats_token(render: Render) -> None:
    docs = render({"externalNats": {"url": "nats://nats:4222", "token": "t0ken"}})
    assert secret_value(docs, "sipmesh-nats", "url") == "nats://t0ken@nats:4222"


def test_nats_subchart_url(render: Render) -> None:
    docs = render({"nats": {"enabled": True}})
    assert secret_value(docs, "sipmesh-nats", "url") == f"nats://sipmesh-nats.{NAMESPACE}.svc:4222"


def _jetstream_replicas(docs: list[Manifest]) -> set[str]:
    """SIPMESH_NATS_JETSTREAM_REPLICAS of every Deployment (one value expected)."""
    return {
        env["value"]
        for dep in kinds(docs, "Deployment").values()
        for env in dep["spec"]["template"]["spec"]["containers"][0]["env"]
        if env["name"] == "SIPMESH_NATS_JETSTREAM_REPLICAS"
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"nats": {"enabled": True}}, "3"),  # the dependency's default: a 3-node cluster
        ({"nats": {"enabled": True, "config": {"cluster": {"enabled": False}}}}, "1"),
        ({"nats": {"enabled": True, "config": {"cluster": {"replicas": 2}}}}, "1"),
        ({"nats": {"enabled": True, "jetstreamReplicas": 5}}, "5"),
        ({}, "1"),
        ({"externalNats": {"url": "nats://nats:4222", "jetstreamReplicas": 3}}, "3"),
    ],
)
def test_jetstream_replicas_env(render: Render, values: dict[str, Any], expected: str) -> None:
    docs = render(values)
    assert _jetstream_replicas(docs) == {expected}
    assert len(kinds(docs, "Deployment")) == len(SERVICES)
    env = {"SIPMESH_NATS_JETSTREAM_REPLICAS": expected}
    assert load_config(ServiceConfig, env=env).nats.jetstream_replicas == int(expected)


@pytest.mark.parametrize("bad", [0, 6, "3"])
def test_external_jetstream_replicas_is_schema_checked(render: Render, bad: object) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="jetstreamReplicas"):
        render({"externalNats": {"url": "nats://nats:4222", "jetstreamReplicas": bad}})


def test_external_nats_creds_file_from_an_existing_secret(render: Render) -> None:
    docs = render(
        {"externalNats": {"url": "nats://nats:4222", "credsSecret": "nc", "credsSecretKey": "u"}}
    )
    for dep in kinds(docs, "Deployment").values():
        pod = dep["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        path = env["SIPMESH_NATS_CREDS_FILE"]
        assert mounts["nats-creds"]["readOnly"] is True
        assert path == mounts["nats-creds"]["mountPath"] + "/nats.creds"
        secret = volumes["nats-creds"]["secret"]
        assert secret == {"secretName": "nc", "items": [{"key": "u", "path": "nats.creds"}]}
        config = load_config(ServiceConfig, env={"SIPMESH_NATS_CREDS_FILE": path})
        assert config.nats.creds_file == path
    # Without the Secret (or with the NATS dependency): no creds file.
    for values in ({}, {"nats": {"enabled": True}, "externalNats": {"credsSecret": "nc"}}):
        for dep in kinds(render(values), "Deployment").values():
            env_names = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert "SIPMESH_NATS_CREDS_FILE" not in env_names


def test_nats_dependency_is_the_official_chart() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    (dep,) = meta["dependencies"]
    assert dep["name"] == "nats"
    assert dep["repository"] == "https://nats-io.github.io/k8s/helm/charts/"
    assert dep["condition"] == "nats.enabled"
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["nats"]["config"]["jetstream"]["enabled"] is True
    assert values["nats"]["config"]["cluster"]["replicas"] == 3


# -- edge load balancers ---------------------------------------------------------


def test_edge_behind_udp_and_tcp_load_balancers(rendered: list[Manifest]) -> None:
    pod_labels = one(rendered, "Deployment", "sipmesh-edge")["spec"]["template"]["metadata"][
        "labels"
    ]
    for proto in ("udp", "tcp"):
        svc = one(rendered, "Service", f"sipmesh-edge-{proto}")["spec"]
        assert svc["type"] == "LoadBalancer"
        assert svc["externalTrafficPolicy"] == "Local"
        assert {p["protocol"] for p in svc["ports"]} == {proto.upper()}
        assert svc["selector"].items() <= pod_labels.items()
    lbs = [d for d in rendered if d["kind"] == "Service" and d["spec"]["type"] == "LoadBalancer"]
    assert len(lbs) == 2


def test_only_the_edge_accepts_traffic_from_outside(rendered: list[Manifest]) -> None:
    for name, policy in kinds(rendered, "NetworkPolicy").items():
        outside = [
            rule
            for rule in policy["spec"]["ingress"]
            if any("ipBlock" in peer for peer in rule.get("from", []))
        ]
        if name == "sipmesh-edge":
            (rule,) = outside
            assert {p["port"] for p in rule["ports"]} >= {"sip-udp", "sip-tcp"}
        else:
            assert outside == []
        # Every service reaches NATS and DNS.
        egress_ports = {
            (p.get("port"), p.get("protocol"))
            for rule in policy["spec"]["egress"]
            for p in rule.get("ports", [])
        }
        assert {(4222, "TCP"), (53, "UDP")} <= egress_ports


# -- optional objects ------------------------------------------------------------


def test_service_monitor_scrapes_every_metrics_service(render: Render) -> None:
    docs = render({"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}})
    monitor = one(docs, "ServiceMonitor", "sipmesh")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Service" and selector.items() <= d["metadata"]["labels"].items()
    ]
    assert sorted(scraped) == sorted(f"sipmesh-{s}" for s in NAMES)
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    # Jobs and the service label as `sipmesh up` writes them, which deploy/grafana selects.
    job_label = monitor["spec"]["jobLabel"]
    jobs = {
        d["metadata"]["labels"][job_label]
        for d in docs
        if d["kind"] == "Service" and d["metadata"]["name"] in scraped
    }
    assert jobs == {f"sipmesh-{s}" for s in NAMES}
    (relabel,) = monitor["spec"]["endpoints"][0]["relabelings"]
    assert relabel["targetLabel"] == "service"
    assert relabel["sourceLabels"] == [
        "__meta_kubernetes_service_label_app_kubernetes_io_component"
    ]
    assert "ServiceMonitor" not in {d["kind"] for d in render({})}


def test_keda_scales_cdr_on_consumer_lag(render: Render) -> None:
    docs = render(
        {
            "cdr": {"store": {"url": "postgresql://db/cdr"}, "keda": {"enabled": True}},
            "nats": {"enabled": True},
        }
    )
    scaled = one(docs, "ScaledObject", "sipmesh-cdr")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["stream"] == "CALLS"
    assert trigger["metadata"]["consumer"] == "cdr"
    endpoint = trigger["metadata"]["natsServerMonitoringEndpoint"]
    assert endpoint == f"sipmesh-nats.{NAMESPACE}.svc:8222"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "sipmesh-cdr"
    # KEDA owns the CDR autoscaler, and the Deployment leaves replicas to it.
    assert "sipmesh-cdr" not in kinds(docs, "HorizontalPodAutoscaler")
    assert "replicas" not in one(docs, "Deployment", "sipmesh-cdr")["spec"]


def test_replicas_without_autoscaling(render: Render) -> None:
    docs = render({"router": {"replicas": 4, "autoscaling": {"enabled": False}}})
    assert one(docs, "Deployment", "sipmesh-router")["spec"]["replicas"] == 4
    assert "sipmesh-router" not in kinds(docs, "HorizontalPodAutoscaler")
    assert "replicas" not in one(docs, "Deployment", "sipmesh-edge")["spec"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cdr": {"replicas": 2}}, "SQLite"),
        (
            {"cdr": {"keda": {"enabled": True}}, "externalNats": {"monitoringEndpoint": "n:8222"}},
            "SQLite",
        ),
        (
            {"cdr": {"store": {"url": "postgresql://db/cdr"}, "keda": {"enabled": True}}},
            "monitoringEndpoint",
        ),
        ({"edge": {"tls": {"enabled": True}}}, "edge.tls.secretName"),
    ],
    ids=["sqlite-replicas", "sqlite-keda", "keda-no-endpoint", "tls-no-secret"],
)
def test_inconsistent_values_fail_the_render(
    render: Render, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError) as exc_info:
        render(values)
    assert message in str(exc_info.value)


# -- schema and lint -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"edge": {"replicas": "three"}}, "/edge/replicas"),
        ({"router": {"replicas": 0}}, "/router/replicas"),
        ({"edge": {"replicass": 3}}, "replicass"),
        ({"unknown": True}, "unknown"),
        ({"httpPort": 80}, "/httpPort"),
        ({"edge": {"sipPort": 70000}}, "/edge/sipPort"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"cdr": {"store": {"url": "mysql://db/cdr"}}}, "/cdr/store/url"),
        ({"externalNats": {"url": "http://nats:4222"}}, "/externalNats/url"),
        ({"externalNats": {"password": "a/b"}}, "/externalNats/password"),
        ({"media": {"rtpengine": ["not an address"]}}, "/media/rtpengine/0"),
        ({"registrar": {"autoscaling": {"targetCPUUtilizationPercentage": 150}}}, "/registrar"),
        ({"edge": {"resources": {"limits": {"cpu": "lots"}}}}, "/edge/resources/limits/cpu"),
        ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else None,
)
def test_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    chart = helm_python.Chart.load(CHART)
    with pytest.raises(helm_python.HelmValuesError) as exc_info:
        chart.validate_schema(values)
    assert where in str(exc_info.value)


def test_schema_accepts_every_value_set(value_sets: dict[str, dict[str, Any]]) -> None:
    chart = helm_python.Chart.load(CHART)
    for values in value_sets.values():
        chart.validate_schema(values)


def test_values_file_has_every_schema_property() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    documented_elsewhere = {"global"}
    assert set(schema["properties"]) - documented_elsewhere == set(values)


MISSING_NATS = "chart directory is missing these dependencies: nats"


def test_lint_of_the_chart_misses_only_the_nats_dependency() -> None:
    # The NATS chart cannot be fetched offline (`helm dependency update` online).
    report = helm_python.lint(CHART, {}, strict=True, kube_version="v1.30.0", namespace="voip")
    assert report["errors"] == [MISSING_NATS]
    assert [m["error"] for m in report["messages"] if m["severity"] >= 2] == [MISSING_NATS]


@pytest.mark.parametrize(
    "values",
    [{}, {"serviceMonitor": {"enabled": True}, "nats": {"enabled": True}}],
    ids=["default", "servicemonitor-nats"],
)
def test_lint_strict_is_clean(values: dict[str, Any], tmp_path: Path) -> None:
    # Everything else, strictly: the chart without its (unfetchable) dependency.
    chart = tmp_path / "sipmesh"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8"))
    del meta["dependencies"]
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta), encoding="utf-8")
    report = helm_python.lint(chart, values, strict=True, kube_version="v1.30.0", namespace="voip")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == []
    assert problems == []
    assert report["total_charts_linted"] == 1
