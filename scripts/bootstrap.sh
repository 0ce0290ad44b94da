#!/usr/bin/env bash
# Installs what sipmesh needs on a brand-new Debian machine, idempotently.
#   scripts/bootstrap.sh          runtime only (the platform and its embedded NATS)
#   scripts/bootstrap.sh --dev    also what the whole test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

# Debian packages: the real peers the tests drive (SIPp, baresip), RTPEngine
# for media anchoring and PostgreSQL for the CDR store. Installed only when
# missing, and only where we are root with apt (a developer's laptop may
# bring its own).
apt_packages=()
# RTPEngine anchors media for `sipmesh up` too (openssl makes its TLS pair).
command -v rtpengine >/dev/null 2>&1 || apt_packages+=(rtpengine-daemon)
command -v openssl >/dev/null 2>&1 || apt_packages+=(openssl)
if (( dev )); then
    command -v sipp >/dev/null 2>&1 || apt_packages+=(sip-tester)
    command -v baresip >/dev/null 2>&1 || apt_packages+=(baresip)
    # The CDR store's tests run a real PostgreSQL (initdb into a temp folder).
    [[ -x /usr/lib/postgresql/15/bin/initdb ]] || apt_packages+=(postgresql-15)
    # The dashboards are checked against a real Prometheus scraping sipmesh.
    command -v prometheus >/dev/null 2>&1 || apt_packages+=(prometheus)
fi
if (( ${#apt_packages[@]} )); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: apt-get install ${apt_packages[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
    elif (( dev )); then
        echo "bootstrap: missing Debian packages (install them as root): ${apt_packages[*]}" >&2
        exit 1
    else
        # The platform runs without them (no media anchoring, no TLS pair).
        echo "bootstrap: not installing ${apt_packages[*]} (needs root with apt-get)" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if (( dev )); then
    .venv/bin/python -m pip install -q -e '.[dev]'
else
    .venv/bin/python -m pip install -q -e .
fi
# sipmsg runs compiled by mypyc (scripts/compile.py, `make compile`): the
# compiler is mypy's, pinned as in the dev extra; SIPMESH_PURE=1 keeps the
# pure-Python modules. Without a compiler it says so and runs pure Python.
if [[ -z "${SIPMESH_PURE:-}" ]] && ! .venv/bin/python -c "import mypyc, setuptools" 2>/dev/null; then
    mypy_pin=$(grep -o '"mypy==[^"]*"' pyproject.toml | tr -d '"' | sed 's/^mypy/mypy[mypyc]/' || true)
    .venv/bin/python -m pip install -q "${mypy_pin:-mypy[mypyc]}" \
        || echo "bootstrap: could not install mypyc (pip install mypy)" >&2
fi
.venv/bin/python scripts/compile.py
if (( dev )); then
    # checkov (policy lint of the rendered chart) pins many packages of its own:
    # it lives in a venv beside ours, where `make clean` removes it too.
    if [[ ! -x .venv/checkov/bin/checkov ]]; then
        "$PYTHON" -m venv .venv/checkov
        .venv/checkov/bin/python -m pip install -q "checkov==3.3.30"
    fi
fi
