# Two commands matter: `make test` and `make demo`. Both bootstrap .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rebuilt only when a pyproject changes (or .venv is missing), so repeat runs cost nothing.
STAMP := $(VENV)/.bootstrap-stamp
EXAMPLE_PLUGIN_PYPROJECTS := $(wildcard examples/plugins/*/pyproject.toml)
EXAMPLE_PLUGINS := $(patsubst %/pyproject.toml,%,$(EXAMPLE_PLUGIN_PYPROJECTS))
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: venv test test-fast demo bench lint clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml $(EXAMPLE_PLUGIN_PYPROJECTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	set -e; for plugin in $(EXAMPLE_PLUGINS); do \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check -e "$$plugin"; \
	done
	touch $(STAMP)

## Everything CI runs.
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## The quick loop: skips tests marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

## A director and 3 workers as processes, load through a ClusterClient, one worker SIGKILLed and restarted.
demo: $(STAMP)
	$(BIN)/rpcnet demo

bench: $(STAMP)
	$(BIN)/python benchmarks/rpc_bench.py $(BENCH_ARGS)

## Style (ruff) and the layer contracts in pyproject.toml (import-linter).
lint: $(STAMP)
	$(BIN)/ruff check rpcnet plugins tests examples benchmarks
	$(BIN)/lint-imports

clean-venv:
	rm -rf $(VENV)
