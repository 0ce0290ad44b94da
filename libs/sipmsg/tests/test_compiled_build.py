"""The mypyc build (scripts/compile.py): all or nothing, never stale, same results as pure Python.

CI runs the whole suite on the compiled modules (``make test`` compiles
first), so every other test checks the compiled build; these check the build
itself: ``sipmsg.COMPILED`` tells the truth, the stale-build guard sees an
edited source, and the compiled parser reads the torture and example vectors
exactly as the pure-Python one does (compared across two processes).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sipmsg

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = Path(sipmsg.__file__).resolve().parent
VECTORS = Path(__file__).parent / "vectors"
BENCH_MESSAGES = ROOT / "bench" / "parse" / "messages"


# scripts/compile.py, loaded once by the root conftest (pytest_sessionstart, before
# collection) to refuse stale builds.
compile_script = sys.modules["sipmesh_compile"]


def _sipmsg_sources() -> list[Path]:
    return [p for p in compile_script.all_sources() if PACKAGE in p.parents]


def test_compiled_flag_matches_every_listed_module() -> None:
    sources = _sipmsg_sources()
    assert len(sources) >= 20  # every module of the package but __init__
    for source in sources:
        rel = source.relative_to(PACKAGE.parent).with_suffix("")
        module = importlib.import_module(".".join(rel.parts))
        # A partial build (some .so missing or failed) would mix the two.
        assert module.__file__ is not None
        assert module.__file__.endswith(".so") is sipmsg.COMPILED, module.__name__


def test_stale_sees_an_edited_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = _sipmsg_sources()
    stamp = tmp_path / "stamp.json"
    # Every target's sources (the services' listed modules too), so that
    # only the edited one can be stale.
    recorded = {
        p.relative_to(compile_script.ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in compile_script.all_sources()
    }
    edited = sources[0].relative_to(compile_script.ROOT).as_posix()
    monkeypatch.setattr(compile_script, "STAMP", stamp)
    # Pretend every module has its extension beside it.
    monkeypatch.setattr(compile_script, "extension_of", lambda p: p)
    stamp.write_text(json.dumps(recorded))
    assert compile_script.stale() == []
    recorded[edited] = "0" * 64
    stamp.write_text(json.dumps(recorded))
    assert compile_script.stale() == [edited]
    stamp.unlink()
    assert len(compile_script.stale()) == len(compile_script.all_sources())


def test_stale_is_empty_for_a_pure_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(compile_script, "extension_of", lambda p: tmp_path / "missing.so")
    monkeypatch.setattr(compile_script, "STAMP", tmp_path / "no-stamp.json")
    assert compile_script.stale() == []


# Run in a child process against the pure or the compiled modules: for every
# vector, what parse, peek and each typed accessor give (repr) or raise.
_REPORT = r"""
import sys
from pathlib import Path
import sipmsg

ACCESSORS = (
    "via", "top_via", "call_id", "cseq", "from_", "to", "contact", "route",
    "record_route", "path", "max_forwards", "expires", "content_length",
    "content_type", "allow", "supported", "require", "proxy_require",
    "unsupported", "www_authenticate", "proxy_authenticate", "authorization",
    "proxy_authorization", "user_agent", "via_branch", "from_tag", "to_tag",
)


def attempt(fn):
    try:
        return repr(fn())
    except sipmsg.SipError as exc:
        return f"{type(exc).__name__}: {exc}"


def report(data):
    out = [attempt(lambda: sipmsg.peek(data))]
    try:
        msg = sipmsg.parse(data)
    except sipmsg.ParseError as exc:
        return [*out, f"ParseError {exc.status_hint}: {exc}"]
    out.append(repr(msg))
    out.append(repr(bytes(msg)))
    if isinstance(msg, sipmsg.Request):
        out.append(attempt(lambda: msg.request_uri))
        out.append(attempt(lambda: sipmsg.validate_request(msg)))
    else:
        out.append(attempt(lambda: sipmsg.validate_response(msg)))
    for name in ACCESSORS:
        out.append(f"{name}={attempt(lambda: getattr(msg, name))}")
    return out


print("compiled:", sipmsg.COMPILED)
for path in sys.argv[1:]:
    print(path, report(Path(path).read_bytes()))
"""


def _vector_paths() -> list[str]:
    paths = sorted(VECTORS.rglob("*.dat")) + sorted(VECTORS.rglob("*.sip"))
    paths += sorted(BENCH_MESSAGES.glob("*.sip"))
    return [str(p) for p in paths]


@pytest.mark.skipif(not sipmsg.COMPILED, reason="pure-Python build: nothing to compare")
def test_compiled_and_pure_read_every_vector_alike(tmp_path: Path) -> None:
    # The pure modules: the .py files alone, in a folder put first on the path.
    shutil.copytree(PACKAGE, tmp_path / "sipmsg", ignore=shutil.ignore_patterns("*.so"))
    paths = _vector_paths()
    assert len(paths) > 70

    def run(pythonpath: Path) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-bb", "-c", _REPORT, *paths],
            capture_output=True,
            check=True,
            env={"PYTHONPATH": str(pythonpath), "PATH": ""},
        )
        return proc.stdout.decode().splitlines()

    pure = run(tmp_path)
    compiled = run(PACKAGE.parent)
    assert pure[0] == "compiled: False"
    assert compiled[0] == "compiled: True"
    assert len(pure) == len(paths) + 1
    assert compiled[1:] == pure[1:]


def test_stale_sees_an_extension_whose_source_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = compile_script.EXT_SUFFIX
    pkg = tmp_path / "libs/sipmsg/src/sipmsg"
    pkg.mkdir(parents=True)
    (pkg / "kept.py").write_text("")
    for name in ("kept", "gone"):
        (pkg / (name + suffix)).write_bytes(b"")
    (pkg.parent / ("sipmsg_compiled__mypyc" + suffix)).write_bytes(b"")  # the group's library
    monkeypatch.setattr(compile_script, "ROOT", tmp_path)
    monkeypatch.setattr(compile_script, "STAMP", tmp_path / "stamp.json")
    assert compile_script.stale() == [
        f"libs/sipmsg/src/sipmsg/gone{suffix}",
        "libs/sipmsg/src/sipmsg/kept.py",
    ]
