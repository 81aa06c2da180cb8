# Two entry points (see README): `make run` runs the default pipeline, `make test` runs the tests.
# Both create the virtual environment .venv on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-all lint generate bench clean-results browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	$(BIN)/python -c "import open_clip, torchvision, msae; print('open_clip', open_clip.__version__, 'ok')"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores all

# ruff (lint + format check) and mypy, as configured in pyproject.toml; .ci/run runs it first.
lint: $(STAMP)
	$(BIN)/ruff check msae tests benchmarks
	$(BIN)/ruff format --check msae tests benchmarks
	$(BIN)/mypy msae

# The generated files: Snakemake rules and dvc.yaml from the stage table, the shipped params schema.
generate: $(STAMP)
	$(BIN)/msae pipeline write
	$(BIN)/msae params schema --out msae/assets/params.schema.json

# pytest exits 5 when it collects no test: that is a failure here, not a pass.
# The concept browser's test needs Debian's chromium: installed when apt can, else that test skips
# and says why.
browser: $(STAMP)
	@bash scripts/setup-browser.sh $(BIN)/python >/dev/null 2>&1 || echo "chromium could not be installed: the browser test will skip"

test: $(STAMP) browser
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP) browser
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done
