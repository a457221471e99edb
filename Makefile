# One entry point for everything a developer or CI runs.
#   make demo   - the main job: local cluster + driver + the namespace demo
#   make test   - lint, types and every test suite (starts the local cluster when needed)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

# Markers that need the local cluster; everything else is unit/protocol and runs in seconds.
CLUSTER_MARKERS := cluster or integration or e2e or reliability or security or multinode or upgrade

.PHONY: venv lint test test-fast test-cluster test-matrix proto proto-check schema cluster-up cluster-down cluster-logs driver-image demo bench clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $@

# Style, types, then the import layering and the module size limit (tests/unit/test_layering.py).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider tests/unit/test_layering.py
	$(PY) tools/genschema.py --check

## The README's test command: lint, then fast tests, then the real-cluster suites.
test: lint test-fast test-cluster

test-fast: venv
	$(BIN)/pytest -m "not ($(CLUSTER_MARKERS))"

# Starting the cluster here (not inside pytest) keeps a cold build (about 10 minutes)
# out of pytest's per-test timeout.
test-cluster: venv cluster-up
	$(BIN)/pytest -m "$(CLUSTER_MARKERS)"

## Every supported Kubernetes release in turn on a fresh cluster; writes docs/compatibility.md.
## (Not part of `make test`: four builds would not fit CI's hour. RELEASES=1.34,1.37 for some.)
test-matrix: venv
	$(PY) -m localcluster.matrix $(if $(RELEASES),--releases $(RELEASES))

proto: venv
	$(PY) tools/genproto.py

proto-check: venv
	$(PY) tools/genproto.py --check

## values.yaml, values.schema.json, the admission CEL, docs/configuration.md and the README's
## NamespaceConfig example, from src/space_dra/schema.py and schema_values.py.
schema: venv
	$(PY) tools/genschema.py

# SPACE_DRA_K8S_VERSION=1.35 and SPACE_DRA_NODES=3 choose the release and the node count
# (for cluster-up, demo and test alike; see localcluster/README.md).
cluster-up: venv
	$(PY) -m localcluster up

cluster-down: venv
	$(PY) -m localcluster down

cluster-logs: venv
	$(PY) -m localcluster logs

driver-image: venv
	$(PY) -m localcluster driver-image

## The README's main job: local cluster + driver via Helm + the shared-namespace demo.
demo: venv
	PYTHONPATH=. $(PY) demo/run_local.py

## Benchmarks (not pass/fail; docs/performance.md): the plugin round trip (ours and the twin), then
## the cluster phases (bench/cluster.py); JSON, plots and report.md in bench/results.
## EXAMPLE_DRIVER=<binary> adds the upstream example driver's kubelet plugin to the comparison
## (built by hand from its public source, never committed: see docs/performance.md).
bench: venv cluster-up
	$(PY) -m bench.plugin_roundtrip
	$(PY) -m bench.plugin_roundtrip --driver twin
	PYTHONPATH=. $(PY) -m bench.cluster $(if $(EXAMPLE_DRIVER),--example-driver $(EXAMPLE_DRIVER))
	PYTHONPATH=. $(PY) -m bench.report > bench/results/report.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
