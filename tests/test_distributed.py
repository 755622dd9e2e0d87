"""Two real processes on CPU under every launch config that runs here: DDP (multi_gpu.yaml: gloo without a GPU),
DeepSpeed ZeRO-2 and ZeRO-3. Every stage reaches a loadable final folder, the ranks agree on the stop, a run stopped
by SIGTERM to its process group or killed resumes, and a broken launch is refused."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_ppo import tiny_ppo_args
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from conftest import ROOT
from ppo_double.checkpoints import checkpoints_dir

ACCELERATE = str(Path(sys.executable).parent / "accelerate")
CONFIGS = {"ddp": "multi_gpu.yaml", "zero2": "zero2.yaml", "zero3": "zero3.yaml"}  # fsdp.yaml: GPUs only (refused)
TYPES = {"ddp": "DistributedType.MULTI_CPU", "zero2": "DistributedType.DEEPSPEED", "zero3": "DistributedType.DEEPSPEED"}
STAGES = ["sft", "reward", "ppo", "grpo", "rloo", "ppo-lora", "grpo-lora", "rloo-lora", "ppo-stop"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(config: str, script: str, *args, processes: int = 2) -> list[str]:
    """`accelerate launch` of `script` on `processes` CPU processes under recipes/accelerate/<CONFIGS[config]>."""
    return [
        ACCELERATE, "launch", "--config_file", str(ROOT / "recipes" / "accelerate" / CONFIGS[config]),
        "--num_processes", str(processes), "--mixed_precision", "no", "--main_process_port", str(free_port()),
        script, *map(str, args),
    ]  # fmt: skip


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def sha256_of(folder) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(str(Path(folder) / "model.safetensors")).items()):
        digest.update(name.encode() + tensor.to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_stage_runs_under_the_config(config, tmp_path):
    cmd = launch_command(config, ROOT / "tests" / "distributed_driver.py", tmp_path, *STAGES)
    done = subprocess.run(cmd, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    assert "shm_comm" not in done.stdout + done.stderr, "DeepSpeed on CPU compiled its shared-memory op (35 s)"
    sft = load_file(str(tmp_path / "sft" / "model.safetensors"))
    for stage in STAGES:
        ranks = [json.loads((tmp_path / "reports" / f"{stage}.rank{r}.json").read_text()) for r in (0, 1)]
        assert [(r["world_size"], r["distributed_type"]) for r in ranks] == [(2, TYPES[config])] * 2, stage
        assert ranks[0]["global_step"] == ranks[1]["global_step"] > 0
        assert ranks[0]["judged"] == ranks[1]["judged"], "every rank must see the same judgements"
        if config == "ddp":
            assert ranks[0]["replica_sha256"] == ranks[1]["replica_sha256"]
        # The final folder holds the whole trained policy (gathered, LoRA merged), loadable by the Auto classes.
        folder = tmp_path / stage
        auto = AutoModelForSequenceClassification if stage == "reward" else AutoModelForCausalLM
        model = auto.from_pretrained(folder)
        assert sha256_of(folder) == ranks[0]["gathered_sha256"], f"{stage}: the saved weights are not the trained"
        assert not (folder / "adapter_model.safetensors").exists()
        assert all(p.numel() > 0 for p in model.parameters())
        if stage not in ("sft", "reward"):
            saved = load_file(str(folder / "model.safetensors"))
            assert saved.keys() == sft.keys(), f"{stage}: not a plain GPT-2 like the SFT policy"
            assert any(not torch.equal(saved[k], sft[k]) for k in sft), f"{stage}: the policy did not train"
            assert [r["stopped"] for r in ranks] == [stage == "ppo-stop"] * 2
    # The stop rule held at the second judgement (update 4 of 8) on both ranks, and both stopped there.
    stop = [json.loads((tmp_path / "reports" / f"ppo-stop.rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["global_step"], r["episode"]) for r in stop] == [(4, 128), (4, 128)]


def ppo_args(tiny_sft, tiny_reward, out) -> list[str]:
    """8 updates of 32 episodes (16 per process), a checkpoint every 2, the judge at updates 4 and 8."""
    args = tiny_ppo_args(tiny_sft, tiny_reward, out)
    return [*args, "--total_episodes", "256", "--save_steps", "2", "--save_total_limit", "2", "--judge_every", "4"]


def start(config, args, tmp_path, log):
    cmd = launch_command(config, ROOT / "recipes" / "ppo.py", *args)
    return subprocess.Popen(cmd, cwd=tmp_path, env=environment(), stdout=log, stderr=log, start_new_session=True)


def interrupt(config, args, tmp_path, signum) -> tuple[int, str]:
    """Run PPO and send `signum` to every process of the run (launcher and ranks, as a scheduler does; torch's launcher
    starts each rank in a session of its own, so the launcher's process group is not all of them) once a first
    checkpoint is complete; (the launcher's exit code, the log), once every process has ended."""
    import psutil

    out = Path(args[args.index("--output_dir") + 1])
    log_path = tmp_path / f"interrupted-{signum}.log"
    with open(log_path, "w") as log:
        proc = start(config, args, tmp_path, log)
        launcher = psutil.Process(proc.pid)
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            # trainer_state.json, written last (is_complete would also count this process's 1 against DeepSpeed's 2)
            if any((p / "trainer_state.json").is_file() for p in Path(checkpoints_dir(out)).glob("checkpoint-*")):
                ranks = launcher.children(recursive=True)
                for each in [launcher, *ranks]:
                    each.send_signal(signum)
                psutil.wait_procs(ranks, timeout=300)  # (not the launcher: its exit code is Popen's to collect)
                break
            time.sleep(0.05)
        code = proc.wait(timeout=300)
    return code, log_path.read_text()


def judged(folder) -> list[dict]:
    """The judge's history during training, without its clock."""
    history = json.loads((Path(folder) / "eval_results.json").read_text())["judged_during_training"]
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in history]


def run_to_end(config, args, tmp_path, name) -> str:
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "w") as log:
        assert start(config, args, tmp_path, log).wait(timeout=600) == 0, log_path.read_text()[-4000:]
    return log_path.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("config, signum", [("ddp", signal.SIGTERM), ("zero2", signal.SIGKILL)])
def test_an_interrupted_two_process_run_resumes_to_the_uninterrupted_result(
    config, signum, tiny_sft, tiny_reward, tmp_path
):
    reference = tmp_path / "reference"
    run_to_end(config, ppo_args(tiny_sft, tiny_reward, reference), tmp_path, "reference")
    out = tmp_path / "out"
    args = ppo_args(tiny_sft, tiny_reward, out)
    code, log = interrupt(config, args, tmp_path, signum)
    assert code != 0 and not out.exists(), log[-3000:]
    if signum == signal.SIGTERM:  # each rank saved and stopped at the same update: one line, no traceback
        assert "stopped by SIGTERM at step" in log and "Traceback" not in log, log[-3000:]
    log = run_to_end(config, args, tmp_path, "resumed")
    assert "resuming from" in log
    assert sha256_of(out) == sha256_of(reference), "the resumed run must end where the uninterrupted one ends"
    assert judged(out) == judged(reference)
    if config == "zero2":  # DeepSpeed's checkpoint (one optimizer shard per process) resumes on 2 processes only
        cmd = [sys.executable, str(ROOT / "recipes" / "ppo.py"), *args]
        done = subprocess.run(cmd, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-3000:]
        assert "DeepSpeed saved it on 2 processes, this run has 1 (relaunch with --num_processes 2)" in done.stderr


def test_unconnected_processes_are_refused(tmp_path):
    # Processes without a process group: `accelerate launch --multi_gpu` on a machine without GPUs, when the run does
    # not use accelerate's CPU backend (the recipes default to it without a GPU; `--use_cpu false` turns it off).
    from conftest import TINY_SFT

    cmd = [
        ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(free_port()), str(ROOT / "recipes" / "sft.py"),
        "--use_cpu", "false", *TINY_SFT, "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    out = subprocess.run(cmd, env=environment(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode != 0
    assert "2 processes were launched but they are not connected" in out.stderr
    assert "torchrun --nproc_per_node" in out.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written
