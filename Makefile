PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test bench lint format install dev clean migration-regen

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

## make run: install, migrate, load the demo shop once, serve on http://127.0.0.1:8000
run: $(VENV)/.installed
	$(BIN)/shop-assist migrate
	$(BIN)/shop-assist demo --host $(HOST) --port $(PORT)

## make test: install dev dependencies and run the whole suite
test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make bench: run the benchmarks and write tests/perf/results.md
bench: $(VENV)/.dev-installed
	$(BIN)/python -m tests.perf.run_all

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache

## make migration-regen: rebuild the initial migration from server/models.py (pre-release only)
migration-regen: $(VENV)/.dev-installed
	rm -f migrations/versions/0001_initial_schema.py /tmp/shop-assist-regen.db
	$(BIN)/python -c "from alembic import command; from server.migrate import alembic_config; command.revision(alembic_config('sqlite:////tmp/shop-assist-regen.db'), message='initial schema', autogenerate=True, rev_id='0001')"
	$(BIN)/ruff format migrations/versions >/dev/null
