# vital-etl: `make demo` runs the main job on embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TENANTS ?= pharma digital-health

export VITAL_HOME ?= $(CURDIR)/.vital
export PREFECT_HOME ?= $(VITAL_HOME)/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# a first start of Prefect's temporary server on 2 cores can take longer than its default 20 s
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export VITAL_PROJECT_DIR := $(CURDIR)
VITAL_PREFECT_PORT ?= 4200
# for the targets that talk to the local server started by `make up`
LOCAL_API := PREFECT_API_URL=http://127.0.0.1:$(VITAL_PREFECT_PORT)/api

.PHONY: setup demo test lint format up down deploy db-start db-stop bootstrap sample rehearse bench fidelity quality clean help

help:
	@echo "make setup      create .venv and install vital-etl with its dependencies"
	@echo "make demo       the whole job on embedded defaults, through prefect deployment run, per tenant"
	@echo "make test       run the test suite (sets up first)"
	@echo "make lint       ruff check and ruff format --check (CI runs it before the tests)"
	@echo "make format     ruff format and the safe ruff fixes"
	@echo "make up         start a local Prefect server and a process worker in the background"
	@echo "make deploy     prefect deploy --all (prefect.yaml) to the local server"
	@echo "make down       stop what make up started, and the embedded PostgreSQL"
	@echo "make sample     build the bundled sample: legacy tables in the source DB, export files in VITAL_HOME"
	@echo "make bootstrap  bootstrap-schema on VITAL_TARGET_DSN (or the embedded target)"
	@echo "make rehearse   SCHEMA=... [DATA=...] MANIFEST=...: restore a dump (plain SQL or pg_dump -Fc; DATA= for one file), migrate every tenant into an embedded copy"
	@echo "make bench      the benchmarks of bench/ (tables printed, JSON in bench/results/); takes ~20 min"
	@echo "make fidelity   every record of the real VITAL exports compared field by field with what is loaded"
	@echo "make quality    functional areas and links against the hand-made labels of bench/quality/ (before/after)"
	@echo "make clean      make down, then remove VITAL_HOME"

setup: $(STAMP)

# torch==2.13.0 is pinned in pyproject.toml, in the same install as sentence-transformers.
$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "vital-etl needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,openvino]'
	mkdir -p $(PREFECT_HOME)
	touch $@

db-start: setup
	mkdir -p $(PREFECT_HOME)
	$(BIN)/vital-etl db start

db-stop:
	@if [ -x $(BIN)/vital-etl ]; then $(BIN)/vital-etl db stop; fi

up: setup db-start
	VITAL_PREFECT_PORT=$(VITAL_PREFECT_PORT) $(BIN)/vital-etl up

down:
	@if [ -x $(BIN)/vital-etl ]; then $(BIN)/vital-etl down; fi

deploy: up
	$(LOCAL_API) $(BIN)/prefect --no-prompt deploy --all

bootstrap: setup
	$(BIN)/vital-etl bootstrap

sample: setup db-start
	$(BIN)/vital-etl sample

# The main job as a user runs it: sample legacy data, the schema, a server and a worker, the
# deployments, then `prefect deployment run` per tenant; prints each tenant's report and
# fails if any run did not complete or did not verify.
demo: setup db-start
	$(BIN)/vital-etl sample
	$(MAKE) --no-print-directory up deploy
	$(LOCAL_API) $(BIN)/prefect deployment run 'bootstrap-schema/default' --watch
	@status=0; for t in $(TENANTS); do \
	  $(LOCAL_API) $(BIN)/prefect deployment run "migrate-tenant/$$t" --watch || status=1; \
	done; \
	for t in $(TENANTS); do $(BIN)/vital-etl report --tenant $$t || status=1; done; \
	echo "Prefect UI: http://127.0.0.1:$(VITAL_PREFECT_PORT) (make down stops the server, the worker and the database)"; \
	exit $$status

# Rehearse a production migration on a local copy: restore the Supabase dump into an embedded
# PostgreSQL, bootstrap an embedded target, migrate and verify every tenant, print the reports.
# Everything lives under $(REHEARSAL_HOME); no DSN of the environment is used.
SCHEMA ?= $(CURDIR)/../shared/vital/legacy-db/schema.sql
DATA ?= $(CURDIR)/../shared/vital/legacy-db/data.sql
MANIFEST ?= sources/manifests/vital-rehearsal.yaml
REHEARSAL_HOME ?= $(VITAL_HOME)/rehearsal
rehearse: setup
	@set -e; export VITAL_HOME=$(REHEARSAL_HOME) PREFECT_HOME=$(REHEARSAL_HOME)/prefect \
	  VITAL_DUMP_SCHEMA=$(abspath $(SCHEMA)) VITAL_DUMP_DATA=$(abspath $(DATA)); \
	unset VITAL_SOURCE_DSN VITAL_TARGET_DSN VITAL_SOURCE_DSN_SECRET VITAL_TARGET_DSN_SECRET PREFECT_API_URL; \
	mkdir -p $$PREFECT_HOME; \
	$(BIN)/vital-etl db start; \
	$(BIN)/vital-etl restore --schema "$$VITAL_DUMP_SCHEMA" --data "$$VITAL_DUMP_DATA" || echo "(the copy is incomplete: see FAILED above)"; \
	$(BIN)/vital-etl bootstrap > /dev/null; \
	status=0; for t in $(TENANTS); do \
	  $(BIN)/vital-etl migrate --tenant $$t --manifest $(MANIFEST) > $(REHEARSAL_HOME)/migrate-$$t.log 2>&1 || status=1; \
	  $(BIN)/vital-etl report --tenant $$t || status=1; \
	done; \
	echo "rehearsal logs and databases: $(REHEARSAL_HOME) (make down VITAL_HOME=$(REHEARSAL_HOME) stops its PostgreSQL)"; \
	exit $$status

# Benchmarks (not tests): each prints a table and writes bench/results/<name>.json.
BENCH_LOAD_SIZES ?= 10000,100000
BENCH_MEMORY_SIZES ?= 50000,100000,200000
BENCH_HNSW_ROWS ?= 100000
bench: setup
	$(BIN)/python bench/bench_load.py --sizes $(BENCH_LOAD_SIZES)
	$(BIN)/python bench/bench_embed.py
	$(BIN)/python bench/bench_runs.py incremental
	$(BIN)/python bench/bench_runs.py memory --sizes $(BENCH_MEMORY_SIZES)
	$(BIN)/python bench/bench_hnsw.py --rows $(BENCH_HNSW_ROWS)

# Fidelity (not a benchmark, no target database): every record of the real VITAL exports in
# ../shared/vital compared field by field with the rows vital-etl loads for it, per tenant.
# Fails when a field is lost or changed other than by a documented conversion (README).
fidelity: setup db-start
	$(BIN)/python bench/fidelity.py

# Inference quality against the labels of bench/quality/ (rubric: bench/quality/RUBRIC.md):
# prints the table and writes bench/results/quality.json; no database needed.
quality: setup
	$(BIN)/python bench/quality.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: setup
	mkdir -p $(PREFECT_HOME)
	$(BIN)/python -m pytest

clean: down
	rm -rf $(VITAL_HOME)
