# The two commands of the README: `make demo` and `make test`. Both build .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint audit bench chaos soak clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fulfil demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check fulfil suppliers tests chaos benchmarks
	$(BIN)/mypy

# Dependencies against known vulnerabilities (pip-audit): fails only on one with a fix available.
audit: $(STAMP)
	$(BIN)/python .ci/pip_audit.py

# The proving ground (not part of `make test`): PRESET=sqlite|pg|net, SEED=N; ARGS for more
# (e.g. ARGS="--orders 500 --kills 10"). One line of figures at the end; non-zero when an invariant broke.
PRESET ?= sqlite
SEED ?= 1
chaos: $(STAMP)
	$(BIN)/python -m chaos --preset $(PRESET) --seed $(SEED) $(ARGS)

# Resource bounds (not part of `make test`): a steady load at half capacity for MINUTES (30 by default) on
# DB=sqlite|pg; RSS, file descriptors, database connections and the backlog sampled; exit 1 when one grows.
MINUTES ?= 30
DB ?= sqlite
soak: $(STAMP)
	$(BIN)/python -m chaos.soak --minutes $(MINUTES) --db $(DB) $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
