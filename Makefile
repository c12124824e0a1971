# lookalike: set-up, demo and tests. Everything runs in ./.venv (created on demand).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
export LOOKALIKE_CACHE ?= $(CURDIR)/.cache/lookalike

DEMO_DB    := out/demo-index
DEMO_QUERY := examples/queries/leopard.jpg

.PHONY: venv install dev demo test test-deps system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

venv: $(PY)

install: $(PY)
	$(PIP) install -e .

dev: $(PY)
	$(PIP) install -e '.[dev,milvus,distributed]'

## make demo: install, index the bundled sample photos, search, write the result picture.
demo: install
	$(VENV)/bin/lookalike index examples/images --db $(DEMO_DB)
	$(VENV)/bin/lookalike search $(DEMO_QUERY) --db $(DEMO_DB) --top 8 --plot out/demo-result.png
	@echo "result picture: out/demo-result.png"

## System packages the browser test needs (Debian's Chromium); skipped when present.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium" >&2; exit 1; fi; }

test-deps: dev system-deps

## make test: install dev extras and system packages, check lint and import layers, run the suite.
test: test-deps
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

clean:
	rm -rf out .pytest_cache .cache build dist src/*.egg-info
