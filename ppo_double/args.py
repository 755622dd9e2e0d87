"""Argument parsing shared by the recipes: TRL's parser, with each recipe's YAML as the default config."""

import dataclasses
import logging
import os
import sys

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType
from trl import TrlParser

logger = logging.getLogger(__name__)


def parse_args(dataclass_types, default_config: str | None = None, argv: list[str] | None = None):
    """Parse `--config FILE` (default: `default_config`) and then CLI overrides into the dataclasses.

    A run with no arguments uses the recipe's YAML; `--config other.yaml` replaces it; `--key value` overrides one
    field. Unknown keys in the YAML or on the command line are errors (TrlParser's own check).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if default_config is not None and "--config" not in argv:
        argv = ["--config", default_config, *argv]
    parser = TrlParser(dataclass_types)
    has_use_cpu = any("use_cpu" in {f.name for f in dataclasses.fields(t)} for t in dataclass_types)
    if has_use_cpu and not torch.cuda.is_available():
        # Without `use_cpu`, processes started by torchrun on a CPU machine each see DistributedType.NO and train
        # alone; with it, accelerate sets up a real gloo process group (MULTI_CPU).
        parser.set_defaults(use_cpu=True)
    parsed = parser.parse_args_and_config(argv)
    check_distributed()
    return parsed


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
    for name in ("bf16", "fp16", "gradient_checkpointing"):
        if getattr(training_args, name, False):
            logger.warning("no GPU: turning off %s (it only slows a CPU run down)", name)
            setattr(training_args, name, False)
    training_args.dataloader_pin_memory = False  # pinning needs an accelerator; without one torch only warns
