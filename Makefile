PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
S3_VENV := .venv-s3
S3_STAMP := $(S3_VENV)/.installed
TS_DIR := tests/typescript
TS_STAMP := $(TS_DIR)/node_modules/.installed

.PHONY: run test lint bench bench-tools bench-poolers clean object-stores typescript poolers browser

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

test: lint object-stores typescript poolers browser
	$(BIN)/pytest $(PYTEST_ARGS)

# Debian's headless Chromium for tests/browser/ (docs/browser.md), driven by Playwright from the
# test extra; never a downloaded browser build. A failed install does not stop `make test`: the
# browser tests then skip with one line, or fail under STK_REQUIRE_SERVICES=1.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; } || \
		echo "chromium not installed: browser tests will skip"

# Local S3-compatible servers for the storage tests (docs/storage.md). A failed install does not
# stop `make test`: those tests then skip with one line, or fail under STK_REQUIRE_SERVICES=1.
object-stores:
	@$(MAKE) --no-print-directory $(S3_STAMP) || echo "object stores not installed: storage tests will skip"

$(S3_STAMP): tests/objectstore/requirements.txt
	test -x $(S3_VENV)/bin/python || $(PY) -m venv $(S3_VENV)
	$(S3_VENV)/bin/pip install -q -r tests/objectstore/requirements.txt
	touch $(S3_STAMP)

# The TypeScript compiler that checks `stk-bridge types` output (docs/guide.md), from the npm
# registry into a git-ignored folder. Without npm that test skips with one line, or fails under
# STK_REQUIRE_SERVICES=1.
typescript:
	@$(MAKE) --no-print-directory $(TS_STAMP) || echo "typescript not installed: the TypeScript types test will skip"

$(TS_STAMP): $(TS_DIR)/package.json $(TS_DIR)/package-lock.json
	npm ci --prefix $(TS_DIR) --no-audit --no-fund --loglevel=error
	touch $(TS_STAMP)

# Debian's PgBouncer for the pooler tests and `make bench-poolers` (docs/poolers.md). A failed
# install does not stop `make test`: those tests then skip with one line, or fail under
# STK_REQUIRE_SERVICES=1.
poolers:
	@test -x /usr/sbin/pgbouncer || DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null \
		|| echo "pgbouncer not installed: pooler tests will skip"

# Benchmark of issue 4 (bench/RESULTS.md): `make bench` < 10 min, `make bench QUICK=1` < 2 min.
bench: $(STAMP) bench-tools
	$(BIN)/python -m bench.run $(if $(QUICK),--quick)

# The load generator and CPU pinning the harness needs (README "Benchmarks"), installed if missing.
bench-tools:
	@command -v wrk >/dev/null && command -v taskset >/dev/null || \
		(apt-get install -y -q wrk util-linux >/dev/null || \
		 (apt-get update -q >/dev/null && apt-get install -y -q wrk util-linux >/dev/null))

# Issue 14: S1 and S2 direct vs through PgBouncer in session and transaction mode (docs/poolers.md).
bench-poolers: $(STAMP) bench-tools poolers
	$(BIN)/python -m bench.poolers $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) $(S3_VENV) $(TS_DIR)/node_modules .stk-bridge .pytest_cache .mypy_cache .ruff_cache .hypothesis
