PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/stk-bridge dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy tenancy bridge

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# Benchmark of issue 4 (bench/RESULTS.md): `make bench` < 10 min, `make bench QUICK=1` < 2 min.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .stk-bridge .pytest_cache .mypy_cache .ruff_cache
