"""recipes/accelerate/*.yaml, read by accelerate itself: the way `accelerate launch --config_file X` reads them."""

import pytest
import transformers
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.utils import (
    DistributedType,
    prepare_deepspeed_cmd_env,
    prepare_multi_gpu_env,
    prepare_simple_launcher_cmd_env,
)

from conftest import ROOT

CONFIGS = ROOT / "recipes" / "accelerate"

# What each file is for: distributed type, processes, mixed precision.
EXPECTED = {
    "cpu.yaml": (DistributedType.NO, 1, "no"),
    "single_gpu.yaml": (DistributedType.NO, 1, "bf16"),
    "multi_gpu.yaml": (DistributedType.MULTI_GPU, 8, "bf16"),
    "fsdp.yaml": (DistributedType.FSDP, 8, "bf16"),
    "zero2.yaml": (DistributedType.DEEPSPEED, 8, "bf16"),
    "zero3.yaml": (DistributedType.DEEPSPEED, 8, "bf16"),
}


def test_every_config_is_checked():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_with_accelerates_loader(name):
    # load_config_from_file rejects unknown top-level keys and unknown distributed types
    config = load_config_from_file(str(CONFIGS / name))
    assert isinstance(config, ClusterConfig)
    distributed_type, num_processes, mixed_precision = EXPECTED[name]
    assert config.distributed_type == distributed_type
    assert config.num_processes == num_processes
    assert config.mixed_precision == mixed_precision
    assert (config.num_machines, config.machine_rank, config.main_training_function) == (1, 0, "main")
    assert config.use_cpu == (name == "cpu.yaml")
    if config.distributed_type != DistributedType.NO:
        assert config.num_processes > 1


def _launch_env(name: str) -> tuple[dict, object]:
    """The environment `accelerate launch --config_file NAME recipes/sft.py` would give the recipe's processes."""
    # `_validate_launch_command` is what `accelerate launch` runs to merge the config file into its arguments
    # (private, hence imported here only); the prepare_* helpers then build the launched processes' environment.
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), str(ROOT / "recipes/sft.py")])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        return prepare_deepspeed_cmd_env(args)[1], args
    if args.use_fsdp or args.multi_gpu:
        return prepare_multi_gpu_env(args), args
    return prepare_simple_launcher_cmd_env(args)[1], args


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_launcher_turns_config_into_the_intended_setup(name):
    env, args = _launch_env(name)
    distributed_type, num_processes, mixed_precision = EXPECTED[name]
    assert args.num_processes == num_processes
    assert env["ACCELERATE_MIXED_PRECISION"] == mixed_precision
    assert args.multi_gpu == (distributed_type == DistributedType.MULTI_GPU)
    assert (env.get("ACCELERATE_USE_CPU") == "True") == (name == "cpu.yaml")
    if name == "fsdp.yaml":
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
        # the layer class to wrap must exist (the policy and value model are GPT-2), and saving must gather the
        # full weights so that save_model writes one model.safetensors
        assert hasattr(transformers.models.gpt2.modeling_gpt2, env["FSDP_TRANSFORMER_CLS_TO_WRAP"])
        assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    if distributed_type == DistributedType.DEEPSPEED:
        stage = {"zero2.yaml": "2", "zero3.yaml": "3"}[name]
        assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == stage
        if stage == "3":  # without it, save_model under ZeRO-3 writes no usable weights
            assert env["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"
