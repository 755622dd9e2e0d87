"""Benchmarks: SFT recipe vs a plain PyTorch loop, and the whole pipeline (`make all`) per seed.

    make bench                                         # both parts: SFT compare, then the pipeline for seeds 42 43 44
    make bench ARGS="--seeds 42 --skip-sft-compare"    # the pipeline only, one seed
    make bench ARGS="--readme README.md"               # also write the tables between the README's bench markers
    make bench ARGS="--report-only"                    # the tables again from outputs/bench/bench.json, nothing run
    make bench ARGS="--algorithms"                     # PPO vs GRPO vs RLOO instead: bench/algorithms.py (its flags)
    make bench ARGS="--rewards"                        # instead: the reward-hacking experiment (reward_hacking.py)
    python bench/bench.py --steps 100 --repeats 1 --skip-pipeline

SFT compare: both sides train the same model on the same pre-tokenized data with the same batch; only the training
loop differs. Seconds per 100 steps, median of the repeats, and the ratio recipe / plain. Compare ratios from one
run, not seconds across machines or runs.

Pipeline: for each seed S, the four stages of `make all` as subprocesses, as it runs them (SFT and reward side by
side, with half the cores each; then PPO, then eval), in a fresh folder `<output_dir>/seed<S>/` (deleted first: the
recipes resume from checkpoints in an existing folder), each stage's output in `<stage>.log` there. Per stage: wall
time and peak RSS (of the stage and its descendants); per seed: the total (the longer of SFT and reward, + PPO +
eval), PPO episodes and episodes/s (TRL's log), greedy exact match per prefix on the held-out test numbers after PPO,
whether the target is met and the time to it (the longer of SFT and reward, + PPO). `--sft-args` etc. append to a
stage's command, e.g. `--ppo-args "--total_episodes 1024"`. A failed stage skips that seed's later stages; the
script then exits 1.

Writes one markdown document (printed too) to `<output_dir>/bench.md` and the raw numbers to `bench.json`.
"""

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ppo_double.checks import NO_FLOORS
from ppo_double.cli import SIDE_BY_SIDE, pipeline_seconds
from ppo_double.data import sft_dataset
from ppo_double.modeling import build_policy, load_tokenizer
from ppo_double.task import PREFIXES

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("sft", "reward", "ppo", "eval")
# `make all` trains SFT and reward (SIDE_BY_SIDE) side by side, each with half the cores (the Makefile's HALF_CORES).
HALF_CORES = max(1, len(os.sched_getaffinity(0)) // 2)
# The targets, on the held-out test numbers after PPO, every prefix: greedy exact match, sampled (temperature 1) exact
# match, a sampled correct-double share no lower than the SFT's on the same prompts, and during PPO a greedy
# correct-double share on the validation numbers never below FLOOR_CORRECT.
TARGET_GREEDY, TARGET_SAMPLED, FLOOR_CORRECT = 0.995, 0.98, 0.97
README_START, README_END = README_MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")
LOG_TAIL_LINES = 20
MISSING = "—"
# What the Makefile passes `accelerate launch` without a config file (else it lists the defaults it assumed).
LAUNCH_ARGS = ("--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")


# --- SFT compare: the recipe against a plain PyTorch loop, in this process ---------------------------------------


def plain_loop(steps: int, batch: int, seed: int = 42) -> float:
    """The tutorial's loop (AdamW 1e-3 here, as the recipe), completion-only loss; returns seconds for `steps`."""
    torch.manual_seed(seed)
    tokenizer = load_tokenizer()
    rows = sft_dataset(tokenizer, steps * batch, seed=seed)
    model = build_policy()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    start = time.perf_counter()
    for step in range(steps):
        chunk = rows[step * batch : (step + 1) * batch]
        width = max(map(len, chunk["input_ids"]))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in chunk["input_ids"]])
        mask = torch.tensor([m + [0] * (width - len(m)) for m in chunk["completion_mask"]])
        labels = ids.masked_fill(mask == 0, -100)
        # the tutorial's loss, by hand: next-token cross-entropy over the completion (and no loss_type to look up)
        logits = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def recipe(steps: int, batch: int) -> float:
    """recipes/sft.py on its YAML defaults but `steps` steps; returns the trainer's own train_runtime.

    No checkpoints (the plain loop saves none), and the output folder inside the temporary folder, so that the
    recipe's `<output_dir>-checkpoints` folder goes away with it.
    """
    spec = importlib.util.spec_from_file_location("recipe_sft", ROOT / "recipes" / "sft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with tempfile.TemporaryDirectory() as out:
        trainer = module.main(
            [
                "--max_steps",
                str(steps),
                "--per_device_train_batch_size",
                str(batch),
                "--output_dir",
                str(Path(out) / "sft"),
                "--save_strategy",
                "no",
                "--eval_after_training",
                "false",
                "--disable_tqdm",
                "true",
                "--logging_steps",
                str(max(1, steps // 5)),
            ]
        )
    return next(e["train_runtime"] for e in reversed(trainer.state.log_history) if "train_runtime" in e)


def sft_compare(steps: int, batch: int, repeats: int) -> tuple[str, dict]:
    """Run both loops `repeats` times, interleaved; returns (markdown table, raw numbers for bench.json)."""
    seconds = {"plain PyTorch loop": [], "recipes/sft.py (SFTTrainer)": []}
    for _ in range(repeats):  # interleaved, so that machine noise hits both sides alike
        seconds["plain PyTorch loop"].append(plain_loop(steps, batch))
        seconds["recipes/sft.py (SFTTrainer)"].append(recipe(steps, batch))
    per_100 = {name: 100 * statistics.median(values) / steps for name, values in seconds.items()}
    return sft_table(per_100, steps, batch, repeats), {"seconds": seconds, "seconds_per_100_steps": per_100}


def sft_table(per_100: dict[str, float], steps: int, batch: int, repeats: int) -> str:
    plain = per_100["plain PyTorch loop"]
    lines = [
        f"SFT, {steps} steps x batch {batch}, median of {repeats}, torch threads {torch.get_num_threads()}",
        "",
        "| loop | s / 100 steps | ratio to plain loop |",
        "|---|---|---|",
        *(f"| {name} | {value:.2f} | {value / plain:.2f}x |" for name, value in per_100.items()),
    ]
    return "\n".join(lines)


# --- Pipeline: the four stages of `make all` as subprocesses, per seed -------------------------------------------


def stage_commands(
    seed: int,
    run_dir: Path,
    extra: dict[str, list[str]],
    folders: dict[str, Path] | None = None,
    measure: bool = False,
):
    """The command of each stage, as the Makefile runs it, with outputs under `run_dir` and `extra` args appended.

    `folders` puts a stage's output folder (`sft`, `reward`, `ppo`, `eval`: the eval json) elsewhere (bench/sweep.py
    caches stages that several variants share). `measure`: each stage's floors off (NO_FLOORS), so that a weak result
    is saved and measured rather than refused.
    """
    python, accelerate = sys.executable, str(Path(sys.executable).parent / "accelerate")
    paths = {
        "sft": run_dir / "sft",
        "reward": run_dir / "reward",
        "ppo": run_dir / "ppo",
        "eval": run_dir / "eval.json",
    }
    s, sft, reward, ppo, eval_json = str(seed), *(str(path) for path in {**paths, **(folders or {})}.values())
    commands = {
        "sft": [python, "recipes/sft.py", "--seed", s, "--data_seed", s, "--output_dir", sft],
        "reward": [python, "recipes/reward.py", "--seed", s, "--data_seed", s, "--output_dir", reward],
        "ppo": [accelerate, "launch", *LAUNCH_ARGS, "recipes/ppo.py", "--seed", s, "--sft_model_path", sft]
        + ["--reward_model_path", reward, "--output_dir", ppo],
        "eval": [python, "recipes/evaluate.py", "--model", ppo, "--baseline", sft, "--output_json", eval_json],
    }
    if measure:
        for stage in ("sft", "reward"):
            commands[stage] += NO_FLOORS[stage]
        commands["ppo"] += NO_FLOORS["rl"]
    return {stage: command + extra.get(stage, []) for stage, command in commands.items()}


def run_stage(command: list[str], log_path: Path, env: dict | None = None) -> dict:
    """Run `command` from the repo root, output to `log_path`; returns exit code, wall seconds and peak RSS (GiB).

    The peak RSS is `ru_maxrss` of `wait4` on the child: the largest of the child and its waited-for descendants
    (e.g. the python that `accelerate launch` starts), in KiB on Linux.
    """
    with open(log_path, "w", encoding="utf-8") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    return {
        "command": command,
        "log": str(log_path),
        "returncode": process.returncode,
        "wall_s": wall,
        "peak_rss_gib": usage.ru_maxrss / 1024**2,
    }


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file."""
    return "\n".join(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def ppo_progress(trainer_state: Path) -> tuple[int | None, float | None]:
    """(episodes trained, episodes/s): the last `episode` and `eps` values TRL logged in trainer_state.json."""
    history = json.loads(Path(trainer_state).read_text(encoding="utf-8"))["log_history"]
    episodes = [entry["episode"] for entry in history if "episode" in entry]
    eps = [entry["eps"] for entry in history if "eps" in entry]
    return (episodes[-1] if episodes else None), (eps[-1] if eps else None)


def judged(ppo_dir: Path, eval_json: Path) -> dict:
    """What the rule-based judge says of a PPO run.

    From the PPO recipe's eval_results.json (test numbers, prefixed prompts): greedy and sampled exact match per
    prefix, and the lowest greedy correct-double share of the judgements during training (validation numbers). The
    sampled correct-double shares of the SFT and of the PPO policy come from the eval stage's json, when there is
    one: it samples both with one seed on the same prompts, a paired comparison (the PPO recipe samples with the
    run's seed); without it, the PPO policy's from eval_results.json and no SFT share.
    """
    results = json.loads(Path(ppo_dir / "eval_results.json").read_text(encoding="utf-8"))
    history = results.get("judged_during_training", [])
    before_after = eval_stage(eval_json)
    return {
        "greedy_exact_match": {p: results["greedy"][p]["exact_match"] for p in PREFIXES},
        "sampled_exact_match": {p: results["sampled"][p]["exact_match"] for p in PREFIXES},
        "sampled_correct": sampled_correct(before_after[1] if before_after else results),
        "sft_sampled_correct": sampled_correct(before_after[0]) if before_after else None,
        "min_greedy_correct": min((entry["eval/correct"] for entry in history), default=None),
        "prefix_onset_episode": prefix_onset(history),
    }


ONSET = 0.9  # the prefixes have separated once every prefix's greedy exact match is at least this


def prefix_onset(history: list[dict]) -> int | None:
    """The first judged episode at which every prefix held ONSET greedy exact match (None: never)."""
    held = (h["episode"] for h in history if all(h.get(f"eval/exact_match/{p}", 0) >= ONSET for p in PREFIXES))
    return next(held, None)


def sampled_correct(results: dict) -> float:
    """Sampled correct-double share over the prefixed prompts, each prefix weighing the same."""
    return statistics.fmean(results["sampled"][p]["correct"] for p in PREFIXES)


def eval_stage(eval_json: Path) -> tuple[dict, dict] | None:
    """The (baseline, model) results in recipes/evaluate.py's json, the baseline written first (None: no file)."""
    if not Path(eval_json).is_file():
        return None
    baseline, model = json.loads(Path(eval_json).read_text(encoding="utf-8")).values()
    return baseline, model


def targets_met(numbers: dict) -> bool:
    """Every target (see TARGET_GREEDY) met by the numbers of `judged`."""
    sft, floor = numbers["sft_sampled_correct"], numbers["min_greedy_correct"]
    return (
        min(numbers["greedy_exact_match"].values()) >= TARGET_GREEDY
        and min(numbers["sampled_exact_match"].values()) >= TARGET_SAMPLED
        and sft is not None
        and numbers["sampled_correct"] >= sft
        and floor is not None
        and floor >= FLOOR_CORRECT
    )


JUDGED = ("greedy_exact_match", "sampled_exact_match", "sampled_correct", "sft_sampled_correct", "min_greedy_correct")
JUDGED += ("prefix_onset_episode",)


def seed_outcome(stages: dict[str, dict], run_dir: Path, one_by_one: bool = False) -> dict:
    """Per-seed summary of the stages run; the judged numbers come from `run_dir` once the PPO stage has succeeded.
    Wall times add up as `make all` runs the stages, or one after another (`one_by_one`)."""
    total = (lambda seconds: sum(seconds.values())) if one_by_one else pipeline_seconds
    failed = next((name for name, stage in stages.items() if stage["returncode"] != 0), None)
    outcome = {"failed_stage": failed, "total_s": None, "ppo_episodes": None, "ppo_episodes_per_s": None}
    outcome.update(dict.fromkeys(JUDGED), target_met=None, time_to_target_s=None)
    outcome["reward_invalid"] = reward_invalid(run_dir / "reward")
    if failed is None and len(stages) == len(STAGES):
        outcome["total_s"] = total({name: stage["wall_s"] for name, stage in stages.items()})
    if stages.get("ppo", {}).get("returncode") != 0:
        return outcome
    try:
        episodes, eps = ppo_progress(run_dir / "ppo" / "trainer_state.json")
        numbers = judged(run_dir / "ppo", run_dir / "eval.json")
    except (OSError, KeyError, ValueError) as error:  # the stage succeeded but did not write what we read
        print(f"cannot read the PPO results in {run_dir / 'ppo'}: {error!r}", flush=True)
        return {**outcome, "failed_stage": "ppo results", "error": repr(error)}
    outcome.update(numbers, ppo_episodes=episodes, ppo_episodes_per_s=eps, target_met=targets_met(numbers))
    if outcome["target_met"]:
        outcome["time_to_target_s"] = total({name: stages[name]["wall_s"] for name in ("sft", "reward", "ppo")})
    return outcome


def reward_invalid(reward_dir: Path) -> float | None:
    """The reward classifier's held-out share of invalid answers caught (None: no final folder)."""
    path = Path(reward_dir) / "eval_results.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("accuracy/invalid")


def success_rate(results: list[dict]) -> str:
    """`k of n seeds (95 % Wilson interval a-b %)`: scipy's binomtest gives the interval."""
    from scipy.stats import binomtest

    met, n = sum(bool(r["target_met"]) for r in results), len(results)
    interval = binomtest(met, n).proportion_ci(confidence_level=0.95, method="wilson")
    return f"{met} of {n} seeds (95 % Wilson interval {100 * interval.low:.0f}–{100 * interval.high:.0f} %)"


def run_seed(seed: int, run_dir: Path, extra: dict[str, list[str]], one_by_one: bool = False) -> dict:
    """All four stages for one seed in a fresh `run_dir`; stops at the first failed stage (its log tail printed).

    `one_by_one`: the stages one after another with the default threads, as `make sft`, `make reward`, `make ppo`
    and `make eval` run them, instead of `make all`'s side by side.
    """
    run_dir = run_dir.resolve()
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    commands, stages = stage_commands(seed, run_dir, extra), {}
    half = {**os.environ, "OMP_NUM_THREADS": str(HALF_CORES)}
    steps = [SIDE_BY_SIDE, *((name,) for name in STAGES if name not in SIDE_BY_SIDE)]
    if one_by_one:
        steps = [(name,) for name in STAGES]
    for names in steps:
        for name in names:
            print(f"seed {seed}: {name}: {shlex.join(commands[name])}", flush=True)
        env = half if len(names) > 1 else None
        with ThreadPoolExecutor(len(names)) as pool:
            ran = pool.map(lambda name, env=env: run_stage(commands[name], run_dir / f"{name}.log", env=env), names)
            stages.update(zip(names, ran))
        for name in names:
            stage = stages[name]
            summary = f"exit {stage['returncode']}, {stage['wall_s']:.1f} s, peak RSS {stage['peak_rss_gib']:.2f} GiB"
            print(f"seed {seed}: {name}: {summary}", flush=True)
            if stage["returncode"] != 0:
                print(
                    f"seed {seed}: {name} failed; last lines of {stage['log']}:\n{log_tail(stage['log'])}", flush=True
                )
        if any(stages[name]["returncode"] != 0 for name in names):
            break
    outcome = seed_outcome(stages, run_dir, one_by_one)
    return {"seed": seed, "run_dir": str(run_dir), "one_by_one": one_by_one, "stages": stages, **outcome}


# --- Pipeline table -------------------------------------------------------------------------------------------------


def fmt(value, spec: str = ".1f") -> str:
    """`value` formatted with `spec`, or a dash when there is none."""
    return MISSING if value is None else format(value, spec)


def median(values) -> float | None:
    """Median of the values that are not None; None when there are none."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def stage_cells(stages: dict[str, dict], key: str, spec: str) -> list[str]:
    """One cell per stage: `key` formatted, `failed (…)` for a failed stage, a dash for a stage not run."""
    cells = []
    for name in STAGES:
        stage = stages.get(name)
        if stage is None:
            cells.append(MISSING)
        elif stage["returncode"] != 0:
            cells.append(f"failed ({format(stage[key], spec)})")
        else:
            cells.append(format(stage[key], spec))
    return cells


def prefix_cell(values: dict[str, float] | None) -> str:
    """A share per prefix as `100.0% / 99.8% / 100.0%` (a dash when any is missing)."""
    return MISSING if values is None or None in values.values() else " / ".join(pct(values[p]) for p in PREFIXES)


def pct(value: float | None, digits: int = 1) -> str:
    return MISSING if value is None else f"{100 * value:.{digits}f}%"


def target_cell(result: dict) -> str:
    """yes / no, or which stage failed."""
    if result["failed_stage"] is not None:
        return f"failed: {result['failed_stage']}"
    return MISSING if result["target_met"] is None else ("yes" if result["target_met"] else "no")


def row(cells: list[str]) -> str:
    """A markdown table row."""
    return "| " + " | ".join(cells) + " |"


def seed_row(result: dict) -> str:
    """The table row of one seed."""
    walls = stage_cells(result["stages"], "wall_s", ".1f")
    rss = stage_cells(result["stages"], "peak_rss_gib", ".2f")
    return row(
        [
            str(result["seed"]),
            *walls,
            fmt(result["total_s"]),
            fmt(result["ppo_episodes"], ".0f"),
            fmt(result.get("prefix_onset_episode"), ".0f"),
            fmt(result["ppo_episodes_per_s"], ".0f"),
            prefix_cell(result["greedy_exact_match"]),
            prefix_cell(result["sampled_exact_match"]),
            f"{pct(result['sft_sampled_correct'])} → {pct(result['sampled_correct'])}",
            pct(result["min_greedy_correct"]),
            target_cell(result),
            fmt(result["time_to_target_s"]),
            " / ".join(rss),
            pct(result.get("reward_invalid"), 2),
        ]
    )


def successful(results: list[dict], stage: str, key: str) -> list[float]:
    """`key` of `stage` over the seeds where that stage ran and succeeded."""
    stages = [r["stages"].get(stage) for r in results]
    return [s[key] for s in stages if s is not None and s["returncode"] == 0]


def median_summary(results: list[dict]) -> dict:
    """Medians over seeds, each over the seeds that have the number (a failed stage has none)."""
    return {
        "wall_s": {stage: median(successful(results, stage, "wall_s")) for stage in STAGES},
        "peak_rss_gib": {stage: median(successful(results, stage, "peak_rss_gib")) for stage in STAGES},
        "total_s": median(r["total_s"] for r in results),
        "ppo_episodes": median(r["ppo_episodes"] for r in results),
        "prefix_onset_episode": median(r.get("prefix_onset_episode") for r in results),
        "ppo_episodes_per_s": median(r["ppo_episodes_per_s"] for r in results),
        **{
            key: {p: median(r[key][p] if r[key] else None for r in results) for p in PREFIXES}
            for key in ("greedy_exact_match", "sampled_exact_match")
        },
        **{key: median(r[key] for r in results) for key in ("sampled_correct", "sft_sampled_correct")},
        "min_greedy_correct": min(
            (r["min_greedy_correct"] for r in results if r["min_greedy_correct"] is not None), default=None
        ),
        "seeds_target_met": sum(bool(r["target_met"]) for r in results),
        "seeds": len(results),
        "time_to_target_s": median(r["time_to_target_s"] for r in results),
        "reward_invalid": median(r.get("reward_invalid") for r in results),
    }


def median_row(summary: dict) -> str:
    """The table's last row, from `median_summary`."""
    return row(
        [
            "median",
            *(fmt(summary["wall_s"][stage]) for stage in STAGES),
            fmt(summary["total_s"]),
            fmt(summary["ppo_episodes"], ".0f"),
            fmt(summary["prefix_onset_episode"], ".0f"),
            fmt(summary["ppo_episodes_per_s"], ".0f"),
            prefix_cell(summary["greedy_exact_match"]),
            prefix_cell(summary["sampled_exact_match"]),
            f"{pct(summary['sft_sampled_correct'])} → {pct(summary['sampled_correct'])}",
            pct(summary["min_greedy_correct"]),
            f"{summary['seeds_target_met']}/{summary['seeds']}",
            fmt(summary["time_to_target_s"]),
            " / ".join(fmt(summary["peak_rss_gib"][stage], ".2f") for stage in STAGES),
            pct(summary["reward_invalid"], 2),
        ]
    )


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def pipeline_table(results: list[dict], extra: dict[str, list[str]], host: dict, plain: float | None = None) -> str:
    """Markdown: a heading line, one row per seed and a median row, the success rate, the machine line. `plain`:
    the plain PyTorch loop's seconds per 100 SFT steps measured in the same bench, the unit of machine speed."""
    seeds = ", ".join(str(r["seed"]) for r in results)
    extras = "; ".join(f"{stage} `{shlex.join(args)}`" for stage, args in extra.items() if args)
    header = [
        "seed",
        *(f"{name} s" for name in ("SFT", "reward", "PPO", "eval")),
        "total s",
        "PPO episodes",
        f"PPO episodes to {100 * ONSET:g} % greedy exact, every prefix",
        "PPO episodes/s",
        f"greedy exact {' / '.join(PREFIXES)}",
        f"sampled exact {' / '.join(PREFIXES)}",
        "sampled correct SFT → PPO",
        "lowest greedy correct during PPO",
        "targets met",
        "time to target s",
        "peak RSS GiB (sft / reward / ppo / eval)",
        "reward: invalid caught",
    ]
    shape = f"`make all`: sft and reward side by side ({HALF_CORES} thread(s) each) → ppo → eval"
    adding = "Total = the longer of SFT and reward + PPO + eval; time to target = the longer of SFT and reward + PPO."
    if host.get("one_by_one"):
        shape = "`make sft`, `make reward`, `make ppo`, `make eval` one after another, default threads"
        adding = "Total = SFT + reward + PPO + eval; time to target = SFT + reward + PPO."
    summary = median_summary(results)
    speed = ""
    if plain and summary["total_s"]:
        speed = (
            f" Median total {summary['total_s']:.0f} s = **{summary['total_s'] / plain:.0f} plain-loop units** (the"
            f" plain PyTorch loop took {plain:.2f} s per 100 SFT steps in this bench)."
        )
    lines = [
        f"Pipeline ({shape}, fresh output folder), seeds {seeds}"
        + (f", extra args: {extras}" if extras else ", recipe defaults")
        + f". Targets, for every prefix on the held-out test numbers: greedy exact match ≥ {100 * TARGET_GREEDY:g}%,"
        f" sampled (temperature 1) exact match ≥ {100 * TARGET_SAMPLED:g}%, the sampled correct-double share no lower"
        " than the SFT's on the same prompts, and the greedy correct-double share on the validation numbers never"
        f" below {100 * FLOOR_CORRECT:g}% while PPO trains. {adding} Medians over the seeds that have the number; the"
        " lowest correct share is the lowest over the seeds.",
        "",
        row(header),
        row(["---"] * len(header)),
        *(seed_row(r) for r in results),
        median_row(summary),
        "",
        f"**Every target met on {success_rate(results)}**.{speed}",
        "",
        f"Machine: {host['cpu_count']} CPU cores (os.cpu_count()), torch {host['torch']} with "
        f"{host['torch_threads']} threads, {host['platform']}.",
    ]
    return "\n".join(lines)


# --- README ---------------------------------------------------------------------------------------------------------


def marker_lines(lines: list[str], markers: tuple[str, str] = README_MARKERS) -> tuple[int, int]:
    """Indices of the start and end marker lines; ValueError when missing, repeated or out of order."""
    starts = [i for i, line in enumerate(lines) if line.strip() == markers[0]]
    ends = [i for i, line in enumerate(lines) if line.strip() == markers[1]]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise ValueError(
            f"expected one line {markers[0]!r} followed by one line {markers[1]!r}; found {len(starts)} start "
            f"and {len(ends)} end markers"
        )
    return starts[0], ends[0]


def replace_between_markers(text: str, block: str, markers: tuple[str, str] = README_MARKERS) -> str:
    """`text` with everything between the marker lines replaced by `block` (blank lines around it)."""
    lines = text.splitlines()
    start, end = marker_lines(lines, markers)
    new = [*lines[: start + 1], "", *block.strip("\n").splitlines(), "", *lines[end:]]
    return "\n".join(new) + ("\n" if text.endswith("\n") else "")


def check_readme(path: Path, markers: tuple[str, str] = README_MARKERS) -> None:
    """Fail early, before any measurement, when `path` lacks the markers."""
    try:
        marker_lines(Path(path).read_text(encoding="utf-8").splitlines(), markers)
    except ValueError as error:
        raise SystemExit(f"{path}: {error}") from None


def update_readme(path: Path, block: str, markers: tuple[str, str] = README_MARKERS) -> None:
    """Write `block` between the markers of the README at `path`."""
    path = Path(path)
    path.write_text(replace_between_markers(path.read_text(encoding="utf-8"), block, markers), encoding="utf-8")


# --- main -----------------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="SFT compare: steps per run")
    parser.add_argument("--batch", type=int, default=64, help="SFT compare: batch size")
    parser.add_argument("--repeats", type=int, default=3, help="SFT compare: runs per side")
    parser.add_argument("--output_dir", default="outputs/bench")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44], help="pipeline: one run per seed")
    parser.add_argument("--skip-sft-compare", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument(
        "--one-by-one",
        action="store_true",
        help="pipeline: the stages one after another with the default threads (make sft, reward, ppo, eval)",
    )
    for stage in STAGES:
        parser.add_argument(f"--{stage}-args", default="", help=f"pipeline: extra arguments for the {stage} stage")
    parser.add_argument("--readme", help="also write the tables between the bench markers of this file")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: tabulate again what <output_dir>/bench.json holds (after a change to how runs are read)",
    )
    args = parser.parse_args(argv)
    if args.skip_sft_compare and args.skip_pipeline:
        parser.error("--skip-sft-compare and --skip-pipeline: nothing to do")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--algorithms" in argv:  # PPO vs GRPO vs RLOO: its own experiment, in bench/algorithms.py
        import algorithms

        return algorithms.main([a for a in argv if a != "--algorithms"])
    if "--rewards" in argv:  # the three rewards against each other: its own experiment, in bench/reward_hacking.py
        import reward_hacking

        return reward_hacking.main([a for a in argv if a != "--rewards"])
    args = parse_args(argv)
    if args.readme:
        check_readme(args.readme)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections, results, failed = [], {"args": vars(args)}, False
    if args.report_only:
        return report(out, args.readme)

    if not args.skip_sft_compare:
        table, raw = sft_compare(args.steps, args.batch, args.repeats)
        sections.append(table)
        results.update(raw)

    if not args.skip_pipeline:
        extra = {stage: shlex.split(getattr(args, f"{stage}_args")) for stage in STAGES}
        host = machine()
        seeds = [run_seed(seed, out / f"seed{seed}", extra, args.one_by_one) for seed in args.seeds]
        host["one_by_one"] = args.one_by_one
        plain = results.get("seconds_per_100_steps", {}).get("plain PyTorch loop")
        sections.append(pipeline_table(seeds, extra, host, plain))
        results["pipeline"] = {
            "targets": {"greedy": TARGET_GREEDY, "sampled": TARGET_SAMPLED, "floor_correct": FLOOR_CORRECT},
            "extra_args": extra,
            "machine": host,
            "seeds": seeds,
            "median": median_summary(seeds),
        }
        failed = any(r["failed_stage"] is not None for r in seeds)

    document = "\n\n".join(sections)
    print(document)
    (out / "bench.md").write_text(document + "\n", encoding="utf-8")
    (out / "bench.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    if args.readme and failed:
        print(f"{args.readme} not updated: a stage failed (see the table)", file=sys.stderr)
    elif args.readme:
        update_readme(args.readme, document)
        print(f"wrote the tables into {args.readme}")
    return 1 if failed else 0


def report(out: Path, readme: str | None) -> int:
    """The tables again from `out`/bench.json and the run folders it names, nothing run."""
    results = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    sections, args = [], results["args"]
    if "seconds_per_100_steps" in results:
        sections.append(sft_table(results["seconds_per_100_steps"], args["steps"], args["batch"], args["repeats"]))
    if "pipeline" in results:
        pipeline = results["pipeline"]
        # the run folders where the bench writes them, so that a moved output_dir still reads its own runs
        seeds = [
            {**r, **seed_outcome(r["stages"], out / f"seed{r['seed']}", r.get("one_by_one", False))}
            for r in pipeline["seeds"]
        ]
        pipeline.update(seeds=seeds, median=median_summary(seeds))
        plain = results.get("seconds_per_100_steps", {}).get("plain PyTorch loop")
        sections.append(pipeline_table(seeds, pipeline["extra_args"], pipeline["machine"], plain))
    document = "\n\n".join(sections)
    print(document)
    (out / "bench.md").write_text(document + "\n", encoding="utf-8")
    (out / "bench.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    if readme:
        update_readme(readme, document)
        print(f"wrote the tables into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
