# Set-up and entry points. `make serve` and `make test` are the README's two Quickstart commands:
# each creates .venv, installs the project, generates the gRPC stubs from proto/ and fetches the
# embedded model, then starts the service or runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROTO  := proto/freelm/pruner/v1/pruner.proto
GEN    := clients/python/freelm/pruner/v1
STAMP  := $(VENV)/.freelm-installed
ARGS   ?=

.PHONY: setup serve test lint proto fetch clean

setup: $(STAMP) fetch

serve: setup
	$(VENV)/bin/freelm-pruner serve $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check pruner_service clients/python/freelm_pruner_client tests bench
	$(VENV)/bin/mypy

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

proto: $(PY)
	$(PY) -m pip install --quiet "grpcio-tools>=1.70" "protobuf>=7.35.1"
	mkdir -p $(GEN)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=clients/python --pyi_out=clients/python \
		--grpc_python_out=clients/python $(PROTO) proto/freelm/pruner/v1/queue.proto

$(STAMP): pyproject.toml clients/python/pyproject.toml proto/freelm/pruner/v1/*.proto | $(PY)
	$(MAKE) proto
	$(PY) -m pip install --quiet -e clients/python -e '.[dev]'
	touch $(STAMP)

fetch: $(STAMP)
	$(VENV)/bin/freelm-pruner fetch

clean:
	rm -rf $(VENV) $(GEN)
