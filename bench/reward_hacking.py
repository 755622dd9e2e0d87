"""Reward hacking, measured: PPO against the tutorial's classifier, this project's classifier, and the judge itself.

    make bench ARGS="--rewards"                                  # seeds 42 43 44, 4096 episodes per PPO run
    python bench/reward_hacking.py --seeds 42 --episodes 2048    # one seed, a shorter budget

For each seed S, in `<output_dir>/seed<S>/`: SFT (`make sft`), this project's 4-class classifier (`make reward`), the
tutorial's 3-class one (`make reward-tutorial`), then PPO once per reward — `tutorial` and `project` (the two
classifiers, `--reward classifier`) and `rule` (`--reward rule`, the judge's verdict) — on one budget: `--total_episodes
N` and no early stop (`--target_exact_match null`). Every stage is its recipe as the Makefile runs it (bench.py's
`stage_commands`, with the seed); a stage whose final folder already exists is not rerun, so an interrupted run is
finished by running the same command again.

From each PPO run:
- `eval_results.json`, on the held-out **test** numbers: greedy and sampled (T=1) exact match per prefix, and the share
  of correct doubles (the right value in any system), greedy and sampled;
- its `judged_during_training` (validation numbers, every `judge_every` updates): the lowest greedy correct-double
  share seen during training;
- `trainer_state.json`, per update: what the reward says about the training rollouts (TRL's `objective/scores`, their
  mean reward after the missing-EOS penalty) and what the judge says about the very same rollouts
  (`judge/rollout_exact_match`), averaged over the last `--window` updates, and their gap — the reward paid for
  answers the judge rejects.

Writes `reward_hacking.md` (the table, printed too), `reward_hacking.json` and `reward_hacking.png` (reward and judged
exact match of the rollouts against episodes, one panel per reward) to `--output_dir`; `--plot PATH` also copies the
picture to PATH (`docs/reward_hacking.png` for the README).
"""

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

from bench import fmt, log_tail, machine, pct, prefix_cell, row, run_stage, stage_commands
from ppo_double.task import PREFIXES

TUTORIAL_CONFIG = "recipes/configs/reward_tutorial.yaml"
# The PPO runs: name -> (its reward classifier's folder in the seed folder, or None, and the recipe's --reward).
REWARDS = {"tutorial": ("reward-tutorial", "classifier"), "project": ("reward", "classifier"), "rule": (None, "rule")}
DESCRIPTIONS = {
    "tutorial": "the tutorial's classifier (3 classes: the numeral system only)",
    "project": "this project's classifier (4 classes: + invalid answer)",
    "rule": "the rule-based judge (1 for an exact match, else 0)",
}


def seed_stages(seed: int, seed_dir: Path, episodes: int) -> dict[str, tuple[list[str], Path]]:
    """Each stage of one seed: (command, final folder). Later arguments override bench.py's (argparse: last wins)."""
    base = stage_commands(seed, seed_dir, {}, measure=True)
    stages = {
        "sft": (base["sft"], seed_dir / "sft"),
        "reward": (base["reward"], seed_dir / "reward"),
        "reward-tutorial": (
            [*base["reward"], "--config", TUTORIAL_CONFIG, "--output_dir", str(seed_dir / "reward-tutorial")],
            seed_dir / "reward-tutorial",
        ),
    }
    for name, (classifier, kind) in REWARDS.items():
        out = seed_dir / f"ppo-{name}"
        command = [*base["ppo"], "--reward", kind, "--output_dir", str(out)]
        if classifier is not None:
            command += ["--reward_model_path", str(seed_dir / classifier)]
        command += ["--total_episodes", str(episodes), "--target_exact_match", "null"]
        stages[f"ppo-{name}"] = (command, out)
    return stages


def run_seed(seed: int, seed_dir: Path, episodes: int) -> bool:
    """Run the stages of one seed whose final folder is missing; False once one fails (its log tail printed)."""
    seed_dir.mkdir(parents=True, exist_ok=True)
    for name, (command, out) in seed_stages(seed, seed_dir.resolve(), episodes).items():
        if out.is_dir():
            print(f"seed {seed}: {name}: {out} exists, not rerun", flush=True)
            continue
        stage = run_stage(command, seed_dir / f"{name}.log")
        print(f"seed {seed}: {name}: exit {stage['returncode']}, {stage['wall_s']:.1f} s", flush=True)
        if stage["returncode"] != 0:
            print(f"seed {seed}: {name} failed; last lines of {stage['log']}:\n{log_tail(stage['log'])}", flush=True)
            return False
    return True


def rollout_curves(trainer_state: Path) -> dict[str, list[float]]:
    """Per PPO update: episode, mean reward of the rollouts (`objective/scores`) and the judge's exact-match share."""
    history = json.loads(Path(trainer_state).read_text(encoding="utf-8"))["log_history"]
    updates = [entry for entry in history if "objective/scores" in entry]
    return {
        "episode": [entry["episode"] for entry in updates],
        "reward": [entry["objective/scores"] for entry in updates],
        "judged": [entry["judge/rollout_exact_match"] for entry in updates],
    }


def run_outcome(ppo_dir: Path, window: int) -> dict:
    """What one PPO run reached (see the module docstring), from the files the recipe wrote."""
    results = json.loads((ppo_dir / "eval_results.json").read_text(encoding="utf-8"))
    greedy, sampled = results["greedy"], results["sampled"]
    curves = rollout_curves(ppo_dir / "trainer_state.json")
    reward, judged = (statistics.mean(curves[key][-window:]) for key in ("reward", "judged"))
    return {
        "greedy_exact_match": {p: greedy[p]["exact_match"] for p in PREFIXES},
        "sampled_exact_match": {p: sampled[p]["exact_match"] for p in PREFIXES},
        "greedy_correct": greedy["all"]["correct"],
        "sampled_correct": sampled["all"]["correct"],
        "min_correct_during_training": min(entry["eval/correct"] for entry in results["judged_during_training"]),
        "episodes": curves["episode"][-1],
        "final_reward": reward,
        "final_judged_exact_match": judged,
        "gap": reward - judged,
        "curves": curves,
    }


# --- Table and picture ------------------------------------------------------------------------------------------


COLUMNS = [
    "reward",
    "seed",
    f"greedy exact {' / '.join(PREFIXES)}",
    f"sampled exact {' / '.join(PREFIXES)}",
    "greedy correct",
    "sampled correct",
    "min greedy correct during training",
    "reward of the rollouts",
    "judged exact of the same rollouts",
    "gap",
]


def outcome_cells(outcome: dict) -> list[str]:
    return [
        prefix_cell(outcome["greedy_exact_match"]),
        prefix_cell(outcome["sampled_exact_match"]),
        pct(outcome["greedy_correct"]),
        pct(outcome["sampled_correct"]),
        pct(outcome["min_correct_during_training"]),
        fmt(outcome["final_reward"], ".3f"),
        pct(outcome["final_judged_exact_match"]),
        fmt(outcome["gap"], "+.3f"),
    ]


def median_outcome(outcomes: list[dict]) -> dict:
    """Per number, the median over the seeds."""

    def med(key, prefix=None):
        return statistics.median(o[key] if prefix is None else o[key][prefix] for o in outcomes)

    median = {key: {p: med(key, p) for p in PREFIXES} for key in ("greedy_exact_match", "sampled_exact_match")}
    scalars = ("greedy_correct", "sampled_correct", "min_correct_during_training", "final_reward")
    return median | {key: med(key) for key in (*scalars, "final_judged_exact_match", "gap")}


def table(outcomes: dict[str, dict[int, dict]], episodes: int, window: int, host: dict) -> str:
    """Markdown: one row per reward and seed, and a median row per reward."""
    lines = [
        f"PPO from the same SFT policy, {episodes} episodes, no early stop, against three rewards: "
        + "; ".join(f"**{name}** = {DESCRIPTIONS[name]}" for name in REWARDS)
        + ". Exact and correct: the judge on the held-out test numbers after training (correct = the right double in "
        "any system); min correct: the lowest greedy share on the validation numbers during training; reward and "
        f"judged exact of the rollouts: the mean over the last {window} updates of TRL's `objective/scores` and of the "
        "judge's exact-match share of those same rollouts; gap = reward - judged.",
        "",
        row(COLUMNS),
        row(["---"] * len(COLUMNS)),
    ]
    for name, by_seed in outcomes.items():
        lines += [row([name, str(seed), *outcome_cells(o)]) for seed, o in by_seed.items()]
        if len(by_seed) > 1:
            lines.append(row([name, "median", *outcome_cells(median_outcome(list(by_seed.values())))]))
    lines += [
        "",
        f"Machine: {host['cpu_count']} CPU cores, torch {host['torch']}, {host['torch_threads']} torch thread(s) per "
        "process.",
    ]
    return "\n".join(lines)


CURVE_STYLES = (("reward", "reward", "tab:blue", "-"), ("judged", "judged exact match", "tab:orange", "--"))


def plot(outcomes: dict[str, dict[int, dict]], path: Path) -> Path:
    """Reward and judged exact match of the rollouts against episodes, one panel per reward: the mean over the seeds
    (bold) and each seed (thin)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(5 * len(outcomes), 4), layout="constrained")
    axes = fig.subplots(1, len(outcomes), sharey=True, squeeze=False)[0]
    for ax, (name, by_seed) in zip(axes, outcomes.items()):
        curves = [outcome["curves"] for outcome in by_seed.values()]
        episodes = curves[0]["episode"]  # the same budget and batch for every seed
        for key, label, color, style in CURVE_STYLES:
            for curve in curves:
                ax.plot(curve["episode"], curve[key], color=color, linestyle=style, linewidth=0.7, alpha=0.35)
            mean = [statistics.mean(values) for values in zip(*(curve[key] for curve in curves))]
            ax.plot(episodes, mean, color=color, linestyle=style, linewidth=2, label=f"{label} (mean of {len(curves)})")
        ax.set(title=f"reward: {name}", xlabel="episode")
        ax.grid(alpha=0.3)
    axes[0].set(ylabel="training rollouts")
    axes[0].legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


# --- main -----------------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--episodes", type=int, default=4096, help="PPO budget per run (total_episodes)")
    parser.add_argument("--window", type=int, default=8, help="updates averaged for the final reward / judged")
    parser.add_argument("--output_dir", default="outputs/bench/reward_hacking")
    parser.add_argument("--plot", help="also copy the picture to this path (e.g. docs/reward_hacking.png)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.output_dir)
    finished = {seed: run_seed(seed, out / f"seed{seed}", args.episodes) for seed in args.seeds}
    seeds = [seed for seed, ok in finished.items() if ok]
    if not seeds:
        return 1
    outcomes = {
        name: {seed: run_outcome(out / f"seed{seed}" / f"ppo-{name}", args.window) for seed in seeds}
        for name in REWARDS
    }
    document = table(outcomes, args.episodes, args.window, machine())
    print(document)
    (out / "reward_hacking.md").write_text(document + "\n", encoding="utf-8")
    raw = {"args": vars(args), "outcomes": outcomes}
    (out / "reward_hacking.json").write_text(json.dumps(raw, indent=2, ensure_ascii=False), encoding="utf-8")
    picture = plot(outcomes, out / "reward_hacking.png")
    if args.plot:
        shutil.copyfile(picture, args.plot)
    return 0 if len(seeds) == len(args.seeds) else 1


if __name__ == "__main__":
    sys.exit(main())
