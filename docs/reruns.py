"""The pipeline study rerun on the same seeds after a change of the defaults: per seed, before → after.

Both sets of a page are `make all` on the defaults of their day, judged by the one evaluation (16 sampled answers per
test prompt, the paired test of keeping arithmetic), one `bench/run.py bench/studies/pipeline.yaml --seeds S` per seed;
their records differ only in the digest of the recipes' defaults (`recipe_defaults`). Reads
bench/results/pipeline.jsonl, writes each page of RERUNS:

    python docs/reruns.py
"""

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from stats import wilson  # noqa: E402  (bench/ is a folder of scripts, not a package)
from store import RESULTS, Store  # noqa: E402

TUNED, HELD_OUT = range(42, 52), range(52, 57)  # the defaults were chosen on seeds 42-51
# page: its title, what changed, and the two sets ({label: the records' `recipe_defaults`}), before then after
RERUNS = {
    "stop_margin/rerun.md": (
        "The stop rule's margin: 0.1 points against 0.2, rerun",
        "once with the stop rule's margin at 0.2 points and once at 0.1 (`target_correct_margin`). Runs are"
        " deterministic up to the stop, so a 0.1-point run trains the 0.2-point run's updates and stops at the same"
        " judgement or an earlier one.",
        {"margin 0.2": "60f846acb7", "margin 0.1": "a571c4b10b"},
    ),
    "judge_threads.md": (
        "The judge on the idle core: PPO's judge on 1 thread against this process's share of the cores, rerun",
        "once with PPO's judge on the training's one thread and once on this process's share of the cores"
        " (`judge_threads: null`; 2 here, as `make all` runs PPO alone). The answers are the same at either count,"
        " so both runs of a seed train the same updates and stop at the same judgement; only the time differs.",
        {"judge on 1 thread": "a571c4b10b", "judge on 2 threads": "dc73c31f1b"},
    ),
    "faster_defaults.md": (
        "Candidate defaults, a shorter SFT and no critic warm-up: the pipeline study rerun, stopped after two seeds",
        "once on the defaults (SFT 2 000 steps at lr 3e-3, PPO's 8-update critic warm-up) and once on candidate"
        " defaults: SFT at 1 500 steps and lr 5e-3 (docs/studies/sft_schedule.md) and no warm-up"
        " (docs/implementation-details.md). The rerun stopped after seed 42 missed a target (not adopted).",
        {"defaults": "dc73c31f1b", "candidate": "67065ab27f"},
    ),
}
CELLS = {  # (record, its metrics) -> a cell
    "PPO episodes": lambda r, m: f"{m['completions']:,}".replace(",", " "),
    "PPO s": lambda r, m: f"{r['stages']['rl']['wall_s']:.0f}",
    "PPO units": lambda r, m: f"{r['stages']['rl']['wall_s'] / r['plain_loop_s_per_100']:.0f}",
    "PPO s / SFT s": lambda r, m: f"{r['stages']['rl']['wall_s'] / r['stages']['sft']['wall_s']:.2f}",
    "sampled correct change (bound)": lambda r, m: f"{100 * m['keep_change']:+.2f} ({100 * m['keep_lower']:+.2f})",
    "lowest greedy correct": lambda r, m: f"{100 * m['min_greedy_correct']:.1f} %",
    "every target": lambda r, m: "yes" if m["target_met"] else "**no**",
    "units": lambda r, m: f"{m['total_units']:.0f}",
}


def records(defaults: dict[str, str]) -> dict[str, dict[int, dict]]:
    found = {label: {} for label in defaults}
    for record in Store(RESULTS / "pipeline.jsonl").records():
        settings = record["settings"]
        for label, digest in defaults.items():
            if settings["recipe_defaults"] == digest and settings["eval"] == ["--samples", "16"]:
                found[label][record["seed"]] = record  # the last record of a seed wins (reruns: see the commits)
    return found


def summary(name: str, label: str, runs: list[dict]) -> str:
    met = sum(r["metrics"]["target_met"] for r in runs)
    low, high = wilson(met, len(runs))
    episodes = f"{statistics.median(r['metrics']['completions'] for r in runs):,.0f}".replace(",", " ")
    lowest = min(r["metrics"]["keep_lower"] for r in runs)
    units = statistics.median(r["metrics"]["total_units"] for r in runs)
    ppo = statistics.median(r["stages"]["rl"]["wall_s"] / r["plain_loop_s_per_100"] for r in runs)
    ratio = statistics.median(r["stages"]["rl"]["wall_s"] / r["stages"]["sft"]["wall_s"] for r in runs)
    return (
        f"- {name}, {label}: every target on {met} of {len(runs)} (Wilson {100 * low:.0f}–{100 * high:.0f} %), median"
        f" {episodes} PPO episodes, median {units:.0f} plain-loop units (PPO {ppo:.0f}, {ratio:.2f} of the run's SFT);"
        f" lowest bound {100 * lowest:+.2f} points."
    )


def page(title: str, what: str, defaults: dict[str, str]) -> str:
    found = records(defaults)
    before, after = found.values()
    seeds = sorted(set(before) & set(after))
    lines = [
        f"# {title}",
        "",
        "Written by `python docs/reruns.py` from `bench/results/pipeline.jsonl`: the pipeline study's runs (`make all`"
        f" on the defaults, judged by the one evaluation), {what}",
        "",
        f"Per seed, {' → '.join(defaults)}: PPO's episodes, its wall seconds, plain-loop units and seconds per"
        " second of the same run's SFT (the machine's speed cancels in that ratio), the change in the"
        " sampled correct share over the SFT's on the test numbers with its one-sided 95 % lower bound (points; it"
        " must stay above -0.25), the lowest greedy correct share on the validation numbers while PPO trained (floor"
        " 97 %), every target, and `make all` in plain-loop units (each invocation measures its own plain loop).",
        "",
        "| seed | " + " | ".join(CELLS) + " |",
        "|---" * (len(CELLS) + 1) + "|",
    ]
    for seed in seeds:
        pair = [before[seed], after[seed]]
        lines.append(
            f"| {seed} | "
            + " | ".join(" → ".join(cell(r, r["metrics"]) for r in pair) for cell in CELLS.values())
            + " |"
        )
    lines.append("")
    for name, group in (("seeds 42–51", TUNED), ("held-out seeds 52–56", HELD_OUT)):
        for label, runs in found.items():
            if chosen := [runs[s] for s in seeds if s in group]:
                lines.append(summary(name, label, chosen))
    return "\n".join(lines) + "\n"


def main() -> None:
    for path, (title, what, defaults) in RERUNS.items():
        out = ROOT / "docs" / path
        out.write_text(page(title, what, defaults), encoding="utf-8")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
