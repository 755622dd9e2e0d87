"""Argument parsing shared by the recipes: TRL's parser, with each recipe's YAML as the default config."""

import dataclasses
import logging
import math
import os
import sys

import torch
import yaml
from accelerate import PartialState
from accelerate.utils import DistributedType
from trl import TrlParser

from .distributed import check_engine_runs_here
from .errors import UsageError, first_line
from .task import MAX_ANSWER_TOKENS, MAX_SAMPLE_TOKENS, VALIDATION_NUMBERS

logger = logging.getLogger(__name__)


class _Parser(TrlParser):
    """TrlParser whose errors are a UsageError (one line) instead of argparse's usage text, hundreds of lines long."""

    def error(self, message):
        raise UsageError(f"{message} (--help lists every option)")


def parse_args(dataclass_types, default_config: str | None = None, argv: list[str] | None = None):
    """Parse `--config FILE` (default: `default_config`) and then CLI overrides into the dataclasses.

    A run with no arguments uses the recipe's YAML; `--config other.yaml` replaces it; `--key value` overrides one
    field. Unknown keys (in the YAML or on the command line) and invalid values are a UsageError naming them.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if default_config is not None and "--config" not in argv:
        argv = ["--config", default_config, *argv]
    config_file = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
    if config_file is not None and not os.path.isfile(config_file):
        raise UsageError(f"config file {config_file!r} does not exist")
    parser = _Parser(dataclass_types)
    has_use_cpu = any("use_cpu" in {f.name for f in dataclasses.fields(t)} for t in dataclass_types)
    if has_use_cpu and not torch.cuda.is_available():
        # Without `use_cpu`, processes started by torchrun on a CPU machine each see DistributedType.NO and train
        # alone; with it, accelerate sets up a real gloo process group (MULTI_CPU).
        parser.set_defaults(use_cpu=True)
    _checkpointing_default(parser, dataclass_types, argv, config_file)
    try:
        *parsed, unknown_in_config, unknown_in_argv = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
    except yaml.YAMLError as err:
        raise UsageError(
            f"config file {config_file} is not valid YAML ({_yaml_problem(err)}): fix its syntax"
        ) from None
    except (ValueError, TypeError, ZeroDivisionError) as err:
        # A config's own check (__post_init__) failed, or divided by a zero setting (GRPOConfig: num_generations 0),
        # or the YAML is no mapping. Our check of the raw values first: it names the field and the fix.
        check_fields(vars(parser.parse_known_args(argv)[0]))
        raise UsageError(first_line(err)) from None
    if unknown_in_config:
        keys = ", ".join(k[2:] for k in unknown_in_config[::2])
        raise UsageError(f"unknown key(s) in {config_file}: {keys} (--help lists every option; check the spelling)")
    if unknown_in_argv:
        raise UsageError(f"unknown argument(s): {' '.join(unknown_in_argv)} (--help lists every option)")
    check_values(*parsed)
    check_engine_runs_here(parsed)
    check_distributed()
    return tuple(parsed)


def _checkpointing_default(parser, dataclass_types, argv: list[str], config_file: str | None) -> None:
    """TRL 1.12's configs default `gradient_checkpointing` to True, a name transformers 5 renamed to
    `activation_checkpointing`; it warns that the old name is deprecated whenever the new one is unset, so a config
    that names neither (a user's own YAML; a bad one, before its one error line) printed a warning about a name the
    user never wrote. Where a run names neither, TRL's default is given under the new name: the same setting, no
    warning; a run that names either is left as it is."""
    defaults = {
        f.name: f.default for t in dataclass_types for f in dataclasses.fields(t) if f.name.endswith("_checkpointing")
    }
    if defaults.get("gradient_checkpointing") is None or "activation_checkpointing" not in defaults:
        return
    named = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    try:
        with open(config_file or os.devnull, encoding="utf-8") as f:
            named |= set(yaml.safe_load(f) or {})
    except (OSError, yaml.YAMLError, TypeError):  # unreadable or not a mapping: the parser says so, in one line
        return
    if not named & {"gradient_checkpointing", "activation_checkpointing"}:
        parser.set_defaults(activation_checkpointing=defaults["gradient_checkpointing"])


def _yaml_problem(err: yaml.YAMLError) -> str:
    """`mapping values are not allowed here, line 2 column 9`: PyYAML's message without its multi-line context."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or first_line(err)
    return problem if mark is None else f"{problem}, line {mark.line + 1} column {mark.column + 1}"


# (field, test, what it must be): checked when one of the parsed dataclasses has the field. TrainingArguments and TRL's
# configs accept these values silently and fail later (a negative learning rate even trains, backwards).
_VALUE_CHECKS = (
    ("learning_rate", lambda v: v > 0, "> 0"),
    ("per_device_train_batch_size", lambda v: v >= 1, ">= 1"),
    ("gradient_accumulation_steps", lambda v: v >= 1, ">= 1"),
    ("total_episodes", lambda v: v is None or v >= 1, ">= 1"),
    (
        "response_length",
        lambda v: v >= MAX_ANSWER_TOKENS,
        f">= {MAX_ANSWER_TOKENS} (an answer is up to 5 numerals and E)",
    ),
    (
        "max_completion_length",
        lambda v: v is None or v >= MAX_ANSWER_TOKENS,
        f">= {MAX_ANSWER_TOKENS} (an answer is up to 5 numerals and E)",
    ),
    (
        "max_length",
        lambda v: v is None or v >= MAX_SAMPLE_TOKENS,
        f">= {MAX_SAMPLE_TOKENS} (the longest sample, S__:9999x2=19998E), or null",
    ),
    ("num_iterations", lambda v: v >= 1, ">= 1"),
    ("num_generations", lambda v: v is None or v >= 2, ">= 2 (GRPO and RLOO compare the completions of one prompt)"),
    ("beta", lambda v: v >= 0, ">= 0"),
    ("num_mini_batches", lambda v: v >= 1, ">= 1"),
    ("num_ppo_epochs", lambda v: v >= 1, ">= 1"),
    ("kl_coef", lambda v: v >= 0, ">= 0"),
    ("temperature", lambda v: v > 0, "> 0"),
    ("judge_every", lambda v: v >= 1, ">= 1"),
    ("judge_samples", lambda v: v >= 1, ">= 1"),
    ("judge_threads", lambda v: v is None or v >= 1, ">= 1 (or null: this process's share of the cores)"),
    ("judge_numbers", lambda v: 1 <= v <= len(VALIDATION_NUMBERS), f"between 1 and {len(VALIDATION_NUMBERS)}"),
    ("samples", lambda v: v >= 1, ">= 1"),
    ("test_samples", lambda v: v >= 1, ">= 1"),
    ("target_exact_match", lambda v: v is None or 0 <= v <= 1, "between 0 and 1 (or null: never stop early)"),
    ("target_correct_margin", lambda v: 0 <= v < 1, "between 0 and 1 (a share: 0.001 is 0.1 point)"),
    ("target_sampled_exact_match", lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("target_patience", lambda v: v >= 1, ">= 1"),
    ("value_warmup_updates", lambda v: v >= 0, ">= 0"),
    ("invalid_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("repair_steps", lambda v: v >= 0, ">= 0"),
    ("detect_steps", lambda v: v >= 0, ">= 0"),
    ("repair_corrupt_prob", lambda v: 0 < v <= 1, "in (0, 1]"),
    # each stage's floors on its own result (ppo_double/checks.py): shares
    *(
        (name, lambda v: 0 <= v <= 1, "between 0 and 1 (0: no check)")
        for name in ("min_sampled_correct", "min_clean_accuracy", "min_invalid_caught", "min_kind_caught")
        + ("min_exact_match", "min_sampled_exact_match")
    ),
    ("detect_corrupt_prob", lambda v: 0 < v <= 1, "in (0, 1]"),
)


def check_values(*parsed) -> None:
    """UsageError for the first invalid value in the parsed dataclasses, naming the field, the value and the fix:
    check_fields, then the settings under which a run would train nothing or could not be right."""
    values = {f.name: getattr(args, f.name) for args in parsed for f in dataclasses.fields(args)}
    check_fields(values)
    # SFT and reward train for max_steps (no epochs); PPO counts episodes instead.
    if "total_episodes" not in values and values.get("max_steps", 1) < 1:
        raise UsageError(f"max_steps must be >= 1, got {values['max_steps']}: fix it in the YAML or with --max_steps")
    if "num_mini_batches" in values:
        _check_ppo_budget(values)
    for size, heads in (("n_embd", "n_head"), ("hidden_size", "num_attention_heads")):
        if size in values and values[size] % values[heads]:
            raise UsageError(f"{size}={values[size]} must be a multiple of {heads}={values[heads]}")


def check_fields(values: dict) -> None:
    """Every float must be a finite number (`inf` and `nan` parse as floats and only fail inside the training loop);
    then each field of `values` (name -> value) that _VALUE_CHECKS knows."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{name} must be a finite number, got {value}: fix it in the YAML or with --{name}")
    for name, valid, must in _VALUE_CHECKS:
        if name in values and not valid(values[name]):
            raise UsageError(f"{name} must be {must}, got {values[name]!r}: fix it in the YAML or with --{name}")


def _check_ppo_budget(values: dict) -> None:
    """PPO's batch splits into its mini-batches, the budget holds a batch or more, and the judge runs at least once."""
    batch = values["per_device_train_batch_size"] * values["gradient_accumulation_steps"]
    if batch % values["num_mini_batches"]:
        raise UsageError(
            f"the batch per process (per_device_train_batch_size x gradient_accumulation_steps = {batch}) does "
            f"not split into num_mini_batches={values['num_mini_batches']}: pick a divisor of {batch}"
        )
    if values["total_episodes"] is None:  # TRL then counts num_train_epochs over the dataset
        return
    batch *= int(os.environ.get("WORLD_SIZE", "1"))
    if values["total_episodes"] < batch:
        raise UsageError(
            f"total_episodes={values['total_episodes']} is less than one PPO batch (per_device_train_batch_size x "
            f"gradient_accumulation_steps x processes = {batch}): raise --total_episodes to >= {batch}"
        )
    updates = math.ceil(values["total_episodes"] / batch)  # as TRL counts them
    if "judge_every" in values and values["judge_every"] > updates:
        raise UsageError(
            f"judge_every={values['judge_every']} is more than the run's {updates} PPO updates (total_episodes / "
            f"batch of {batch}): the judge would never run and the run never stop early; lower --judge_every to "
            f"<= {updates} or raise --total_episodes"
        )


def check_distributed() -> None:
    """Refuse to run when several processes were started but accelerate sees no distributed setup.

    `accelerate launch --multi_gpu` on a machine without GPUs does exactly that unless the run uses accelerate's CPU
    backend (`use_cpu`, which `parse_args` turns on when there is no GPU): every process would train alone on the full
    data and they would all write the same output folder — a silently wrong run.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and PartialState().distributed_type == DistributedType.NO:
        raise SystemExit(
            f"error: {world_size} processes were launched but they are not connected (accelerate sees no "
            "distributed setup). Without a GPU, keep `--use_cpu true` (the default there) and launch with "
            "`torchrun --nproc_per_node N recipes/<stage>.py`; on GPUs use "
            "`accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/<stage>.py`."
        )


def fit_to_device(training_args) -> None:
    """Drop GPU-only speed settings when there is no GPU, so a config written for a cluster runs well on a laptop.

    On CPU, bf16/fp16 run the forward pass under autocast (several times slower for these tiny models) and gradient
    checkpointing recomputes activations to save memory that is not short.
    """
    if torch.cuda.is_available():
        return
    for name in ("bf16", "fp16", "activation_checkpointing"):
        if getattr(training_args, name, False):
            logger.warning("no GPU: turning off %s (it only slows a CPU run down)", name)
            setattr(training_args, name, False)
    training_args.dataloader_pin_memory = False  # pinning needs an accelerator; without one torch only warns
