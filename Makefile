# The two commands a new user needs: `make demo` and `make test` (see README).
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install tools services demo test lint bench clean

$(VENV)/.installed: pyproject.toml requirements.lock
	bash scripts/bootstrap.sh

install: $(VENV)/.installed

# helm for the deployment checks (tests/test_deploy.py); idempotent
tools:
	bash scripts/tools.sh

services:
	bash scripts/services.sh

demo: install
	$(BIN)/recsys demo

test: install tools services
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/generate_ingest.py --scale full

clean:
	rm -rf $(VENV) .tools .recsys .pytest_cache .ruff_cache
