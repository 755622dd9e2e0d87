"""What makes a stage right under every engine, checked in one process: the judge's random stream, the gathered copy
that is judged and saved, checkpoints in each engine's layout, and launch configs that cannot run on CPU."""

import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from peft import LoraConfig, get_peft_model

from conftest import TINY_SFT, load_recipe
from ppo_double.checkpoints import checkpoint_problem
from ppo_double.distributed import gathered_model
from ppo_double.errors import UsageError
from ppo_double.evaluate import evaluate
from ppo_double.modeling import build_policy, load_tokenizer
from ppo_double.task import heldout_prompts


def test_the_judge_leaves_every_generator_as_it_found_it():
    policy = build_policy(n_layer=1)
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    before = torch.random.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    evaluate(policy, load_tokenizer(), heldout_prompts(prefixed=True)[:30], seed=7, samples=2)
    after = torch.random.get_rng_state(), random.getstate(), np.random.get_state()[1]
    assert torch.equal(before[0], after[0]) and before[1] == after[1] and np.array_equal(before[2], after[2])


def test_the_gathered_copy_is_the_trained_policy_with_lora_merged():
    torch.manual_seed(0)
    base = build_policy(n_layer=1)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)
    policy = get_peft_model(base, lora)
    for name, weight in policy.named_parameters():
        if "lora_B" in name:  # as after training: the adapter changes the outputs
            torch.nn.init.normal_(weight, std=0.1)
    state = torch.random.get_rng_state()
    trainer = SimpleNamespace(accelerator=Accelerator(cpu=True), model=policy)
    copy = gathered_model(trainer)
    assert torch.equal(torch.random.get_rng_state(), state), "building the copy must not move the run's random stream"
    assert type(copy).__name__ == "GPT2LMHeadModel" and not any("lora" in k for k in copy.state_dict())
    ids = torch.tensor([[1, 40, 5, 6, 7]])
    policy.eval(), copy.eval()  # dropout off in both
    torch.testing.assert_close(copy(ids).logits, policy(ids).logits, atol=1e-5, rtol=1e-5)


def _save(path, tensors=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tensors or {}, path)


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint folder with the files every engine writes (state, weights), without optimizer state."""
    from safetensors.torch import save_file

    folder = tmp_path / "checkpoint-4"
    folder.mkdir()
    (folder / "trainer_state.json").write_text("{}")
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    return folder


def test_each_engines_optimizer_state_is_recognised(checkpoint):
    assert checkpoint_problem(checkpoint) == "broken: no optimizer.pt"
    _save(checkpoint / "optimizer.bin")  # FSDP, full state dict
    assert checkpoint_problem(checkpoint) is None


def test_a_deepspeed_checkpoint_resumes_on_as_many_processes_as_wrote_it(checkpoint):
    (checkpoint / "latest").write_text("global_step8")
    (checkpoint / "global_step8").mkdir()
    assert checkpoint_problem(checkpoint) == "broken: DeepSpeed's global_step8/ holds no optimizer state"
    _save(checkpoint / "global_step8" / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    assert checkpoint_problem(checkpoint) is None  # one shard: this (one-process) run
    _save(checkpoint / "global_step8" / "zero_pp_rank_1_mp_rank_00_optim_states.pt")
    assert checkpoint_problem(checkpoint) == (
        "incompatible: DeepSpeed saved it on 2 processes, this run has 1 (relaunch with --num_processes 2)"
    )
    (checkpoint / "global_step8" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    (checkpoint / "global_step8" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"torn")
    assert checkpoint_problem(checkpoint) == (
        "broken: global_step8/zero_pp_rank_0_mp_rank_00_optim_states.pt is truncated or corrupted"
    )


@pytest.mark.parametrize(
    "env, message",
    [
        ({"ACCELERATE_USE_FSDP": "true"}, "fsdp.yaml needs GPUs"),
        ({"CUDA_VISIBLE_DEVICES": "0"}, "the launch asks for GPU 0"),
    ],
)
def test_a_gpu_only_launch_is_refused_on_cpu_before_any_work(env, message, tmp_path, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match=message):
        load_recipe("sft").main([*TINY_SFT, "--output_dir", str(tmp_path / "out")])
    assert not list(tmp_path.iterdir())


def test_ppo_under_fsdp_is_refused_before_any_work(tmp_path, monkeypatch):
    # Seen on an H200 (docs/device_check.md): TRL 1.12's PPOTrainer crashes at its first rollout under FSDP. Checked
    # before whether a GPU is there, so this CPU test takes the path a GPU machine takes.
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(UsageError, match="PPO cannot train under fsdp.yaml: .* use recipes/accelerate/zero3.yaml"):
        load_recipe("ppo").main(["--output_dir", str(tmp_path / "out")])
    assert not list(tmp_path.iterdir())


def test_hub_kernels_are_off_unless_asked_for():
    # transformers would otherwise swap layers for Hub kernels wherever a model is built on a GPU (ZeRO-3's
    # zero.Init): other layers than on one GPU, and a crash without network (docs/device_check.md).
    from transformers.integrations.hub_kernels import _kernels_enabled

    assert os.environ["USE_HUB_KERNELS"] == "NO" and not _kernels_enabled()
