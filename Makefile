# The two commands a new user needs: `make demo` and `make test` (see README).
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install services demo test lint bench clean

$(VENV)/.installed: pyproject.toml requirements.lock
	bash scripts/bootstrap.sh

install: $(VENV)/.installed

services:
	bash scripts/services.sh

demo: install
	$(BIN)/recsys demo

test: install services
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/generate_ingest.py --scale full

clean:
	rm -rf $(VENV) .recsys .pytest_cache .ruff_cache
