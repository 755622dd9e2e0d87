"""Reliability: a stage killed with SIGKILL part-way and rerun ends exactly where an uninterrupted run ends; the same
config and seed give the same losses and weights; no half-written folder is ever taken for complete."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import NO_FLOORS, ROOT, load_recipe, weights
from ppo_double.checkpoints import is_complete, last_complete_checkpoint

# Small runs that still write several checkpoints, so that a kill can land between (or inside) saves.
STAGE_ARGS = {
    "sft": [
        "--max_steps", "40", "--save_steps", "5", "--per_device_train_batch_size", "16", "--n_layer", "1",
        "--logging_steps", "5", "--test_samples", "1", *NO_FLOORS["sft"],
    ],
    "reward": [
        "--repair_steps", "10", "--detect_steps", "10", "--max_steps", "20", "--save_steps", "5",
        "--per_device_train_batch_size", "16", "--num_hidden_layers", "1", "--logging_steps", "5",
        *NO_FLOORS["reward"],
    ],
    "ppo": [
        "--total_episodes", "256", "--per_device_train_batch_size", "16", "--num_ppo_epochs", "1", "--save_steps",
        "2", "--judge_every", "4", "--judge_numbers", "16", "--test_samples", "1", "--logging_steps", "2",
        "--target_exact_match", "null", "--judge_threads", "1",
        *NO_FLOORS["rl"],
    ],
    "grpo": [
        "--max_steps", "16", "--per_device_train_batch_size", "16", "--num_generations", "4", "--save_steps", "2",
        "--judge_every", "4", "--judge_numbers", "16", "--test_samples", "1", "--logging_steps", "2",
        "--target_exact_match", "null", "--judge_threads", "1",
        *NO_FLOORS["rl"],
    ],
}  # fmt: skip
# What must match between runs: every logged loss and metric, except clocks and throughput, and two counters of the
# process rather than the run: SFTTrainer's `num_tokens` and the Trainer's closing `train_loss` (on resume, TRL and
# transformers count them from the restart, not from step 0; every per-step loss matches).
UNRESTORED_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "eps", "step_time"}
UNRESTORED_KEYS |= {"total_flos"}
UNRESTORED_KEYS |= {"num_tokens", "train_loss"}


def stage_args(stage, out, tiny_sft, tiny_reward) -> list[str]:
    args = [*STAGE_ARGS[stage], "--output_dir", str(out), "--disable_tqdm", "true"]
    if stage in ("ppo", "grpo"):
        args += ["--sft_model_path", str(tiny_sft), "--reward_model_path", str(tiny_reward)]
    return args


def run(stage, args, kill_at=None, log=None, sig=signal.SIGKILL):
    """Run recipes/<stage>.py in its own process; with `kill_at`, send it `sig` (SIGKILL) once that many checkpoints
    completed."""
    command = [sys.executable, str(ROOT / "recipes" / f"{stage}.py"), *args]
    out = Path(args[args.index("--output_dir") + 1])
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        seen = set()
        while kill_at is not None and proc.poll() is None:
            try:
                seen |= {p for p in Path(f"{out}-checkpoints").rglob("checkpoint-*") if is_complete(p)}
            except FileNotFoundError:  # the trainer deleted an old checkpoint while we listed it
                continue
            if len(seen) >= kill_at:
                proc.send_signal(sig)
                break
            time.sleep(0.002)
        proc.wait(timeout=600)
    return proc.returncode, Path(log).read_text()


def logged(folder) -> list[dict]:
    history = json.loads((Path(folder) / "trainer_state.json").read_text())["log_history"]
    return [{k: v for k, v in entry.items() if k not in UNRESTORED_KEYS} for entry in history]


def judged(folder) -> dict:
    """eval_results.json without the clock in the judge's history during training."""
    results = json.loads((Path(folder) / "eval_results.json").read_text())
    for entry in results.get("judged_during_training", []):
        entry.pop("seconds", None)
    return results


def assert_same_run(a, b):
    """Same weights, same judge numbers, same logged losses and metrics."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "final weights differ"
    assert judged(a) == judged(b)
    assert logged(a) == logged(b)


@pytest.mark.parametrize("stage", ["sft", "reward", "ppo", "grpo"])
def test_killed_run_resumes_to_the_same_result(stage, reference, tiny_sft, tiny_reward, tmp_path):
    resumed = tmp_path / "resumed"
    args = stage_args(stage, resumed, tiny_sft, tiny_reward)
    uninterrupted = reference(stage, args)  # in-process; the killed run and its rerun are processes of their own
    checkpoints = len({p.name for p in Path(f"{uninterrupted}-checkpoints").rglob("checkpoint-*")})

    kill_at = random.Random(f"kill {stage}").randint(1, 4)  # the seeded, random point: after the k-th checkpoint
    code, _ = run(stage, args, kill_at=kill_at, log=tmp_path / "killed.log")
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    assert not resumed.exists(), "a killed run left a final folder"
    assert last_complete_checkpoint(f"{resumed}-checkpoints") or stage == "reward"

    code, log = run(stage, args, log=tmp_path / "rerun.log")
    assert code == 0, log[-2000:]
    assert "resuming from" in log
    assert_same_run(uninterrupted, resumed)
    assert checkpoints >= 1


def test_resume_false_starts_over(tiny_sft, tiny_reward, tmp_path):
    out = tmp_path / "sft"
    args = stage_args("sft", out, tiny_sft, tiny_reward)
    code, _ = run("sft", args, kill_at=2, log=tmp_path / "killed.log")
    assert code == -signal.SIGKILL
    code, log = run("sft", [*args, "--resume_from_checkpoint", "false"], log=tmp_path / "rerun.log")
    assert code == 0 and "starting over" in log and "resuming from" not in log
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 40


@pytest.mark.parametrize("stage", ["sft", "reward", "ppo"])
def test_same_config_and_seed_give_the_same_run(stage, reference, tiny_sft, tiny_reward, tmp_path):
    """A second run in this process, later in the session than the shared reference, ends as it did."""
    args = stage_args(stage, tmp_path / "again", tiny_sft, tiny_reward)
    first = reference(stage, args)
    load_recipe(stage).main(args)
    assert_same_run(first, tmp_path / "again")
