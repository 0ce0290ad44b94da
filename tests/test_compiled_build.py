"""The services' share of the mypyc build (scripts/compile.py): what compiles, all or nothing.

sipmsg's build has its own checks (libs/sipmsg/tests/test_compiled_build.py);
CI runs the edge's, the registrar's and the router's suites on the compiled modules, so
these check only the rules a compiled service module must keep: it exists
(a renamed module must not drop out of the build unnoticed), it is no asyncio
shell, the build is all or nothing across packages, and no Struct that is
decoded lives in a compiled module (mypyc replaces a compiled class's
``__annotations__`` by bare runtime types, ``str | None`` by ``type``, and
msgspec decodes by them).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from pathlib import Path

import msgspec

import sipmsg

ROOT = Path(__file__).resolve().parents[1]


# scripts/compile.py, loaded once by the root conftest (pytest_sessionstart, before
# collection) to refuse stale builds.
compile_script = sys.modules["sipmesh_compile"]
SERVICE_TARGETS = [t for t in compile_script.TARGETS if t.src.startswith("services/")]
# Modules a compiled one must not import: the I/O shells stay Python.
SHELL_IMPORTS = frozenset({"asyncio", "nats", "socket", "logging", "prometheus_client"})


def _module_name(src: Path, source: Path) -> str:
    return ".".join(source.relative_to(src).with_suffix("").parts)


def _imports(source: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_edge_the_registrar_and_the_router_are_targets() -> None:
    packages = {t.package for t in SERVICE_TARGETS}
    assert packages == {"sipmesh_edge", "sipmesh_registrar", "sipmesh_router"}


def test_every_listed_service_module_exists() -> None:
    for target in SERVICE_TARGETS:
        assert target.only, target.package  # a service lists its modules
        pkg = ROOT / target.src / target.package
        compiled = {p.relative_to(pkg).as_posix() for p in compile_script.sources(target)}
        assert compiled == set(target.only), target.package


def test_no_compiled_service_module_is_an_io_shell() -> None:
    for target in SERVICE_TARGETS:
        for source in compile_script.sources(target):
            assert not _imports(source) & SHELL_IMPORTS, source.name


def test_the_build_is_all_or_nothing() -> None:
    for target in compile_script.TARGETS:
        for source in compile_script.sources(target):
            module = importlib.import_module(_module_name(ROOT / target.src, source))
            assert module.__file__ is not None
            # A partial build (a package failed, or one .so missing) mixes the two.
            assert module.__file__.endswith(".so") is sipmsg.COMPILED, module.__name__


_DECODE = re.compile(
    r"(?:Decoder|convert)\(\s*(?:[\w.]+\s*,\s*)?(?:[\w.]+\.)?(\w+)|type=(?:[\w.]+\.)?(\w+)"
)


def _origins(source: Path, module: str) -> dict[str, str]:
    """Where each class name in ``source`` comes from: its own module, or the one it imports."""
    found: dict[str, str] = {}
    package = module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ClassDef):
            found[node.name] = module
        elif isinstance(node, ast.ImportFrom):
            name = "." * node.level + (node.module or "")
            base = importlib.util.resolve_name(name, package) if node.level else name
            for alias in node.names:
                found[alias.asname or alias.name] = base
    return found


def _decoded() -> set[str]:
    """``module.Class`` of everything the services and the bus decode into.

    Found by their sources: ``Decoder(X)``, ``type=X``, ``convert(..., X)``.
    """
    names: set[str] = set()
    for src in [*(ROOT / "services").glob("*/src"), ROOT / "libs/bus/src"]:
        for source in src.rglob("*.py"):
            module = _module_name(src, source)
            origins = _origins(source, module)
            for match in _DECODE.finditer(source.read_text()):
                name = match.group(1) or match.group(2)
                if name in origins:
                    names.add(f"{origins[name]}.{name}")
    return names


def test_no_decoded_struct_is_defined_in_a_compiled_module() -> None:
    decoded = _decoded()
    # The scan finds the router's (kept pure for this reason) and the bus's.
    assert "sipmesh_router.context.RouteContext" in decoded
    assert "sipmesh_bus.routing.Peer" in decoded
    for target in SERVICE_TARGETS:
        for source in compile_script.sources(target):
            module = importlib.import_module(_module_name(ROOT / target.src, source))
            structs = {
                f"{module.__name__}.{name}"
                for name, value in vars(module).items()
                if isinstance(value, type)
                and issubclass(value, msgspec.Struct)
                and value.__module__ == module.__name__
            }
            assert not structs & decoded, module.__name__


def test_the_router_context_decodes_what_it_encodes() -> None:
    # Compiled, its Structs' optional fields would decode as ``type``.
    from sipmesh_bus.schema import Target
    from sipmesh_router.context import Flow, Leg, RouteContext, decode_context, encode_context

    target = Target(uri="sip:b@192.0.2.2", host="192.0.2.2", port=5060, transport="tcp")
    ctx = RouteContext(
        call_id="c1",
        method="INVITE",
        edge_id="edge-1",
        leg=Leg(targets=[target], carrier="acme"),
        media_instance="rtp-1",
        user="alice@example.com",
    )
    assert decode_context(encode_context(ctx)) == ctx
    assert Flow(host="192.0.2.1", port=5060, edge_id="e").target("sip:a@x").edge_id == "e"
