"""Two real processes on CPU (torchrun + gloo): do they cooperate, and is a broken launch refused?"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TINY_SFT

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def run_two_ranks(stage, args, tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1"}
    cmd = [*TORCHRUN, str(ROOT / "tests" / "distributed_driver.py"), stage, str(reports), *args]
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, timeout=600)
    return [json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1)]


def assert_cooperated(ranks, output_dir):
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all(r["distributed_type"] == "DistributedType.MULTI_CPU" for r in ranks)
    assert [r["is_main_process"] for r in ranks] == [True, False]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert ranks[0]["global_step"] == ranks[1]["global_step"]
    # One final folder and one checkpoints folder for both processes, no per-rank copies.
    assert sorted(p.name for p in output_dir.parent.iterdir() if p.is_dir()) == ["out", "out-checkpoints", "reports"]
    assert (output_dir / "model.safetensors").exists()


@pytest.mark.slow
def test_sft_with_two_processes(tmp_path):
    out = tmp_path / "out"
    ranks = run_two_ranks("sft", [*TINY_SFT, "--output_dir", str(out), "--eval_after_training", "false"], tmp_path)
    assert_cooperated(ranks, out)
    assert ranks[0]["global_step"] == 8  # max_steps, each step a global batch of 2 x 16


@pytest.mark.slow
def test_ppo_with_two_processes(tiny_sft, tiny_reward, tmp_path):
    from test_ppo import tiny_ppo_args

    out = tmp_path / "out"
    ranks = run_two_ranks("ppo", tiny_ppo_args(tiny_sft, tiny_reward, out), tmp_path)
    assert_cooperated(ranks, out)
    # total_episodes 64 with 16 per process: 2 updates of a 32-episode global batch
    assert [(r["global_step"], r["episode"]) for r in ranks] == [(2, 64), (2, 64)]


@pytest.mark.slow
def test_grpo_with_two_processes(tiny_sft, tiny_reward, tmp_path):
    from test_online import tiny_group_args

    out = tmp_path / "out"
    args = [*tiny_group_args(tiny_sft, tiny_reward, out), "--max_steps", "2", "--per_device_train_batch_size", "8"]
    ranks = run_two_ranks("grpo", args, tmp_path)
    assert_cooperated(ranks, out)
    assert [r["global_step"] for r in ranks] == [2, 2]
    # each update: 8 completions per process, 16 in all (4 prompts x num_generations 4; a group may span processes)
    history = json.loads((out / "eval_results.json").read_text())["judged_during_training"]
    assert [(h["step"], h["episode"]) for h in history] == [(0, 0), (2, 32)]  # the starting policy, then update 2


def test_unconnected_processes_are_refused(tmp_path):
    # Processes without a process group: `accelerate launch --multi_gpu` on a machine without GPUs, when the run does
    # not use accelerate's CPU backend (the recipes default to it without a GPU; `--use_cpu false` turns it off).
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [
        str(accelerate),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(ROOT / "recipes" / "sft.py"),
        "--use_cpu",
        "false",
        *TINY_SFT,
        "--output_dir",
        str(tmp_path / "out"),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode != 0
    assert "2 processes were launched but they are not connected" in out.stderr
    assert "torchrun --nproc_per_node" in out.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written
