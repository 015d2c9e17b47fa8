# The two-command start: `make run` and `make test`. Everything they need is set up here.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Tests run in parallel, one worker per core.
WORKERS ?= auto

.PHONY: run test bench lint format migrate venv dev-venv system-deps test-deps clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

venv: $(VENV)/.installed
dev-venv: $(VENV)/.installed-dev

system-deps: venv
	@sh .ci/system-deps.sh

test-deps: dev-venv
	@sh .ci/system-deps.sh test
	@sh .ci/pg-up.sh

migrate: system-deps
	$(BIN)/accord migrate

# Migrate, create the demo logins and partners on the first start only, then serve; `accord serve`
# first prints where to log in and the demo logins.
run:
	@echo "Crisis Accord: setting up (the first run installs packages and takes a few minutes)..."
	@$(MAKE) -s --no-print-directory system-deps
	@$(BIN)/accord migrate >/dev/null
	@$(BIN)/accord demo-data --if-empty >/dev/null
	@$(BIN)/accord serve --host $(HOST) --port $(PORT)

test: system-deps test-deps
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: system-deps test-deps
	$(BIN)/python bench/run.py

lint: dev-venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: dev-venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
