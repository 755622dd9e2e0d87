"""Run tiny stages one after another in this launch (`accelerate launch ... distributed_driver.py WORKDIR STAGE...`),
each into WORKDIR/<stage>, and write what this rank saw to WORKDIR/reports/<stage>.rank<N>.json (test_distributed).

One launch for every stage: starting 2 processes with torch and DeepSpeed costs more than a tiny stage. A stage is
sft, reward (trained first: the RL stages start from them), ppo, grpo or rloo, with `-lora` for LoRA, or `ppo-stop`:
PPO with a stop target that holds at once.
"""

import hashlib
import json
import sys
import time
from pathlib import Path

import torch
from test_online import tiny_group_args
from test_ppo import tiny_ppo_args

from conftest import TINY_REWARD, TINY_SFT, load_recipe
from ppo_double.distributed import gathered_model, new_accelerator_state, policy_of


def stage_args(stage: str, work: Path) -> list[str]:
    name = stage.split("-")[0]
    out = work / stage
    if name == "sft":
        return [*TINY_SFT, "--output_dir", str(out)]
    if name == "reward":
        return [*TINY_REWARD, "--output_dir", str(out)]
    rl = tiny_ppo_args if name == "ppo" else tiny_group_args
    args = rl(work / "sft", work / "reward", out)
    if name != "ppo":
        args += ["--per_device_train_batch_size", "8"]  # 8 completions per process: 2 prompts x num_generations 4
    if stage.endswith("-lora"):
        args += ["--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8"]
    if stage.endswith("-stop"):  # holds at every judgement: stops at the second (judge_every 2, patience 2)
        args += ["--total_episodes", "256", "--target_keep_correct", "false"]
        args += ["--target_exact_match", "0", "--target_sampled_exact_match", "0"]
    return args


def sha256(model) -> str | None:
    if model is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def report(trainer) -> dict:
    judge = next((cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == "JudgeCallback"), None)
    return {
        "rank": trainer.accelerator.process_index,
        "world_size": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "is_main_process": trainer.accelerator.is_main_process,
        "global_step": trainer.state.global_step,
        "episode": getattr(trainer.state, "episode", None),
        # this rank's own copy (a replica under DDP, a shard under ZeRO-3), and the whole trained policy (main only)
        "replica_sha256": sha256(policy_of(trainer.accelerator.unwrap_model(trainer.model))),
        "gathered_sha256": sha256(gathered_model(trainer)),
        "stopped": None if judge is None else judge.stopped,
        "judged": None if judge is None else [{k: v for k, v in j.items() if k != "seconds"} for j in judge.history],
    }


work, stages = Path(sys.argv[1]), sys.argv[2:]
(work / "reports").mkdir(parents=True, exist_ok=True)
for stage in stages:
    start = time.perf_counter()
    trainer = load_recipe(stage.split("-")[0]).main(stage_args(stage, work))
    seen = report(trainer) | {"seconds": time.perf_counter() - start}  # where a launch's time goes (not asserted)
    with open(work / "reports" / f"{stage}.rank{seen['rank']}.json", "w") as f:
        json.dump(seen, f, ensure_ascii=False)
    new_accelerator_state()  # the next stage's Trainer sets up DeepSpeed again
