# tickcast — `make run` (the main job, locally) and `make test`. Each does its own set-up.
# `make test` runs every tier (tests/unit, tests/integration, tests/e2e and the doctests);
# `make test-unit` runs the fast one: tests/unit and the doctests that start no server.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
ARGS ?=

.PHONY: run live test test-unit lint bench bench-pipeline faults web check-tools mariadb chromium clean

check-tools:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tickcast needs Python >= 3.11 (found " + sys.version.split()[0] + ")")'
	@command -v node >/dev/null || { echo "tickcast needs Node.js 20 for Azurite: apt-get install nodejs npm"; exit 1; }
	@command -v npm >/dev/null || { echo "tickcast needs npm for Azurite: apt-get install npm"; exit 1; }

# The project itself is installed editable, so the console scripts (.venv/bin/tickcast,
# tickcast-ingestor, tickcast-local; pyproject.toml [project.scripts]) work from any directory.
$(STAMP): requirements.txt requirements-dev.txt ingestor/requirements.txt infra/requirements.txt pyproject.toml | check-tools
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(NODE_STAMP): package.json package-lock.json | check-tools
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The tests need a MariaDB server binary (each test session starts its own private instance).
mariadb:
	@if command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing mariadb-server (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null; \
	else echo "The tests need MariaDB: run 'sudo apt-get install mariadb-server' and retry."; exit 1; fi

# The dashboard's browser test drives Debian's Chromium (/usr/bin/chromium) through Playwright.
chromium:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "The browser test needs Chromium: run 'sudo apt-get install chromium' and retry."; exit 1; fi

run: $(STAMP) $(NODE_STAMP)
	$(PY) -m local_stack $(ARGS)

# The same local pipeline and dashboard fed by live exchange trades, until Ctrl-C.
LIVE ?= binance:BTCUSDT,ETHUSDT;coinbase:BTC-USD
live: $(STAMP) $(NODE_STAMP)
	$(PY) -m local_stack --live '$(LIVE)' $(ARGS)

test: $(STAMP) $(NODE_STAMP) mariadb chromium
	$(PY) -m pytest $(ARGS)

# No server, no network, under a minute: tests/unit and the doctests, spread over the CPUs
# (pytest-xdist). Doctests that start a server belong to the integration tier, so they are
# deselected here (by node id) and run by `make test`.
UNIT_PATHS := tests/unit shared ingestor local_stack tickcast scripts
SERVER_DOCTESTS := local_stack/tansu.py::local_stack.tansu.TansuBroker
test-unit: $(STAMP) $(NODE_STAMP)
	$(PY) -m pytest -n auto $(UNIT_PATHS) $(addprefix --deselect=,$(SERVER_DOCTESTS)) $(ARGS)

# The import contract of pyproject.toml ([tool.importlinter]): shared's layers import one way.
lint: $(STAMP)
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) bench/engine_throughput.py
	$(PY) bench/forecast_throughput.py
	$(PY) bench/cold_start.py

# The whole pipeline on one Tansu broker (about 5 min): bare round trip, tick -> prediction, drain, in
# process, footprint with 1,000 symbols, ingestor rates, and the same job in Quix Streams (its own venv,
# .venv-peers, made on first use from bench/peers/requirements.txt). See docs/sizing.md.
bench-pipeline: $(STAMP) $(NODE_STAMP)
	$(PY) bench/pipeline.py $(ARGS)

# The fault-injection suite (local_stack/faults): the functions against real Tansu, Azurite and MariaDB,
# with SIGKILLs, outages, a frozen broker and fuzzed messages; prints a table, writes reports/faults.{json,md}.
faults: $(STAMP) $(NODE_STAMP) mariadb
	$(PY) -m local_stack faults $(ARGS)

# Copy the dashboard's npm bundles into web/vendor/ (run before publishing the function app).
web: $(STAMP) $(NODE_STAMP)
	$(PY) -m shared.serving.webassets

clean:
	rm -rf $(VENV) node_modules .pytest_cache web/vendor
