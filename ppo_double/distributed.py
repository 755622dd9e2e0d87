"""What makes a stage right on N processes under every engine accelerate runs (DDP, DeepSpeed ZeRO-2/3, FSDP).

Training itself is the trainers' business. What is ours is what happens around it on the model's *whole* weights:
the judge during RL, the final evaluation, the saved folder. Under ZeRO-3 (and FSDP) each process holds a shard of
every weight, and a forward pass is a collective that every process must run in step; so here

- `full_weights(trainer)` gives every process the whole weights for a block (DeepSpeed's GatheredParameters, through
  TRL's own `unwrap_model_for_generation`, as TRL does for its rollouts);
- `gathered_model(trainer)` gives the main process a plain, unsharded copy of the trained policy with its LoRA
  adapters merged: the model that is judged, saved and pushed (the engines' own save paths cannot merge LoRA and
  need every process);
- `on_main(fn)` runs `fn` once, on the main process, and gives every process its result.
"""

import os
from contextlib import contextmanager

import psutil
import torch
from accelerate import PartialState
from accelerate.utils import DistributedType, broadcast_object_list

from .errors import UsageError


def on_main(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` on the main process only; every process returns its (picklable) result. The others
    wait: judging once is N times less work than judging on every process, and all processes then decide alike."""
    state = PartialState()
    result = fn(*args, **kwargs) if state.is_main_process else None
    return broadcast_object_list([result])[0] if state.num_processes > 1 else result


def cpu_share() -> int:
    """This process's share of the machine's cores: the physical cores it may run on, divided among the processes
    launched on this machine (LOCAL_WORLD_SIZE)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cores = min(cores, psutil.cpu_count(logical=False) or cores)
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


@contextmanager
def torch_threads(threads: int | None):
    """torch's CPU threads set to `threads` for a block (None: left as they are), then set back."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def engine(trainer):
    """The model as the engine wraps it (DeepSpeedEngine, DDP, FSDP module, or the model itself)."""
    return getattr(trainer, "model_wrapped", None) or trainer.model


@contextmanager
def full_weights(trainer):
    """The trainer's model, unwrapped, with its whole weights on every process for the block: under ZeRO-3 they are
    gathered (every process must enter), elsewhere they already are. Changes to them inside the block are lost."""
    from trl.models.utils import unwrap_model_for_generation

    with unwrap_model_for_generation(engine(trainer), trainer.accelerator) as model:
        yield model


def policy_of(model):
    """The policy inside a trainer's model: PPO's wraps policy and value model together."""
    return getattr(model, "policy", model)


def gathered_model(trainer):
    """A plain copy of the trained policy, unsharded and with any LoRA adapter merged, on the main process (None on the
    others). Every process must call it: gathering the shards is a collective."""
    with full_weights(trainer) as model:
        policy = policy_of(model)
        state = {name: _whole(tensor) for name, tensor in policy.state_dict().items()}
    if not trainer.accelerator.is_main_process:
        return None
    if hasattr(policy, "peft_config"):  # a PeftModel: the same adapter on a fresh base, then merged
        from peft import get_peft_model

        base = policy.get_base_model()
        with torch.random.fork_rng():
            copy = get_peft_model(plain_model(type(base), base.config), policy.peft_config[policy.active_adapter])
        copy.load_state_dict(state)
        copy = copy.merge_and_unload()
    else:
        copy = plain_model(type(policy), policy.config, state)
    if getattr(policy, "generation_config", None) is not None:
        copy.generation_config = policy.generation_config
    return copy.to(trainer.accelerator.device)


@contextmanager
def editable(*params):
    """For the block, `params` hold their whole values and what the main process writes into them is kept: under
    ZeRO-3 a model loaded by from_pretrained is already partitioned (zero.Init)."""
    if not any(hasattr(p, "ds_id") for p in params):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(params), modifier_rank=0):
        yield


def new_accelerator_state() -> None:
    """Let the next Trainer of this process set up accelerate again. DeepSpeed's plugin is taken by the first
    Accelerator only, and a second Trainer (the reward stage's next phase) would be refused: transformers' Trainer
    resets the state the same way before it rebuilds its own Accelerator."""
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().distributed_type == DistributedType.DEEPSPEED:
        AcceleratorState._reset_state()


def _whole(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy of a weight; an FSDP shard (a DTensor) is gathered first, a collective: every process copies."""
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.detach().to("cpu", copy=True)


def plain_model(model_class, config, state_dict=None):
    """`model_class(config)` (holding `state_dict`): built by its constructor, so never partitioned by DeepSpeed's
    `zero.Init`, which `from_pretrained` and `from_config` enter under ZeRO-3 (a collective the other processes
    would not join)."""
    with torch.random.fork_rng():  # its random initial weights must not move the run's random stream
        model = model_class(config)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model


def load_plain(path: str, model_class, config=None):
    """A saved folder as a plain `model_class` (see `plain_model`), safetensors only."""
    from safetensors.torch import load_file

    config = config or model_class.config_class.from_pretrained(path)
    return plain_model(model_class, config, load_file(os.path.join(path, "model.safetensors")))


@contextmanager
def saves_plain(trainer, model):
    """For the block, the trainer saves (and pushes) `model`, the plain copy from `gathered_model`, through its own
    `save_model` / `push_to_hub` as after a one-process run: the engine's save path would gather the shards again and
    save an adapter instead of merged weights. The other processes (`model` None) save nothing, as there."""
    saved = {name: getattr(trainer, name) for name in ("model", "is_deepspeed_enabled", "is_fsdp_enabled")}
    trainer.model = model if model is not None else trainer.accelerator.unwrap_model(trainer.model)
    trainer.is_deepspeed_enabled = trainer.is_fsdp_enabled = False
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(trainer, name, value)


def check_engine_runs_here(args) -> None:
    """UsageError for a launch config that cannot run here, before any work, rather than a crash or a silent
    substitute: accelerate runs FSDP only on accelerators (on CPU it would train as DDP), a config that names GPUs
    (single_gpu.yaml: gpu_ids 0) would train on the CPU, and TRL 1.12's PPOTrainer cannot run under FSDP at all.
    `args`: the recipe's parsed dataclasses."""
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    # PPOTrainer generates its rollouts with `policy`, a submodule of the wrapper that FSDP2 shards as one unit, so
    # the root's weights stay sharded (seen on an H200, docs/device_check.md: "aten.embedding.default got mixed
    # torch.Tensor and DTensor" at the first rollout).
    if fsdp:
        from trl.experimental.ppo import PPOConfig  # here: only an FSDP launch needs TRL's PPO modules imported

        if any(isinstance(a, PPOConfig) for a in args):
            raise UsageError(
                "PPO cannot train under fsdp.yaml: TRL 1.12's PPOTrainer generates through a submodule that FSDP "
                "leaves sharded. For sharded PPO use recipes/accelerate/zero3.yaml (DeepSpeed), or multi_gpu.yaml"
            )
    if torch.cuda.is_available():
        return
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        import deepspeed.ops

        # On CPU DeepSpeed compiles a C++ all-reduce over shared memory at the first launch in each environment (35 s
        # of both cores here, and it needs a C++ compiler). gloo, which the CPU launch configs name, does the
        # all-reduce without it; DeepSpeed reads this table before it would build the op.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if fsdp:
        raise UsageError(
            "fsdp.yaml needs GPUs: without one, accelerate runs FSDP as plain DDP (every process holds every weight). "
            "On CPU use recipes/accelerate/zero3.yaml (DeepSpeed, sharded) or zero2.yaml, or multi_gpu.yaml for DDP"
        )
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        raise UsageError(
            f"the launch asks for GPU {os.environ['CUDA_VISIBLE_DEVICES']} (CUDA_VISIBLE_DEVICES, as single_gpu.yaml "
            "sets it) but torch sees none: on CPU launch without a config file or with recipes/accelerate/cpu.yaml"
        )
