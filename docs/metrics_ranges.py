"""Fill docs/metrics.md's "default runs" column: each logged metric's median and 5th-95th percentile over every value
the default runs logged (all steps, all seeds), and its median at the end of training.

The default runs are those of the algorithms study (`python bench/run.py bench/studies/algorithms.yaml`: `make
all`'s SFT and reward per seed, then PPO, GRPO and RLOO on their recipes' defaults), read from the study's stage
folders (`--work_dir`, default outputs/studies). A metric's row is `| `key` | ... | range | ... |` under its stage's
heading; rows of keys no default run logs keep their text.

    python docs/metrics_ranges.py            # rewrites docs/metrics.md in place
"""

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import run  # noqa: E402

from ppo_double.plots import log_history  # noqa: E402
from ppo_double.task import PREFIXES  # noqa: E402

# a heading of docs/metrics.md -> the stages whose logs fill its rows
SECTIONS = {"SFT": ("sft",), "Reward": ("reward",), "PPO": ("ppo",), "GRPO and RLOO": ("grpo", "rloo")}
SECTIONS["The judge"] = ("ppo", "grpo")
ROW = re.compile(r"^\| `([^`]+)` \|")
PREFIX = re.compile("|".join(PREFIXES))


def default_logs(work: Path) -> dict[str, list[list[dict]]]:
    """Per stage (sft, reward, ppo, grpo, rloo): each default run's log_history, plus its eval_results.json numbers
    (the reward's accuracies) as one entry at the end."""
    study = run.load_study(ROOT / "bench" / "studies" / "algorithms.yaml")
    logs: dict[str, dict[Path, list[dict]]] = {}
    for variant in study["variants"]:
        given = run.settings(study, variant)
        for seed in study["seeds"]:
            paths = run.stage_folders(work, seed, given)
            for stage, path in (("sft", paths["sft"]), ("reward", paths["reward"]), (given["algorithm"], paths["rl"])):
                state = path / "trainer_state.json"
                if not state.is_file():
                    continue
                history = log_history(state)
                if stage == "reward":
                    history.append(json.loads((path / "eval_results.json").read_text(encoding="utf-8")))
                logs.setdefault(stage, {})[path] = history
    return {stage: list(runs.values()) for stage, runs in logs.items()}


def spread(runs: list[list[dict]], key: str) -> str | None:
    """`median [p5, p95]; end median` over the runs' logged values of `key` (`<prefix>` in it: every prefix)."""
    names = [key.replace("<prefix>", p) for p in PREFIXES] if "<prefix>" in key else [key]
    values, ends = [], []
    for history in runs:
        seen = [e[n] for e in history for n in names if isinstance(e.get(n), (int, float))]
        values += seen
        ends += seen[-len(names) :] if seen else []
    if not values:
        return None
    low, mid, high = np.percentile(values, [5, 50, 95])
    if len(values) == len(runs) * len(names):  # logged once per run: the end is every value
        return f"{fmt(mid)} [{fmt(low)}, {fmt(high)}]"
    return f"{fmt(mid)} [{fmt(low)}, {fmt(high)}]; end {fmt(float(np.median(ends)))}"


def fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"


def fill(text: str, logs: dict[str, list[list[dict]]]) -> str:
    """docs/metrics.md with each known row's range cell (the third column) rewritten."""
    out, stages = [], ()
    for line in text.splitlines():
        if line.startswith("## "):
            stages = next((s for title, s in SECTIONS.items() if line[3:].startswith(title)), ())
        match = ROW.match(line)
        if match and stages:
            cells = line.split(" | ")
            found = [(s, spread(logs.get(s, []), match.group(1))) for s in stages]
            found = [(s, r) for s, r in found if r]
            if found:
                cells[2] = "; ".join(f"{s.upper()} {r}" if len(stages) > 1 else r for s, r in found)
                line = " | ".join(cells)
        out.append(line)
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", type=Path, default=ROOT / "outputs" / "studies")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "metrics.md")
    args = parser.parse_args(argv)
    logs = default_logs(args.work_dir.resolve())
    print(", ".join(f"{stage}: {len(runs)} runs" for stage, runs in logs.items()))
    args.doc.write_text(fill(args.doc.read_text(encoding="utf-8"), logs), encoding="utf-8")
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
