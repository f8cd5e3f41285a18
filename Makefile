PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: train test lint format clean

$(BIN)/mtl-train: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

train: $(BIN)/mtl-train
	$(BIN)/mtl-train $(ARGS)

test: $(BIN)/mtl-train
	$(BIN)/ruff check mtl tests scripts
	$(BIN)/ruff format --check mtl tests scripts
	$(BIN)/pytest -q

lint: $(BIN)/mtl-train
	$(BIN)/ruff check --fix mtl tests scripts
	$(BIN)/ruff format mtl tests scripts

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
