PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
S3_VENV := .venv-s3
S3_STAMP := $(S3_VENV)/.installed

.PHONY: run test lint bench clean object-stores

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

test: lint object-stores
	$(BIN)/pytest $(PYTEST_ARGS)

# Local S3-compatible servers for the storage tests (docs/storage.md). A failed install does not
# stop `make test`: those tests then skip with one line, or fail under STK_REQUIRE_SERVICES=1.
object-stores:
	@$(MAKE) --no-print-directory $(S3_STAMP) || echo "object stores not installed: storage tests will skip"

$(S3_STAMP): tests/objectstore/requirements.txt
	test -x $(S3_VENV)/bin/python || $(PY) -m venv $(S3_VENV)
	$(S3_VENV)/bin/pip install -q -r tests/objectstore/requirements.txt
	touch $(S3_STAMP)

# Benchmark of issue 4 (bench/RESULTS.md): `make bench` < 10 min, `make bench QUICK=1` < 2 min.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) $(S3_VENV) .stk-bridge .pytest_cache .mypy_cache .ruff_cache .hypothesis
