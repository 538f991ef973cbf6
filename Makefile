# livepeer-byoc — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help
help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

.PHONY: install
install: $(VENV)/.installed ## Create .venv with both packages (operator, worker + local Triton/torch) and the dev tools

$(VENV)/.installed: $(BIN)/python operator/pyproject.toml worker-image/pyproject.toml requirements-dev.txt
	# torch==2.13.0 first and pinned: it is the CPU build; an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e operator -e 'worker-image[local]' -r requirements-dev.txt torch==2.13.0
	$(BIN)/python -c "import numpy, sys; sys.exit('numpy>=2 breaks Triton python backend outputs' if int(numpy.__version__.split('.')[0]) >= 2 else 0)"
	touch $@

.PHONY: test
test: ## Run every test that runs without a cluster (the kind e2e suite is `make test-e2e`)
	$(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

.PHONY: lint
lint: ## ruff (lint and format check) on all Python, mypy on the operator package
	$(BIN)/ruff check operator worker-image tests bench charts
	$(BIN)/ruff format --check operator worker-image tests bench charts
	$(BIN)/mypy operator/src/lpbyoc

.PHONY: bench
bench: ## Benchmarks (not tests): each prints a table with ratios against its baseline
	@set -e; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b $(BENCH_ARGS); done

.PHONY: bench-gpu
bench-gpu: install ## B9 on an NVIDIA GPU: real sd-turbo and Depth-Anything-V2-Small configs (random weights, fp16), worker vs in-process
	$(BIN)/python bench/bench_runtimes.py --device cuda --sd-profile sd-turbo --depth-profile depth-anything-v2-small --size 512 --iterations 20

.PHONY: bench-quick
bench-quick: ## The benchmarks in their quick mode
	@$(MAKE) --no-print-directory bench BENCH_ARGS=--quick

EXAMPLES := $(wildcard examples/*.yaml)
# DEMO=local forces the no-cluster path; DEMO=kind the cluster path; auto picks kind only
# where a Docker engine answers and kind is installed.
DEMO ?= auto

.PHONY: demo
demo: install ## Install, then show the product: the kind path with Docker + kind, else the local path (no cluster)
	@if [ "$(DEMO)" = kind ] || { [ "$(DEMO)" = auto ] && docker info >/dev/null 2>&1 && command -v kind >/dev/null; }; then \
	  echo "== make demo: Docker engine and kind found, running the cluster path (make kind-demo)"; \
	  $(MAKE) --no-print-directory kind-demo; \
	else \
	  echo "== make demo: no Docker engine or no kind here, running the local path (no cluster needed)"; \
	  $(MAKE) --no-print-directory demo-local; \
	fi

.PHONY: demo-local
demo-local: install ## The local demo: render the examples, the operator on a local API double, the worker on real Triton
	@echo "== 1/3 lpbyoc render: what the operator applies for $(EXAMPLES)"
	@$(BIN)/lpbyoc render $(addprefix -f ,$(EXAMPLES)) > $(VENV)/demo-rendered.yaml
	@grep -E '^kind:|^  name:' $(VENV)/demo-rendered.yaml | paste - - | awk '{printf "   %-22s %s\n", $$2, $$4}'
	@echo "   (full YAML: $(VENV)/demo-rendered.yaml)"
	@echo "== 2/3 lpbyoc demo: the operator against a local Kubernetes API double"
	$(BIN)/lpbyoc demo
	@echo "== 3/3 lpbyoc-worker demo: real tritonserver + adapter, a BYOC job and live frames"
	$(BIN)/lpbyoc-worker demo
	@echo "== make demo: local path done"

.PHONY: run
run: ## Run the operator against the current kubeconfig context (namespace-scoped)
	$(BIN)/lpbyoc run $(RUN_ARGS)

.PHONY: crd
crd: ## Regenerate crds/ from the spec model, and the chart's generated files (RBAC rules, CRD link)
	$(BIN)/lpbyoc crd > crds/livepeer.org_livepeercapabilities.yaml
	$(BIN)/python charts/generate.py

.PHONY: clean
clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

-include mk/kind.mk
