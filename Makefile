# Every target runs inside .venv, created on first use by `make install`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: help install sft reward ppo eval all test test-all lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/activate  ## create .venv and install the package with dev tools

sft: install  ## stage 1: SFT -> outputs/sft (ARGS="--max_steps 500" to override the YAML)
	$(BIN)/python recipes/sft.py $(ARGS)

eval: install  ## judge a checkpoint on held-out prompts (MODEL=outputs/sft by default)
	$(BIN)/python recipes/evaluate.py --model $(or $(MODEL),outputs/sft) $(ARGS)

all: sft  ## the whole pipeline on defaults

test: install  ## fast tests + the slow end-to-end learning check (what CI runs)
	$(BIN)/pytest -m "slow or not slow" -q

test-fast: install  ## fast tests only
	$(BIN)/pytest -q

lint: install  ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf outputs runs .pytest_cache .ruff_cache
