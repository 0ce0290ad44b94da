"""The Dockerfile and the compose file match the project and the services table.

No docker engine here: the files are parsed and checked against pyproject.toml and
src/sipmesh/services.py, so a new service or package shows up as a failure.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

from sipmesh.services import SERVICES, UpOptions
from sipmesh_bus.config import load_config
from sipmesh_edge.app import EdgeConfig

from .conftest import ROOT

COMPOSE_DIR = ROOT / "deploy" / "compose"
#: `sipmesh up` runs a local rtpengine beside the media service; the image has none, so
#: compose (like the chart) points the service at RTPEngine instances instead.
COMPOSE_REPLACES = {
    "media": {
        "SIPMESH_MEDIA_LOCAL_RTPENGINE",
        "SIPMESH_MEDIA_DATA_DIR",
        "SIPMESH_MEDIA_LOCAL_INTERFACE",
    }
}
COMPOSE_ADDS = {"media": {"SIPMESH_MEDIA_INSTANCES"}}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_image_is_python_311_slim_and_non_root() -> None:
    steps = dockerfile_instructions()
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for w, a in steps if w == "ARG" and "=" in a}
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    froms = [a for w, a in steps if w == "FROM"]
    assert froms[-1] == "${PYTHON_IMAGE}"
    users = [a for w, a in steps if w == "USER"]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) >= 10000
    entry = [a for w, a in steps if w == "ENTRYPOINT"]
    assert json.loads(entry[-1]) == ["python", "-m"]
    cmd = json.loads([a for w, a in steps if w == "CMD"][-1])
    assert cmd[0] in {s.module for s in SERVICES}


def test_image_installs_the_project_not_editable() -> None:
    runs = [a for w, a in dockerfile_instructions() if w == "RUN"]
    installs = [shlex.split(r) for r in runs if "pip install" in r]
    assert installs
    assert all("-e" not in cmd and "--editable" not in cmd for cmd in installs)
    assert any("sipmesh" in cmd for cmd in installs)


def test_image_copies_every_package_of_the_wheel() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    copied = [a.split()[0] for w, a in dockerfile_instructions() if w == "COPY" and "--" not in a]
    assert "pyproject.toml" in copied
    for package in packages:
        assert any(package.startswith(src.rstrip("/") + "/") for src in copied), package
        assert dockerignore_allows(package + "/__init__.py"), package
    assert dockerignore_allows(pyproject["project"]["readme"])
    assert not dockerignore_allows(".venv/bin/python")
    assert not dockerignore_allows("libs/sipmsg/tests/test_message.py")


def test_every_copied_context_path_reaches_the_build_context() -> None:
    """A COPY of something .dockerignore leaves out fails only at build time (none here)."""
    sources = []
    for word, args in dockerfile_instructions():
        if word == "COPY" and not args.startswith("--"):
            sources += args.split()[:-1]
    assert "scripts/compile.py" in sources
    for src in sources:
        probe = src.rstrip("/") + "/__init__.py" if src.endswith("/") else src
        assert dockerignore_allows(probe), src
    assert not dockerignore_allows("libs/sipmsg/src/sipmsg/uri.cpython-311-x86_64-linux-gnu.so")


def dockerignore_allows(path: str) -> bool:
    """Whether ``path`` reaches the build context (last matching rule wins)."""
    allowed = True
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/").removeprefix("**/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        anywhere = rule.lstrip("!").startswith("**/")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes) or (
            anywhere and any(fnmatch.fnmatchcase(n, pattern) for n in parts)
        ):
            allowed = negate
    return allowed


# -- compose ---------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_nats_with_jetstream() -> None:
    nats = compose()["services"]["nats"]
    assert "-js" in nats["command"]
    assert nats["image"].startswith("nats:2.1")
    assert int(nats["image"].split(":")[1].split(".")[1].split("-")[0]) >= 11  # per-key TTL


def test_compose_has_each_service_of_the_table() -> None:
    services = compose()["services"]
    assert set(services) == {"nats"} | {s.name for s in SERVICES}
    for spec in SERVICES:
        svc = services[spec.name]
        assert svc["command"] == [spec.module]
        assert svc["image"] == "${SIPMESH_IMAGE:-sipmesh:dev}"
        assert svc["read_only"] is True
        assert svc["depends_on"]["nats"] == {"condition": "service_healthy"}
        env = svc["environment"]
        assert env["SIPMESH_NATS_URL"] == "nats://nats:4222"
        assert env["SIPMESH_HTTP_HOST"] == "0.0.0.0"
        opts = UpOptions(
            sip_host="0.0.0.0",
            sip_port=5060,
            domain="d",
            data_dir=Path("/data"),
            nats_url="nats://nats:4222",
        )
        # What `sipmesh up` gives the service, compose gives it too, but for the
        # settings compose replaces on purpose.
        assert set(spec.env(opts)) - set(env) == COMPOSE_REPLACES.get(spec.name, set())
        assert env.keys() >= COMPOSE_ADDS.get(spec.name, set())


def test_compose_edge_config_matches_up(tmp_path: Path) -> None:
    edge = compose()["services"]["edge"]
    mounted = {
        target: COMPOSE_DIR / source
        for source, target, *_ in (v.split(":") for v in edge["volumes"])
    }
    config_path = mounted[edge["environment"]["SIPMESH_CONFIG"]]
    env = {"SIPMESH_ADVERTISED_HOSTS": "192.0.2.1,example.com"}
    config = load_config(EdgeConfig, path=config_path, env=env)
    spec = next(s for s in SERVICES if s.name == "edge")
    up = spec.config(
        UpOptions(
            sip_host="0.0.0.0",
            sip_port=5060,
            domain="example.com",
            data_dir=tmp_path,
            nats_url="nats://nats:4222",
        ),
        0,
    )
    assert config.udp == up["udp"]
    assert config.streams == up["streams"]
    assert config.advertised_hosts == ["192.0.2.1", "example.com"]
    published = {p.rsplit(":", 1)[-1] for p in edge["ports"]}
    assert {"5060/udp", "5060/tcp"} <= published


def test_compose_names_only_declared_volumes() -> None:
    doc = compose()
    declared = set(doc["volumes"])
    for svc in doc["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared
