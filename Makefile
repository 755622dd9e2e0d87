# Every target runs inside .venv, created on first use by `make install`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
# `accelerate launch` without a config file: pass the values it would otherwise default (and list, 8 lines, every run).
ACCELERATE_CONFIG ?=
LAUNCH_ARGS := $(if $(ACCELERATE_CONFIG),--config_file $(ACCELERATE_CONFIG),--num_processes 1 --num_machines 1 \
	--mixed_precision no --dynamo_backend no)

.PHONY: help install lock newest sft reward reward-tutorial ppo grpo rloo eval plots bench sweep all summary test test-fast lint \
	format clean

# The fast tests (not marked slow) with the pytest of the venv bin folder $(1). They are plumbing on tiny models,
# mostly one busy thread each (process start-up, Python): one worker per core at one thread each runs them ~1.5x faster
# than one process on every core.
fast_tests = OMP_NUM_THREADS=1 $(1)/pytest -q -n auto --dist loadfile

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# requirements.lock: the exact versions the test suite and the store's newest records ran with. pip -c pins every
# package the project pulls in (and ignores those a platform does not need), so a new release is tried on purpose
# (`make newest`), never by accident.
# -qq on the editable install: pip 26 relays setuptools' note on every editable install ("Editable installation ...
# folders with the same name as your package"), which a user cannot act on; pip's errors still print.
$(BIN)/activate: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -qq -c requirements.lock -e ".[dev]"
	@touch $@

install: $(BIN)/activate  ## create .venv with the locked versions (requirements.lock) and the dev tools

lock: install  ## rewrite requirements.lock from .venv (after installing and testing new versions on purpose)
	@{ sed -n '1,2p' requirements.lock; $(BIN)/pip freeze --exclude-editable | grep -v "^#"; } > requirements.lock.new
	@mv requirements.lock.new requirements.lock && echo "requirements.lock: $$(grep -c '==' requirements.lock) packages"

newest:  ## the newest releases pyproject allows, in .venv-newest, and the fast tests on them (the lock test excluded)
	$(PYTHON) -m venv .venv-newest
	.venv-newest/bin/pip install -q --upgrade pip
	.venv-newest/bin/pip install -qq --upgrade --upgrade-strategy eager -e ".[dev]"
	@.venv-newest/bin/pip freeze --exclude-editable | diff requirements.lock - | grep '^[<>]' || true
	$(call fast_tests,.venv-newest/bin) --ignore tests/test_versions.py

sft: install  ## stage 1: SFT -> outputs/sft (ARGS="--max_steps 500" to override the YAML)
	$(BIN)/python recipes/sft.py $(ARGS)

reward: install  ## stage 2: reward classifier -> outputs/reward
	$(BIN)/python recipes/reward.py $(ARGS)

reward-tutorial: install  ## the tutorial's 3-class classifier (clean answers, 500 steps) -> outputs/reward-tutorial
	$(BIN)/python recipes/reward.py --config recipes/configs/reward_tutorial.yaml $(ARGS)

ppo: install  ## stage 3: PPO -> outputs/ppo (needs outputs/sft and outputs/reward)
	$(BIN)/accelerate launch $(LAUNCH_ARGS) recipes/ppo.py $(ARGS)

grpo: install  ## stage 3 with GRPO instead of PPO -> outputs/grpo (needs outputs/sft and outputs/reward)
	$(BIN)/accelerate launch $(LAUNCH_ARGS) recipes/grpo.py $(ARGS)

rloo: install  ## stage 3 with RLOO instead of PPO -> outputs/rloo (needs outputs/sft and outputs/reward)
	$(BIN)/accelerate launch $(LAUNCH_ARGS) recipes/rloo.py $(ARGS)

eval: install  ## before/after table: SFT vs PPO on the held-out test numbers
	$(BIN)/python recipes/evaluate.py --model outputs/ppo --baseline outputs/sft --output_json outputs/eval.json $(ARGS)

plots: install  ## PNG plots of the runs' logs -> outputs/plots/ (ARGS="--output_dir docs")
	$(BIN)/ppo-double plots $(ARGS)

bench: install  ## a study (STUDY=bench/studies/<name>.yaml; default pipeline.yaml: `make all` per seed) -> bench/results/
	$(BIN)/python bench/run.py $(or $(STUDY),bench/studies/pipeline.yaml) $(ARGS)

sweep: install  ## the PPO settings behind the defaults, one change each (bench/studies/ppo_settings.yaml)
	$(BIN)/python bench/run.py bench/studies/ppo_settings.yaml $(ARGS)

all: install  ## the whole pipeline: sft and reward side by side, ppo, eval, then the summary (ARGS="--seed 43 --output_dir outputs/seed43")
	$(BIN)/python -m ppo_double.pipeline $(if $(ACCELERATE_CONFIG),--accelerate_config $(ACCELERATE_CONFIG)) $(ARGS)

summary: install  ## what `make all` ran: wall time per stage, before -> after table, checkpoints, what to try next
	@$(BIN)/ppo-double summary

# The slow checks run one at a time on the thread count of the environment (the learning checks' numerics depend on
# it; so does CI's), after the fast tests (fast_tests).
test: test-fast  ## the fast tests, then the slow checks: learning on the defaults, 2-process launches (what CI runs)
	$(BIN)/pytest -m slow -q --durations=10

test-fast: install  ## the fast tests only, one worker per core
	$(call fast_tests,$(BIN)) --durations=5

lint: install  ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf outputs runs .pytest_cache .ruff_cache
