"""Sweep: which settings make the policy sharp — greedy *and* sampled answers right — within the time budget.

    make sweep                                          # the grid in bench/sweep.yaml, seeds 42 43 44
    make sweep ARGS="--variants default ppo-bs128 --seeds 42"
    python bench/sweep.py --grid bench/sweep.yaml --jobs 8 --threads 2   # on a many-core machine

Each variant is a `make all` (sft -> reward -> ppo -> eval, each stage as a subprocess, bench/bench.py's runner) with
extra arguments per stage. Stages are cached by their command: variants that share the SFT (or SFT and reward)
arguments of a seed train them once. `--jobs N` runs N pipelines at once, each with `--threads` torch threads: the
episodes to target and the judge's numbers do not depend on it, but the wall times do — compare wall times only
within one sweep, and measure the chosen defaults again with `make bench` on the machine you report.

Per variant and seed: stage wall times, PPO episodes at the stop, greedy and sampled (T=1) exact match per prefix on
the test numbers, the sampled correct-double share before (SFT) and after PPO on the same prefixed prompts, the lowest
greedy correct-double share the judge saw on the validation numbers during PPO, and the reward classifier's accuracy
on invalid answers. Writes `<output_dir>/sweep.md` (a table per variant, and a summary) and `sweep.json`.
"""

import argparse
import hashlib
import json
import os
import shlex
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import STAGES, fmt, judged, median, ppo_progress, row, run_stage, stage_commands, targets_met  # noqa: E402
from ppo_double.task import PREFIXES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def stage_key(stage: str, seed: int, args: dict[str, list[str]]) -> str:
    """Cache key of a stage: its seed, its own arguments and YAML defaults, and those of every stage it reads from."""
    upstream = {"sft": ["sft"], "reward": ["reward"], "ppo": ["sft", "reward", "ppo"], "eval": STAGES}[stage]
    text = json.dumps([seed, *[(args.get(s, []), recipe_config(s)) for s in upstream]])
    return f"{stage}-{seed}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def recipe_config(stage: str) -> str:
    """The text of a stage's YAML defaults (the eval stage has none): a changed default invalidates the cache."""
    path = ROOT / "recipes" / "configs" / f"{stage}.yaml"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


class Runner:
    """Runs stages once per cache key (several variants may need the same SFT), in parallel pipelines."""

    def __init__(self, out: Path, threads: int, report_only: bool = False):
        self.out, self.env = out, {**os.environ, "OMP_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": ""}
        self.report_only = report_only
        self.locks: dict[str, threading.Lock] = {}
        self.guard = threading.Lock()

    def stage(self, stage: str, seed: int, args: dict[str, list[str]], command: list[str]) -> dict:
        key = stage_key(stage, seed, args)
        with self.guard:
            lock = self.locks.setdefault(key, threading.Lock())
        with lock:  # a second variant needing the same stage waits for the first, then reads its result
            done = self.out / "stages" / f"{key}.json"
            if done.is_file():
                return json.loads(done.read_text())
            if self.report_only:
                return {"returncode": None, "wall_s": 0.0}
            result = run_stage(command, self.out / "stages" / f"{key}.log", env=self.env)
            if result["returncode"] == 0:
                done.write_text(json.dumps(result))
            return result

    def pipeline(self, name: str, seed: int, args: dict[str, list[str]]) -> dict:
        folders = {stage: self.out / "stages" / stage_key(stage, seed, args) for stage in STAGES}
        folders["eval"] = folders["eval"] / "eval.json"
        folders["eval"].parent.mkdir(parents=True, exist_ok=True)
        commands = stage_commands(seed, self.out, args, folders, measure=True)
        stages = {}
        for stage in STAGES:
            stages[stage] = result = self.stage(stage, seed, args, commands[stage])
            if result["returncode"] is None:  # --report_only, and this stage never finished
                del stages[stage]
                break
            print(f"{name} seed {seed}: {stage}: exit {result['returncode']}, {result['wall_s']:.0f} s", flush=True)
            if result["returncode"] != 0:
                break
        return {"variant": name, "seed": seed, "stages": stages, **outcome(stages, folders)}


def outcome(stages: dict, paths: dict[str, Path]) -> dict:
    """The numbers of one pipeline, read from what its stages wrote (bench.judged; the eval stage is optional)."""
    if "ppo" not in stages or any(stages[s]["returncode"] != 0 for s in ("sft", "reward", "ppo")):
        return {"ok": False}
    numbers = judged(paths["ppo"], paths["eval"])
    reward = json.loads((paths["reward"] / "eval_results.json").read_text(encoding="utf-8"))
    episodes, _ = ppo_progress(paths["ppo"] / "trainer_state.json")
    return {
        "ok": True,
        **numbers,
        "met": targets_met(numbers),
        "episodes": episodes,
        "reward_invalid": reward.get("accuracy/invalid"),
        "total_s": sum(stage["wall_s"] for stage in stages.values()),
    }


def pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def table(results: list[dict], grid: dict) -> str:
    """Markdown: one row per variant and seed, then one summary row per variant."""
    header = [
        "variant",
        "seed",
        "SFT s",
        "reward s",
        "PPO s",
        "total s",
        "PPO episodes",
        "greedy exact % (worst prefix)",
        f"sampled exact % {' / '.join(PREFIXES)}",
        "sampled correct % SFT → PPO",
        "min greedy correct % during PPO",
        "reward: invalid caught %",
        "all targets",
    ]
    lines = [row(header), row(["---"] * len(header))]
    for r in results:
        if not r["ok"]:
            failed = any(stage["returncode"] != 0 for stage in r["stages"].values())
            status = "failed" if failed else "not run"  # not run: --report_only, and the run never finished
            lines.append(row([r["variant"], str(r["seed"]), status, *[""] * (len(header) - 3)]))
            continue
        wall = [f"{r['stages'][stage]['wall_s']:.0f}" for stage in ("sft", "reward", "ppo")]
        lines.append(
            row(
                [
                    r["variant"],
                    str(r["seed"]),
                    *wall,
                    f"{r['total_s']:.0f}",
                    str(r["episodes"]),
                    pct(min(r["greedy_exact_match"].values())),
                    " / ".join(pct(r["sampled_exact_match"][p]) for p in PREFIXES),
                    f"{pct(r['sft_sampled_correct'])} → {pct(r['sampled_correct'])}",
                    pct(r["min_greedy_correct"]),
                    pct(r["reward_invalid"]),
                    "yes" if r["met"] else "no",
                ]
            )
        )
    header = [
        "variant",
        "seeds meeting every target",
        "median total s",
        "median PPO episodes",
        "worst sampled exact %",
        "worst min greedy correct %",
        "settings (on top of the recipe defaults)",
    ]
    lines += ["", row(header), row(["---"] * len(header))]
    for name in dict.fromkeys(r["variant"] for r in results):
        runs = [r for r in results if r["variant"] == name]
        ok = [r for r in runs if r["ok"]]
        settings = "; ".join(f"{stage} `{shlex.join(args)}`" for stage, args in grid[name]["args"].items() if args)
        lines.append(
            row(
                [
                    name,
                    f"{sum(bool(r.get('met')) for r in runs)}/{len(runs)}",
                    fmt(median(r["total_s"] for r in ok), ".0f"),
                    fmt(median(r["episodes"] for r in ok), ".0f"),
                    pct(min((min(r["sampled_exact_match"].values()) for r in ok), default=None)),
                    pct(
                        min((r["min_greedy_correct"] for r in ok if r["min_greedy_correct"] is not None), default=None)
                    ),
                    settings or "—",
                ]
            )
        )
    return "\n".join(lines)


def load_grid(path: Path, names: list[str] | None) -> dict[str, dict]:
    """{variant: {"args": {stage: [args]}, "seeds": [seeds] or None}} from the YAML grid, optionally only `names`.

    In the YAML each stage's arguments are one string; a variant's `seeds` list overrides `--seeds` for it.
    """
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    grid = {
        name: {
            "args": {stage: shlex.split(str(spec.get(stage, ""))) for stage in STAGES},
            "seeds": spec.get("seeds"),
        }
        for name, spec in raw.items()
    }
    unknown = set(names or []) - set(grid)
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(sorted(unknown))}: {path} has {', '.join(grid)}")
    return {name: grid[name] for name in (names or grid)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=Path, default=ROOT / "bench" / "sweep.yaml")
    parser.add_argument("--variants", nargs="+", help="only these variants of the grid")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44], help="unless a variant lists its own")
    parser.add_argument("--jobs", type=int, default=1, help="pipelines at once")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per pipeline")
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/sweep"))
    parser.add_argument("--report_only", action="store_true", help="only tabulate the stages already run there")
    args = parser.parse_args(argv)
    grid = load_grid(args.grid, args.variants)
    (args.output_dir / "stages").mkdir(parents=True, exist_ok=True)
    runner = Runner(args.output_dir.resolve(), args.threads, args.report_only)
    todo = [(name, seed) for name, variant in grid.items() for seed in variant["seeds"] or args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: runner.pipeline(job[0], job[1], grid[job[0]]["args"]), todo))
    document = table(results, grid)
    print(document)
    (args.output_dir / "sweep.md").write_text(document + "\n", encoding="utf-8")
    (args.output_dir / "sweep.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
