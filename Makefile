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
lint: ## ruff on everything, mypy on the operator package
	$(BIN)/ruff check operator worker-image tests bench
	$(BIN)/mypy operator/src/lpbyoc

.PHONY: bench
bench: ## Benchmarks (not tests): each prints a table with ratios against its baseline
	@set -e; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b $(BENCH_ARGS); done

.PHONY: bench-quick
bench-quick: ## The benchmarks in their quick mode
	@$(MAKE) --no-print-directory bench BENCH_ARGS=--quick

.PHONY: demo
demo: install ## Install, then show the product locally: render, operator on a local API double, worker on real Triton
	@echo "== 1/3 lpbyoc render: the objects the operator applies for the examples"
	$(BIN)/lpbyoc render -f examples/byoc-image-restyle.yaml | head -n 60
	@echo "== 2/3 lpbyoc demo: the operator against a local Kubernetes API double"
	$(BIN)/lpbyoc demo
	@echo "== 3/3 lpbyoc-worker demo: real tritonserver + adapter, a BYOC job and live frames"
	$(BIN)/lpbyoc-worker demo

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
