# sipmesh: the two commands of the README, and the checks CI runs.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test check lint typecheck unit compile bench-parse k8s-manifests clean

## Install and run the whole platform on this machine with an embedded NATS server.
run:
	scripts/bootstrap.sh
	$(VENV)/bin/sipmesh up $(ARGS)

## Install everything the tests need and run the whole suite (what CI runs).
test:
	scripts/bootstrap.sh --dev
	$(MAKE) -k check

check: lint typecheck unit

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

unit: compile
	$(PY) -bb -m pytest

## Compile sipmsg and the edge's, registrar's and router's pure modules with mypyc, in place, when a source changed (scripts/compile.py);
## SIPMESH_PURE=1 removes the compiled modules instead. bootstrap.sh runs it too.
compile:
	$(PY) scripts/compile.py

bench-parse:
	$(PY) bench/parse/run.py

## Render the Helm chart to deploy/k8s/rendered/ for plain kubectl.
k8s-manifests:
	$(PY) deploy/k8s/render.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
