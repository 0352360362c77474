# The two commands of the README: `make demo` and `make test` (both set up .venv first).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_AUTH_MODE ?= disabled
export RAY_TRAIN_HEALTH_CHECK_INTERVAL_S ?= 0.1

.PHONY: setup demo test lint clean

$(BIN)/harmonize: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first, so nothing pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/harmonize

# DEMO_FLAGS: options for `harmonize demo` (sizes: --n-per-site, --matrix).
DEMO_FLAGS ?=
demo: setup
	$(BIN)/harmonize demo demo-out $(DEMO_FLAGS)

# Two workers (pytest-xdist) on the two cores CI has; TEST_WORKERS=1 runs the tests one by one.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=20

lint: setup
	$(BIN)/ruff check harmonize tests jobs
	$(BIN)/ruff format --check harmonize tests jobs
	$(BIN)/mypy harmonize

clean:
	rm -rf demo-out .pytest_cache
