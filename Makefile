# engineshed: two commands on a fresh machine (Python 3.11+ and make): `make run`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench load schema compat clean image

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/engineshed dev

test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m bench.run

load: $(STAMP)
	LOAD_SECONDS=60 LOAD_CLIENTS=200 $(BIN)/pytest -q -s tests/reliability/test_load.py

schema: $(STAMP)
	$(BIN)/strawberry export-schema gateway.schema.export:schema --output schema.graphql

# The compatibility check is one of the reference documents kept next to the clone, in ../shared.
COMPAT := ../shared/tools/veritone-compat

compat: $(STAMP)
	@test -x $(COMPAT) || { echo "make compat: $(COMPAT) is missing: the reference documents are not next to this clone (../shared)" >&2; exit 2; }
	VERITONE_COMPAT_PYTHON=$(BIN)/python $(COMPAT) schema.graphql

clean:
	rm -rf $(VENV) .engineshed .pytest_cache

# The container image (Containerfile; README, "Deploy"). CONTAINER=docker works too.
CONTAINER ?= podman
IMAGE ?= localhost/engineshed:latest

image:
	$(CONTAINER) build -t $(IMAGE) -f Containerfile .
