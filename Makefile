# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export CORRAL_HOME ?= $(CURDIR)/.corral
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test dev bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Corral and its pinned dependencies into $(VENV) (first time: about a minute) ..."
	@$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import dbt.version, dagster, dagster_dbt, duckdb, loaders, reverse_etl, dagster_defs" \
		|| (echo "install failed: see pip's output above" && exit 1)
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/corral demo

test: $(STAMP)
	$(BIN)/python -m pytest

dev: $(STAMP)
	@mkdir -p $(CORRAL_HOME)/dagster $(CORRAL_HOME)/landing
	@cp dagster_defs/dagster.yaml $(CORRAL_HOME)/dagster/dagster.yaml
	DAGSTER_HOME=$(CORRAL_HOME)/dagster $(BIN)/dagster dev -m dagster_defs.definitions

bench: $(STAMP)
	@$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,bench]" 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python bench/load_bench.py
	$(BIN)/python bench/collector_bench.py
	$(BIN)/python bench/identity_bench.py
	$(BIN)/python bench/sessions_bench.py
	$(BIN)/python bench/traits_bench.py
	$(BIN)/python bench/sync_bench.py

clean:
	rm -rf $(VENV) .corral dbt_project/target dbt_project/logs *.egg-info
