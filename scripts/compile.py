"""Compile sipmesh's pure modules with mypyc, in place, or fall back to pure Python.

    scripts/compile.py            build when a listed .py changed (``make compile``)
    scripts/compile.py --check    exit 1 when a compiled module is stale
    scripts/compile.py --require  fail (exit 1) instead of falling back (the image)
    SIPMESH_PURE=1 scripts/compile.py    remove the compiled modules and stop

Each listed package (or only its listed modules: the services keep their
asyncio shells pure) is compiled into C extensions written beside its ``.py``
files (``uri.cpython-311-x86_64-linux-gnu.so`` next to ``uri.py``); the import
system prefers the extension, so an editable install runs the compiled code and
the services need nothing else. The C sources and object files go under
``build/mypyc`` (gitignored, as are the ``.so`` files). A stamp there records
the SHA-256 of every compiled ``.py``: nothing is rebuilt while they match, and
the test session (the root conftest) refuses to run on a ``.so`` older than its
source. Without mypyc or a C compiler, or when the compile fails, one line says
so and the pure-Python modules are used.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A package compiled as one mypyc group (one shared library plus a shim per module)."""

    src: str
    """The source root on sys.path, relative to the repository."""
    package: str
    """The package's import name; every module in it is compiled but ``__init__``."""
    exclude: tuple[str, ...] = ()
    """Modules (relative paths) kept pure."""
    only: tuple[str, ...] = ()
    """When set, the only modules (relative paths) compiled; the others stay pure.

    For the services: their asyncio shells stay Python, and a module added
    later is not compiled until someone lists it (and runs its tests compiled).
    """


#: The one list of what is compiled. A package added here must be mypy-strict
#: clean, keep value types built with ``object.__new__`` as Python classes
#: (see ``sipmsg._native.python_class``) and pass its tests compiled.
TARGETS: Final = (
    # _errors stays pure: a compiled class cannot be subclassed by interpreted
    # code, and callers may derive their own errors from ParseError.
    Target(src="libs/sipmsg/src", package="sipmsg", exclude=("_errors.py",)),
    # The NATS wire client's frame parser (every bus message of every service
    # goes through Parser.feed); the client itself is an asyncio shell.
    Target(src="libs/bus/src", package="sipmesh_bus", only=("_wireproto.py",)),
    # The services' pure hot paths; the asyncio shells (app, outbox, prober,
    # __main__; the edge's udp, streams, tls, bus, guard, connecting) and the
    # metrics stay Python. So do modules whose msgspec Structs are decoded
    # (router context: the dialog token, the context, the dialog record; the
    # edge's protection config): mypyc rewrites a compiled class's
    # ``__annotations__`` to bare runtime types (``str | None`` becomes
    # ``type``), which msgspec reads as the schema. Structs only built and
    # encoded are fine compiled.
    Target(
        src="services/registrar/src",
        package="sipmesh_registrar",
        only=("auth.py", "bindings.py", "core.py", "fastpath.py", "model.py", "replay.py"),
    ),
    Target(
        src="services/edge/src",
        package="sipmesh_edge",
        only=(
            "ackroute.py",
            "branch.py",
            "challenge.py",
            "core.py",
            "flow.py",
            "forking.py",
            "invite_server.py",
            "outbound.py",
            "proxy.py",
            "sink.py",
            "stamp.py",
            "transaction.py",
            "wheel.py",
        ),
    ),
    Target(
        src="services/router/src",
        package="sipmesh_router",
        only=(
            "ackroute.py",
            "active.py",
            "auth.py",
            "caps.py",
            "core.py",
            "dispatcher.py",
            "events.py",
            "hops.py",
            "lcr.py",
            "media.py",
            "model.py",
            "proxy.py",
            "responses.py",
            "routes.py",
        ),
    ),
)

BUILD_DIR: Final = ROOT / "build" / "mypyc"
STAMP: Final = BUILD_DIR / "stamp.json"
EXT_SUFFIX: Final = str(sysconfig.get_config_var("EXT_SUFFIX"))
OPT_LEVEL: Final = os.environ.get("MYPYC_OPT_LEVEL", "2")


def sources(target: Target) -> list[Path]:
    """The ``.py`` files of ``target`` that are compiled, sorted."""
    pkg = ROOT / target.src / target.package.replace(".", "/")
    return sorted(
        p
        for p in pkg.rglob("*.py")
        if p.name != "__init__.py"
        and p.relative_to(pkg).as_posix() not in target.exclude
        and (not target.only or p.relative_to(pkg).as_posix() in target.only)
        and "__pycache__" not in p.parts
    )


def all_sources() -> list[Path]:
    return [p for t in TARGETS for p in sources(t)]


def extension_of(source: Path) -> Path:
    return source.with_name(source.stem + EXT_SUFFIX)


def group_name(target: Target) -> str:
    """The mypyc group's name: its shared library is ``<name>__mypyc`` at the source root.

    At the root, not in the package: each compiled module sets its ``__file__``
    from the library's folder, as if that were the root.
    """
    return target.package.replace(".", "_") + "_compiled"


def built_files() -> list[Path]:
    """Every extension module the build wrote (the shims and the group's library)."""
    found: list[Path] = []
    for t in TARGETS:
        pkg = ROOT / t.src / t.package.replace(".", "/")
        found.extend(sorted(pkg.rglob("*" + EXT_SUFFIX)))
        found.extend(sorted((ROOT / t.src).glob(f"{group_name(t)}__mypyc*{EXT_SUFFIX}")))
    return found


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fingerprint() -> dict[str, str]:
    """What the current build must have been made from: each source's hash and the tools."""
    import mypy.version  # noqa: PLC0415  (absent in a runtime-only venv)

    fp = {p.relative_to(ROOT).as_posix(): _digest(p) for p in all_sources()}
    fp["mypyc"] = mypy.version.__version__
    fp["python"] = sys.version
    fp["opt_level"] = OPT_LEVEL
    return fp


def stale() -> list[str]:
    """The compiled modules whose ``.py`` changed or went since they were built.

    Only modules that have a ``.so`` count: a pure tree is never stale. An
    extension whose ``.py`` was deleted counts too (Python would import it).
    """
    compiled = [p for p in all_sources() if extension_of(p).exists()]
    orphans = [
        so.relative_to(ROOT).as_posix()
        for so in built_files()
        if not so.name.endswith("__mypyc" + EXT_SUFFIX)
        and not so.with_name(so.name.removesuffix(EXT_SUFFIX) + ".py").exists()
    ]
    if not compiled:
        return orphans
    try:
        recorded: dict[str, str] = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        recorded = {}
    return orphans + [
        p.relative_to(ROOT).as_posix()
        for p in compiled
        if recorded.get(p.relative_to(ROOT).as_posix()) != _digest(p)
    ]


def remove_built() -> int:
    files = built_files()
    for f in files:
        f.unlink()
    STAMP.unlink(missing_ok=True)
    return len(files)


def _up_to_date() -> bool:
    if stale() or not all(extension_of(p).exists() for p in all_sources()):
        return False
    try:
        return bool(json.loads(STAMP.read_text()) == _fingerprint())
    except (OSError, ValueError):
        return False


def build(jobs: int) -> None:
    """Run mypyc and the C compiler; raises on any failure."""
    from mypyc.build import mypycify  # noqa: PLC0415

    setup = importlib.import_module("setuptools").setup  # no stubs: untyped

    paths = [p.relative_to(ROOT).as_posix() for p in all_sources()]
    for t in TARGETS:
        os.chdir(ROOT)
        extensions = mypycify(
            ["--config-file", "pyproject.toml", *paths],
            only_compile_paths=[p.relative_to(ROOT).as_posix() for p in sources(t)],
            opt_level=OPT_LEVEL,
            multi_file=True,
            target_dir=str(BUILD_DIR / t.package),
            group_name=group_name(t),
        )
        # setuptools reads a pyproject.toml in the working directory (and
        # refuses the project's): run it from the build folder, on absolute
        # paths. The group's library goes to the source root ("").
        os.chdir(BUILD_DIR)
        setup(
            name="sipmesh-compiled",
            ext_modules=extensions,
            package_dir={"": str(ROOT / t.src)},
            script_args=[
                "--quiet",
                "build_ext",
                "--inplace",
                "--build-temp",
                str(BUILD_DIR / "temp"),
                "--parallel",
                str(jobs),
            ],
        )


def _run_build(jobs: int) -> tuple[bool, str]:
    """Build in a child process, its output in ``build/mypyc/build.log``: (ok, last line)."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    log = BUILD_DIR / "build.log"
    with log.open("wb") as out:
        proc = subprocess.run(  # noqa: S603  (our own interpreter and script)
            [sys.executable, __file__, "--build-only", "-j", str(jobs)],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode == 0:
        return True, ""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "error" in ln.lower()]
    return False, (lines[0].strip() if lines else f"exit status {proc.returncode}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a .so is stale")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--require", action="store_true", help="exit 1 when it cannot compile")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.build_only:
        build(args.jobs)
        return 0
    if args.check:
        bad = stale()
        if bad:
            print(f"compile: stale compiled modules ({', '.join(bad)}): run make compile")
            return 1
        return 0
    if os.environ.get("SIPMESH_PURE"):
        removed = remove_built()
        print(f"compile: SIPMESH_PURE is set: pure Python ({removed} compiled files removed)")
        return 0
    if importlib.util.find_spec("mypyc") is None:
        removed = remove_built()
        print("compile: mypyc is not installed (pip install mypy): running pure Python")
        return 1 if args.require else 0
    if not args.force and _up_to_date():
        return 0
    started = time.perf_counter()
    remove_built()
    ok, reason = _run_build(args.jobs)
    if not ok:
        remove_built()
        print(
            f"compile: mypyc build failed, running pure Python ({reason}; "
            "see build/mypyc/build.log)"
        )
        return 1 if args.require else 0
    STAMP.write_text(json.dumps(_fingerprint(), indent=1, sort_keys=True))
    print(
        f"compile: mypyc built {len(all_sources())} modules in "
        f"{time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
