# crmsync — one command per task. Every target installs what it needs first.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test chaos check format bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,sandbox]'
	touch $(STAMP)

install: $(STAMP)

demo: install  ## the workflows against the built-in sandbox; PORT=N, DEMO_ARGS="--workdir D --monday-port N ..."
	$(VENV)/bin/crmsync demo $(if $(PORT),--port $(PORT)) $(DEMO_ARGS)

CHROMIUM := /usr/bin/chromium

$(CHROMIUM):  # the dashboard's browser tests drive Debian's chromium (Playwright's own download is not used)
	apt-get update -qq && apt-get install -y -qq chromium >/dev/null

test: install $(CHROMIUM)  ## the whole test suite (needs the PostgreSQL and MariaDB test servers)
	$(PY) -m pytest --durations=25

chaos: install  ## the chaos suite at full size (10,000 changes; CRMSYNC_CHAOS_SEED=N replays a run); make test runs it smaller
	CRMSYNC_CHAOS_SIZE=full $(PY) -m pytest -s -m chaos tests/chaos

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
