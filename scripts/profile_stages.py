"""Where `make all`'s seconds go: each stage on its defaults, its wall time split into parts.

    python scripts/profile_stages.py --label make-all --as_make_all   # -> docs/profile/<label>.json, docs/profile.md

Each stage runs in a process of its own: with --as_make_all started and threaded as `make all` starts it, else one at
a time on the whole machine. A few functions are timed by wrapping them, and each part's time is its own, without the
parts it calls, so the parts add up to the stage's wall time. The page gives them in plain-loop units (bench/speed.py),
measured first in the same invocation, so runs on different machines or days compare. cProfile is not used: its
overhead on the Python-heavy parts (generation's per-token loop, the judge) would move the very shares measured here.
"""

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

START = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
PAGE, STORE = ROOT / "docs" / "profile.md", ROOT / "docs" / "profile"
STAGES = ("sft", "reward", "ppo", "eval")
PARTS = {  # part: what it holds (the page's first column)
    "imports": "start-up: Python, torch, transformers, TRL imported",
    "setup": "data, models and the trainer built, checkpoints looked up",
    "training": "the rest of the training loop: forward, backward, optimizer; PPO's scoring of its rollouts",
    "rollouts": "PPO: generating the rollouts' completions",
    "gc": "PPO: TRL's loop calls gc.collect() twice per update",
    "judge": "the rule-based judge on the validation numbers, during training",
    "evaluation": "the final judgement on the test numbers (SFT, PPO, eval; the reward's held-out accuracy)",
    "saving": "checkpoints and the final folder",
}


class Clock:
    """Exclusive wall time per part: a timed call's seconds, less those of the timed calls it makes."""

    def __init__(self):
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.stack = []

    def wrap(self, owner, name: str, part: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            self.stack.append(0.0)
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - began
                inner = self.stack.pop()
                self.seconds[part] += spent - inner
                if self.stack:
                    self.stack[-1] += spent

        setattr(owner, name, timed)


def child(stage: str, argv: list[str], report: str) -> None:
    """Run one stage's recipe in this process with its parts timed; write {part: seconds} to `report`."""
    import gc

    import transformers
    from trl.experimental.ppo import ppo_trainer as trl_ppo_trainer

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import load_recipe
    from ppo_double import callbacks, finish, ppo, signals

    clock = Clock()
    clock.wrap(signals, "train", "training")
    clock.wrap(trl_ppo_trainer, "batch_generation", "rollouts")
    clock.wrap(gc, "collect", "gc")
    clock.wrap(callbacks.JudgeCallback, "judge", "judge")
    clock.wrap(finish, "_judge", "evaluation")
    for owner in (transformers.Trainer, ppo.PPOTrainer):
        clock.wrap(owner, "_save_checkpoint", "saving")
        clock.wrap(owner, "save_model", "saving")
    recipe = load_recipe("evaluate" if stage == "eval" else stage)
    if stage == "eval":
        clock.wrap(recipe, "evaluate", "evaluation")
    clock.wrap(recipe, "main", "setup")
    clock.seconds["imports"] = time.perf_counter() - START  # loading the recipe imported the rest
    recipe.main(argv)
    Path(report).write_text(json.dumps(clock.seconds))


def profile(seed: int | None, as_make_all: bool) -> dict:
    """Plain-loop seconds per 100 steps, then each stage's parts and wall time. `as_make_all`: each stage started and
    threaded as `make all` starts it (ppo_double/pipeline.py): SFT and reward side by side on half the cores each, PPO
    under `accelerate launch` (whose start-up lands in "other"), eval on torch's default; else one at a time, each a
    plain process on the whole machine."""
    sys.path.insert(0, str(ROOT / "bench"))
    from speed import plain_loop

    from ppo_double import pipeline

    plain = 100 * plain_loop(300, 64) / 300
    result = {"plain_loop_s_per_100": plain, "as_make_all": as_make_all, "stages": {}}
    with tempfile.TemporaryDirectory() as work:
        commands = pipeline.stage_commands(pipeline.folders(Path(work)), seed=seed)
        steps = [["sft", "reward"], ["ppo"], ["eval"]] if as_make_all else [[stage] for stage in STAGES]
        for names in steps:
            print(f"profiling {' and '.join(names)} ...", flush=True)
            threads = pipeline.half_cores() if len(names) > 1 else None
            runs = {}
            for stage in names:
                command = commands[pipeline.STAGES[STAGES.index(stage)]]
                script = next(i for i, arg in enumerate(command) if arg.startswith("recipes/"))
                start = command[:script] if as_make_all else [sys.executable]
                # the recipe's own arguments, run here under the profiler instead
                runs[stage] = [*start, __file__, "--child", stage, "--report", f"{work}/{stage}.json", "--"]
                runs[stage] += command[script + 1 :]
            logs = [Path(work) / f"{stage}.log" for stage in names]
            with ThreadPoolExecutor(len(names)) as pool:
                ran = pool.map(lambda c, log, t=threads: pipeline.run_stage(c, log, t), runs.values(), logs)
                done = dict(zip(names, ran))
            for (stage, run), log in zip(done.items(), logs):
                if run["returncode"]:
                    code, tail = run["returncode"], pipeline.log_tail(log)
                    raise SystemExit(f"error: profiling {stage} failed (exit {code}); its last lines:\n{tail}")
                parts = json.loads(Path(f"{work}/{stage}.json").read_text())
                result["stages"][stage] = {"wall": run["wall_s"], "parts": parts}
    return result


def render() -> str:
    """The page: one table per stored profile, in plain-loop units."""
    lines = [
        "# Profile: where `make all`'s time goes",
        "",
        "Made by `python scripts/profile_stages.py --label LABEL [--as_make_all]` (each label's numbers in",
        "`docs/profile/LABEL.json`). Each stage on its defaults, seed 42, in a process of its own: with",
        "`--as_make_all` started and threaded as `make all` starts it (SFT and reward side by side on one thread each,",
        "PPO under `accelerate launch`, whose start-up is in *other*), else one at a time, each alone on the machine.",
        "Numbers are [plain-loop units](glossary.md#plain-loop-unit): seconds divided by the plain PyTorch loop's",
        "seconds per 100 SFT steps, measured in the same invocation. *all*: the sum over the stages, where SFT and",
        "reward ran side by side only the longer of the two.",
        "",
        "| part | what it holds |",
        "|---|---|",
        *(f"| {part} | {text} |" for part, text in PARTS.items()),
    ]
    profiles = {path.stem: json.loads(path.read_text()) for path in sorted(STORE.glob("*.json"))}
    # the newest first (the profiles from before their date was stored last, in name order)
    for label, data in sorted(profiles.items(), key=lambda item: item[1].get("date", ""), reverse=True):
        unit, stages = data["plain_loop_s_per_100"], data["stages"]
        counted = list(STAGES)
        if data.get("as_make_all"):  # SFT and reward ran side by side: the shorter one is hidden
            counted.remove(min(("sft", "reward"), key=lambda stage: stages[stage]["wall"]))
        how = "as `make all` runs them" if data.get("as_make_all") else "one at a time, each alone"
        lines += ["", f"## {label}", "", data.get("note", ""), ""]
        lines += [f"Stages {how}. Plain loop: {unit:.2f} s per 100 steps; {data.get('commit', '')}.", ""]
        lines += ["| part | " + " | ".join(STAGES) + " | all |", "|---" * (len(STAGES) + 2) + "|"]
        for part in [*PARTS, "other"]:
            cells = {}
            for stage in STAGES:
                parts = stages[stage]["parts"]
                seconds = stages[stage]["wall"] - sum(parts.values()) if part == "other" else parts[part]
                cells[stage] = seconds / unit
            total = sum(cells[stage] for stage in counted)
            lines.append(f"| {part} | " + " | ".join(f"{c:.1f}" for c in cells.values()) + f" | {total:.1f} |")
        walls = {stage: stages[stage]["wall"] / unit for stage in STAGES}
        total = sum(walls[stage] for stage in counted)
        lines.append("| **wall** | " + " | ".join(f"**{w:.1f}**" for w in walls.values()) + f" | **{total:.1f}** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", help="store the profile as docs/profile/LABEL.json and re-render the page")
    parser.add_argument("--note", default="", help="a line under the label's heading: what this profile ran")
    parser.add_argument("--seed", type=int, default=None, help="every stage's seed (default: the YAMLs')")
    parser.add_argument("--as_make_all", action="store_true", help="start and thread the stages as `make all` does")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    rest = rest[1:] if rest[:1] == ["--"] else rest
    if args.child:
        return child(args.child, rest, args.report)
    if args.label:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        result = profile(args.seed, args.as_make_all) | {"note": args.note, "commit": f"commit {commit.stdout.strip()}"}
        result["date"] = datetime.date.today().isoformat()
        STORE.mkdir(parents=True, exist_ok=True)
        (STORE / f"{args.label}.json").write_text(json.dumps(result, indent=1) + "\n")
    PAGE.write_text(render())
    print(f"wrote {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
