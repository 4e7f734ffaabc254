# recomatrix: `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: help install demo test lint bench clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv and install recomatrix with its dev tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned to 2.13.0 in pyproject (a CPU build); any other spec pulls CUDA wheels
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

demo: install ## build the synthetic world, train, index and serve it on http://127.0.0.1:8000/
	$(VENV)/bin/recomatrix demo

lint: install ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

test: lint ## lint, type-check, then every test (unit, integration, end-to-end)
	$(PY) -m pytest

bench: install ## the performance suite at 1M items x 1M users (~20 min; writes bench/results/)
	$(VENV)/bin/recomatrix bench --output bench/results/bench-1000000.json --plot docs/img/scaling.png

clean: ## remove the venv, caches and the local model registry
	rm -rf $(VENV) .recomatrix .pytest_cache .mypy_cache .ruff_cache
