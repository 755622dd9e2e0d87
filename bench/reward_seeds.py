"""Does the reward stage learn on every seed and thread count? `recipes/reward.py` on its defaults, per seed and torch
thread count, and its held-out accuracy against the recipe's floors.

    python bench/reward_seeds.py                          # seeds 42-51 at 1 and 2 threads -> docs/reward_seeds.md
    python bench/reward_seeds.py --threads 1 --jobs 2     # two single-thread runs side by side
    python bench/reward_seeds.py --report-only            # the table again from the stored json
    python bench/reward_seeds.py --reward-args "--detect_steps 1000" --output_dir outputs/reward_seeds-short

Runs with one thread go `--jobs` at a time (one core each); runs with more threads go one at a time. Each run writes
its classifier to `<output_dir>/t<T>/seed<S>` with the floors off (`--min_... 0`), so a weak run is measured rather
than refused; the table then says which floor it misses. The table goes to `--table` (committed:
docs/reward_seeds.md) and stdout, the raw numbers beside it (docs/reward_seeds.json); a run whose folder holds its
results is not run again.
"""

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "recipes"))
from reward import RewardScriptArguments  # noqa: E402  (the floors' defaults, from the recipe itself)

FLOORS = {f.name: f.default for f in dataclasses.fields(RewardScriptArguments) if f.name.startswith("min_")}
NO_FLOORS = [item for name in FLOORS for item in (f"--{name}", "0")]


def run(seed: int, threads: int, out: Path, extra: list[str]) -> dict:
    folder = out / f"t{threads}" / f"seed{seed}"
    metrics = folder / "eval_results.json"
    if not metrics.is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "recipes/reward.py", "--seed", str(seed), "--data_seed", str(seed)]
        command += ["--output_dir", str(folder), "--disable_tqdm", "true", "--resume_from_checkpoint", "false"]
        command += [*NO_FLOORS, *extra]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        with open(folder.parent / f"seed{seed}.log", "w", encoding="utf-8") as log:
            code = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        print(f"threads {threads} seed {seed}: exit {code}, {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            return {"seed": seed, "threads": threads, "failed": True}
    saved = {k.removeprefix("eval_"): v for k, v in json.loads(metrics.read_text()).items()}
    accuracy = {k.removeprefix("accuracy/"): v for k, v in saved.items() if k.startswith("accuracy/")}
    learned_at = saved.get("detect/learned_at_step")
    return {"seed": seed, "threads": threads, "failed": False, "accuracy": accuracy, "learned_at": learned_at}


def misses(accuracy: dict) -> list[str]:
    """The floors a run misses, by name."""
    kinds = {k: v for k, v in accuracy.items() if k.startswith("invalid/")}
    checks = [(s, accuracy[s], FLOORS["min_clean_accuracy"]) for s in ("digits", "lower", "upper")]
    checks += [("invalid", accuracy["invalid"], FLOORS["min_invalid_caught"])]
    checks += [(k, v, FLOORS["min_kind_caught"]) for k, v in kinds.items()]
    return [f"{name} {100 * value:.2f}%" for name, value, floor in checks if value < floor]


def table(runs: list[dict], extra: list[str], host: dict) -> str:
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    lines = [
        f"`recipes/reward.py` per seed and torch thread count{', with ' + shlex.join(extra) if extra else ''}: "
        f"held-out accuracy (6 000 answers on the test numbers, half of them invalid). Floors: each numeral system "
        f"≥ {pct(FLOORS['min_clean_accuracy'])}, invalid caught ≥ {pct(FLOORS['min_invalid_caught'])}, each kind of "
        f"corruption ≥ {pct(FLOORS['min_kind_caught'])}.",
        "",
        "| threads | seed | phase 2 learned at step | digits / lower / upper | invalid caught | lowest kind | floors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if r["failed"]:
            lines.append(f"| {r['threads']} | {r['seed']} | — | — | — | — | the run failed |")
            continue
        a = r["accuracy"]
        kind = min((k for k in a if k.startswith("invalid/")), key=a.get)
        missed, clean = misses(a), " / ".join(pct(a[s]) for s in ("digits", "lower", "upper"))
        lines.append(
            f"| {r['threads']} | {r['seed']} | {r['learned_at'] or 'never'} | {clean} | {pct(a['invalid'])} | "
            f"{kind.removeprefix('invalid/')} {pct(a[kind])} | "
            f"{'missed: ' + ', '.join(missed) if missed else 'met'} |"
        )
    met = sum(not r["failed"] and not misses(r["accuracy"]) for r in runs)
    lowest = min((r["accuracy"]["invalid"] for r in runs if not r["failed"]), default=None)
    lines += [
        "",
        f"**{met} of {len(runs)} runs meet every floor**"
        + (f"; the lowest invalid caught: {pct(lowest)}." if lowest is not None else "."),
        "",
        f"Machine: {host['cpu_count']} CPU cores, torch {host['torch']}, {host['platform']}; one-thread runs "
        f"{host['jobs']} side by side, others one at a time.",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(42, 52)))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="one-thread runs side by side")
    parser.add_argument("--reward-args", default="", help="extra arguments for recipes/reward.py")
    parser.add_argument("--output_dir", default="outputs/reward_seeds")
    parser.add_argument("--table", default="docs/reward_seeds.md")
    parser.add_argument("--report-only", action="store_true", help="tabulate the stored json, run nothing")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    store = Path(args.table).with_suffix(".json")
    if args.report_only:
        stored = json.loads(store.read_text())
        runs, extra, host = stored["runs"], stored["extra"], stored["machine"]
    else:
        extra = shlex.split(args.reward_args)
        host = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "platform": platform.platform()}
        host["jobs"] = args.jobs
        runs = []
        for threads in args.threads:
            with ThreadPoolExecutor(args.jobs if threads == 1 else 1) as pool:
                runs += pool.map(lambda seed, t=threads: run(seed, t, out, extra), args.seeds)
        store.write_text(json.dumps({"extra": extra, "machine": host, "runs": runs}, indent=2))
    document = table(runs, extra, host)
    print(document)
    Path(args.table).write_text(document + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
