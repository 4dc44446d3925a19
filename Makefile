# vital-etl: `make demo` runs the main job on embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export VITAL_HOME ?= $(CURDIR)/.vital
export PREFECT_HOME ?= $(VITAL_HOME)/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# a first start of Prefect's temporary server on 2 cores can take longer than its default 20 s
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: setup demo test db-start db-stop down bootstrap sample clean help

help:
	@echo "make setup      create .venv and install vital-etl with its dependencies"
	@echo "make demo       embedded PostgreSQL, the bundled sample, bootstrap-schema, migrate-tenant per tenant"
	@echo "make test       run the test suite (sets up first)"
	@echo "make bootstrap  bootstrap-schema on VITAL_TARGET_DSN (or the embedded target)"
	@echo "make sample     build the bundled sample: legacy tables in the source DB, export files in VITAL_HOME"
	@echo "make down       stop the embedded PostgreSQL started under VITAL_HOME"
	@echo "make clean      make down, then remove VITAL_HOME"

setup: $(STAMP)

# torch==2.13.0 is pinned in pyproject.toml, in the same install as sentence-transformers.
$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "vital-etl needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@
	mkdir -p $(PREFECT_HOME)

db-start: setup
	mkdir -p $(PREFECT_HOME)
	$(BIN)/vital-etl db start

db-stop down:
	@if [ -x $(BIN)/vital-etl ]; then $(BIN)/vital-etl db stop; fi

bootstrap: setup
	$(BIN)/vital-etl bootstrap

sample: setup db-start
	$(BIN)/vital-etl sample

demo: setup db-start
	$(BIN)/vital-etl sample
	$(BIN)/vital-etl bootstrap
	$(BIN)/vital-etl migrate --tenant pharma
	$(BIN)/vital-etl migrate --tenant digital-health

test: setup
	mkdir -p $(PREFECT_HOME)
	$(BIN)/python -m pytest

clean: down
	rm -rf $(VITAL_HOME)
