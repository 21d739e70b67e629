# crmsync — one command per task. Every target installs what it needs first.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test check format bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,sandbox]'
	touch $(STAMP)

install: $(STAMP)

demo: install  ## the workflows against the built-in sandbox; PORT=N, DEMO_ARGS="--workdir D --monday-port N ..."
	$(VENV)/bin/crmsync demo $(if $(PORT),--port $(PORT)) $(DEMO_ARGS)

test: install  ## the whole test suite (needs the PostgreSQL and MariaDB test servers)
	$(PY) -m pytest

check: install  ## format check, lint, types, layers (import-linter: [tool.importlinter] in pyproject.toml)
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: install  ## benchmarks; figures written to bench/results.json
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null 2>&1 \
		|| echo "wrk is not available: the Python load generator is used (a lower ceiling)"
	$(PY) -m bench
	$(PY) -m bench.report

clean:
	rm -rf $(VENV) .crmsync-sandbox .pytest_cache .mypy_cache .ruff_cache
