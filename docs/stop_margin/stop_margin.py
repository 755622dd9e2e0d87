"""How much better than the SFT's must PPO's sampled correct share be before the judge stops a run?
(`target_correct_margin`; the record behind its default, README "PPO".)

1. `--run`: for each seed, PPO from `make all`'s SFT and reward folders of that seed (`<bench>/seed<S>/sft`,
   `.../reward`, as `make bench` leaves them) with no early stop, a checkpoint every 4 updates (the judge's cadence),
   one torch thread, two seeds side by side.
2. Each margin's stop rule applied to the judge's log of those runs (validation numbers, as the recipe does: runs are
   deterministic, and with margin 0 this gives the very stops of `make bench`), then the stopped checkpoint judged on
   the held-out test numbers against the SFT (recipes/evaluate.py, a paired comparison), as `make eval` does.

    python docs/stop_margin/stop_margin.py --bench outputs/bench10 --runs outputs/stop_margin --run
    python docs/stop_margin/stop_margin.py --bench outputs/bench10 --runs outputs/stop_margin   # table only

Writes docs/stop_margin/stop_margin.md (and .json). Heavy: run it alone (../shared/tools/one-at-a-time).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ppo_double.callbacks import first_stop, holds_target

ROOT = Path(__file__).resolve().parents[2]
PREFIXES = ("数字", "小写", "大写")
MARGINS = (0.0, 0.0005, 0.001, 0.0015, 0.002, 0.003)
TARGET, SAMPLED_TARGET, PATIENCE, EVERY, BATCH = 0.995, 0.985, 2, 4, 128  # recipes/configs/ppo.yaml
BIN = Path(sys.executable).parent
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_ppo(seed: int, bench: Path, runs: Path) -> None:
    src, out = bench / f"seed{seed}", runs / f"seed{seed}"
    command = [str(BIN / "accelerate"), "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision",
               "no", "--dynamo_backend", "no", "recipes/ppo.py", "--seed", str(seed), "--sft_model_path",
               str(src / "sft"), "--reward_model_path", str(src / "reward"), "--output_dir", str(out),
               "--target_exact_match", "null", "--save_steps", str(EVERY), "--save_total_limit", "64",
               "--min_exact_match", "0", "--min_sampled_exact_match", "0"]  # fmt: skip
    with open(f"{out}.log", "w") as log:
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=ONE_THREAD, check=True)


def judgements(seed: int, runs: Path) -> list[dict]:
    history = json.loads((runs / f"seed{seed}" / "trainer_state.json").read_text())["log_history"]
    return [entry for entry in history if "eval/sampled_correct" in entry]


def stop_step(history: list[dict], margin: float) -> int:
    """The update the recipe's stop rule stops at, or the last one."""

    def holds(entry: dict) -> bool:
        return holds_target(entry, history[0], TARGET, SAMPLED_TARGET, keep_correct=True, margin=margin)

    return (first_stop(history, PATIENCE, holds) or history[-1])["step"]


def test_numbers(seed: int, step: int, bench: Path, runs: Path) -> dict:
    """The paired test-number comparison of the SFT and the checkpoint at `step` (cached next to the checkpoint)."""
    out = runs / f"seed{seed}-checkpoints" / f"checkpoint-{step}.eval.json"
    if not out.is_file():
        command = [sys.executable, "recipes/evaluate.py", "--model", str(out.with_suffix("").with_suffix("")),
                   "--baseline", str(bench / f"seed{seed}" / "sft"), "--output_json", str(out)]  # fmt: skip
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ONE_THREAD,
                       check=True)  # fmt: skip
    sft, ppo = json.loads(out.read_text()).values()
    correct = {name: statistics.fmean(r["sampled"][p]["correct"] for p in PREFIXES) for name, r in (("sft", sft),
               ("ppo", ppo))}  # fmt: skip
    return {
        "episodes": step * BATCH,
        "correct_change": correct["ppo"] - correct["sft"],
        "greedy": min(ppo["greedy"][p]["exact_match"] for p in PREFIXES),
        "sampled": min(ppo["sampled"][p]["exact_match"] for p in PREFIXES),
    }


def met(result: dict) -> bool:
    return (
        result["correct_change"] >= 0
        and result["greedy"] >= 0.995
        and result["sampled"] >= 0.98
        and result["min_greedy_correct"] >= 0.97
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=Path("outputs/bench10"))
    parser.add_argument("--runs", type=Path, default=Path("outputs/stop_margin"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(42, 52)))
    parser.add_argument("--run", action="store_true", help="train the no-stop PPO runs first")
    args = parser.parse_args()
    args.bench, args.runs = args.bench.resolve(), args.runs.resolve()  # the commands run from the repo root
    args.runs.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(2) as pool:
        if args.run:
            list(pool.map(lambda seed: run_ppo(seed, args.bench, args.runs), args.seeds))
        stops = {(seed, m): stop_step(judgements(seed, args.runs), m) for seed in args.seeds for m in MARGINS}
        jobs = sorted(set(stops.items()), key=lambda item: item[1])
        found = dict(zip([key for key, _ in jobs], pool.map(
            lambda item: test_numbers(item[0][0], item[1], args.bench, args.runs), jobs)))  # fmt: skip
    for (seed, m), step in stops.items():  # the greedy correct share the judge saw while PPO trained, up to the stop
        seen = [entry["eval/correct"] for entry in judgements(seed, args.runs) if entry["step"] <= step]
        found[(seed, m)] = {**found[(seed, m)], "min_greedy_correct": min(seen)}
    lines = [
        "| margin (points) | seeds meeting every target | median PPO episodes | sampled correct change, PPO − SFT "
        "(points), mean [min, max] | per seed: episodes (change) |",
        "| --- | --- | --- | --- | --- |",
    ]
    record = []
    for m in MARGINS:
        results = [found[(seed, m)] for seed in args.seeds]
        changes = [100 * r["correct_change"] for r in results]
        cells = " ".join(
            f"{seed}: {r['episodes']} ({100 * r['correct_change']:+.2f}{'' if met(r) else ', missed'})"
            for seed, r in zip(args.seeds, results)
        )
        lines.append(
            f"| {100 * m:.2f} | {sum(map(met, results))}/{len(results)} | "
            f"{statistics.median(r['episodes'] for r in results):.0f} | "
            f"{statistics.fmean(changes):+.2f} [{min(changes):+.2f}, {max(changes):+.2f}] | {cells} |"
        )
        record += [{"margin": m, "seed": seed, **r} for seed, r in zip(args.seeds, results)]
    table = "\n".join(lines)
    print(table)
    table = (
        "# The stop rule's correct-share margin (`target_correct_margin`)\n\n"
        f"Written by `python docs/stop_margin/stop_margin.py` (its docstring says how). Seeds {args.seeds[0]}–"
        f"{args.seeds[-1]}: PPO from each seed's `make all` SFT and reward, the recipe's stop rule with each margin "
        "applied to one no-stop run per seed, the stopped policy judged on the held-out test numbers against its SFT "
        "(every target: greedy ≥ 99.5 % and sampled ≥ 98 % exact match per prefix, the sampled correct-double share "
        "no lower than the SFT's, the greedy correct-double share on the validation numbers never below 97 % while "
        "PPO trained). A run whose rule never held stops at the 16 384-episode budget.\n\n" + table
    )
    here = Path(__file__).parent
    (here / "stop_margin.md").write_text(table + "\n", encoding="utf-8")
    (here / "stop_margin.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
