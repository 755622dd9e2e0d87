"""PNG plots of the runs, drawn from their own logs: `python -m ppo_double.plots` or `ppo-double plots`.

Inputs, all under one runs folder (default `outputs/`):

- `sft/trainer_state.json`: transformers' TrainerState JSON; its `log_history` has `loss`, `mean_token_accuracy`,
  `step`.
- `reward/trainer_state.json` (`loss`, `step`) and `reward/eval_results.json` (`accuracy/<class>`).
- `ppo/trainer_state.json`: TRL's PPO metrics (`objective/scores`, `objective/kl`, `episode`, `step`) and, in their
  own entries, JudgeCallback's `eval/exact_match/<prefix>` and `eval/correct`.
- `eval.json`: `recipes/evaluate.py --output_json`, `{model: {"greedy"|"sampled": {prefix: {"exact_match", ...}}}}`.

Labels use the ASCII names of the prefixes (digits, lower, upper): matplotlib's bundled fonts have no CJK glyphs,
and system fonts cannot be relied on.
"""

import argparse
import json
import math
import sys
from pathlib import Path

from .task import PREFIXES, SYSTEMS, UNPREFIXED

# Prefix (or group) -> ASCII label for axes and legends.
LABELS = {**dict(zip(PREFIXES, SYSTEMS)), UNPREFIXED: "unprefixed", "all": "all"}
STYLES = [("tab:blue", "o", "-"), ("tab:orange", "s", "--"), ("tab:green", "^", "-."), ("tab:red", "D", ":")]


def label(prefix: str) -> str:
    return LABELS.get(prefix, prefix)


def _figure(ncols: int = 1, nrows: int = 1):
    # The object-oriented API without pyplot: no global state, no GUI backend (savefig picks Agg for PNG).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4 * ncols, 4.2 * nrows), layout="constrained")
    return fig, [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]


def log_history(path: Path) -> list[dict]:
    """A run's logged entries: `log_history` of its `trainer_state.json` (the plots' and the bench's one reader)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["log_history"]


def _series(history: list[dict], key: str, x: str = "step") -> tuple[list, list]:
    rows = [row for row in history if key in row and x in row]
    return [row[x] for row in rows], [row[key] for row in rows]


class Skip(Exception):
    """A plot that cannot be drawn from what is there (missing file, no such metric): noted, not fatal."""


def _need(path: Path) -> Path:
    if not path.is_file():
        raise Skip(f"{path} not found")
    return path


def plot_sft(runs: Path, out: Path) -> Path:
    history = log_history(_need(runs / "sft" / "trainer_state.json"))
    steps, loss = _series(history, "loss")
    if not steps:
        raise Skip(f"{runs / 'sft' / 'trainer_state.json'} logs no `loss`")
    acc_steps, acc = _series(history, "mean_token_accuracy")
    fig, axes = _figure(2 if acc_steps else 1)
    axes[0].plot(steps, loss, marker=".")
    axes[0].set(xlabel="optimizer step", ylabel="training loss (completion tokens)", title="SFT: loss")
    if min(loss) > 0 and max(loss) / min(loss) > 20:
        axes[0].set_yscale("log")
    if acc_steps:
        axes[1].plot(acc_steps, acc, marker=".", color="tab:green")
        axes[1].set(xlabel="optimizer step", ylabel="mean token accuracy", title="SFT: token accuracy", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, out / "sft_loss.png")


def plot_reward_loss(runs: Path, out: Path) -> Path:
    path = _need(runs / "reward" / "trainer_state.json")
    steps, loss = _series(log_history(path), "loss")
    if not steps:
        raise Skip(f"{path} logs no `loss`")
    fig, (ax,) = _figure()
    ax.plot(steps, loss, marker=".")
    ax.set(xlabel="optimizer step", ylabel="cross-entropy loss", title="Reward classifier: training loss")
    ax.grid(alpha=0.3)
    return _save(fig, out / "reward_loss.png")


def plot_reward_accuracy(runs: Path, out: Path) -> Path:
    path = _need(runs / "reward" / "eval_results.json")
    results = json.loads(path.read_text(encoding="utf-8"))
    found = [k.removeprefix("accuracy/") for k in results if k.startswith("accuracy/")]
    # Trainer.save_metrics sorts the keys; show the classes in label order, then the overall accuracy.
    order = [*SYSTEMS, "invalid"]
    names = [n for n in order if n in found] + [n for n in found if n not in order and n != "all"]
    names += ["all"] if "all" in found else []
    if not names:
        raise Skip(f"{path} has no `accuracy/...` keys")
    values = [results[f"accuracy/{name}"] for name in names]
    fig, (ax,) = _figure()
    colors = ["tab:gray" if name == "all" else STYLES[i % len(STYLES)][0] for i, name in enumerate(names)]
    bars = ax.bar(names, values, color=colors)
    ax.bar_label(bars, labels=[f"{100 * v:.1f}%" for v in values], padding=2)
    ax.set(
        xlabel="true class of the answer",
        ylabel="accuracy on held-out test numbers",
        title="Reward classifier: accuracy per class",
        ylim=(0, 1.1),
    )
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / "reward_accuracy.png")


def _episode_of_step(history: list[dict]):
    """step -> episode, from the PPO entries that carry both (TRL logs `episode`; Trainer.log adds `step`).

    JudgeCallback's entries carry only `step`; each PPO update adds the same number of episodes (the batch), so a
    step without its own PPO entry is placed on the line through the known ones. None when nothing carries both.
    """
    known = {row["step"]: row["episode"] for row in history if "episode" in row and "step" in row}
    ratios = [episode / step for step, episode in known.items() if step > 0]
    if not ratios:
        return None
    per_step = ratios[-1]
    return lambda step: known.get(step, step * per_step)


def plot_ppo_reward_kl(runs: Path, out: Path) -> Path:
    path = _need(runs / "ppo" / "trainer_state.json")
    history = log_history(path)
    episodes, scores = _series(history, "objective/scores", x="episode")
    kl_episodes, kl = _series(history, "objective/kl", x="episode")
    if not episodes and not kl_episodes:
        raise Skip(f"{path} logs no `objective/scores` or `objective/kl` with `episode`")
    fig, (ax_score, ax_kl) = _figure(2)
    ax_score.plot(episodes, scores, marker=".")
    ax_score.set(
        xlabel="episode (prompts seen)", ylabel="mean reward-model score (objective/scores)", title="PPO: reward"
    )
    ax_kl.plot(kl_episodes, kl, marker=".", color="tab:red")
    ax_kl.set(
        xlabel="episode (prompts seen)", ylabel="KL to the SFT reference, per answer (objective/kl)", title="PPO: KL"
    )
    for ax in (ax_score, ax_kl):
        ax.grid(alpha=0.3)
    return _save(fig, out / "ppo_reward_kl.png")


def plot_ppo_exact_match(runs: Path, out: Path) -> Path:
    path = _need(runs / "ppo" / "trainer_state.json")
    history = log_history(path)
    keys = [f"eval/exact_match/{p}" for p in PREFIXES]
    rows = [row for row in history if any(k in row for k in keys) and ("episode" in row or "step" in row)]
    if not rows:
        raise Skip(f"{path} logs no judge metrics (eval/exact_match/<prefix>)")
    to_episode = _episode_of_step(history)
    if to_episode is not None or all("episode" in row for row in rows):
        x = [row["episode"] if "episode" in row else to_episode(row["step"]) for row in rows]
        xlabel = "episode (prompts seen)"
    else:  # no entry relates steps to episodes: plot against the update count, and say so
        rows = [row for row in rows if "step" in row]
        x, xlabel = [row["step"] for row in rows], "PPO update (global step)"
    fig, (ax,) = _figure()
    for i, prefix in enumerate(PREFIXES):
        points = [(xi, row[keys[i]]) for xi, row in zip(x, rows) if keys[i] in row]
        if points:
            color, marker, linestyle = STYLES[i]
            xs, ys = zip(*points)
            ax.plot(xs, ys, color=color, marker=marker, linestyle=linestyle, label=f"exact match: {label(prefix)}")
    correct = [(xi, row["eval/correct"]) for xi, row in zip(x, rows) if "eval/correct" in row]
    if correct:
        xs, ys = zip(*correct)
        ax.plot(xs, ys, color="tab:gray", linestyle=":", label="correct double (any system)")
    ax.set(
        xlabel=xlabel,
        ylabel="share of validation prompts (greedy)",
        title="PPO: judge on validation prompts, per requested system",
        ylim=(-0.02, 1.02),
    )
    ax.grid(alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2)  # never over the lines
    return _save(fig, out / "ppo_exact_match.png")


def plot_before_after(eval_json: Path, out: Path) -> Path:
    results = json.loads(_need(eval_json).read_text(encoding="utf-8"))
    models = list(results)  # recipes/evaluate.py writes the baseline first: before, then after
    modes = [m for m in ("greedy", "sampled") if any(m in results[name] for name in models)]
    if not models or not modes:
        raise Skip(f"{eval_json} has no greedy/sampled results")
    prefixes = []
    for name in models:
        for mode in modes:
            prefixes += [p for p in results[name].get(mode, {}) if p not in prefixes]
    metrics = ("exact_match", "correct")
    fig, axes = _figure(len(metrics), len(modes))
    width = 0.8 / len(models)
    for r, mode in enumerate(modes):
        for c, metric in enumerate(metrics):
            ax = axes[r * len(metrics) + c]
            for m, name in enumerate(models):
                values = [results[name].get(mode, {}).get(p, {}).get(metric, math.nan) for p in prefixes]
                positions = [i + (m - (len(models) - 1) / 2) * width for i in range(len(prefixes))]
                tag = f"{('before', 'after')[m]}: {name}" if len(models) == 2 else name
                bars = ax.bar(positions, values, width, label=tag, color=STYLES[m % len(STYLES)][0])
                ax.bar_label(bars, labels=["" if math.isnan(v) else f"{100 * v:.0f}" for v in values], fontsize=8)
            ax.set_xticks(range(len(prefixes)), [label(p) for p in prefixes])
            ax.set(
                xlabel="requested system (prompt prefix)",
                ylabel=metric.replace("_", " "),
                title=f"{metric.replace('_', ' ')}, {mode} answers",
                ylim=(0, 1.05),
            )
            ax.grid(axis="y", alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(models))
    fig.suptitle("Held-out test prompts, rule-based judge (bar labels in %)")
    return _save(fig, out / "eval_before_after.png")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def render_plots(runs_dir="outputs", output_dir=None, eval_json=None, log=print) -> list[Path]:
    """Draw every plot whose inputs exist; return the PNGs written. Missing inputs: one `skipped ...` line each."""
    runs = Path(runs_dir)
    out = Path(output_dir) if output_dir is not None else runs / "plots"
    eval_path = Path(eval_json) if eval_json is not None else runs / "eval.json"
    jobs = [
        ("sft_loss.png", lambda: plot_sft(runs, out)),
        ("reward_loss.png", lambda: plot_reward_loss(runs, out)),
        ("reward_accuracy.png", lambda: plot_reward_accuracy(runs, out)),
        ("ppo_reward_kl.png", lambda: plot_ppo_reward_kl(runs, out)),
        ("ppo_exact_match.png", lambda: plot_ppo_exact_match(runs, out)),
        ("eval_before_after.png", lambda: plot_before_after(eval_path, out)),
    ]
    written = []
    for name, draw in jobs:
        try:
            written.append(draw())
            log(f"wrote {written[-1]}")
        except Skip as reason:
            log(f"skipped {name}: {reason}")
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            log(f"skipped {name}: unreadable input ({type(err).__name__}: {err})")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppo_double.plots",
        description="PNG plots from the runs' logs (same as `ppo-double plots`).",
    )
    parser.add_argument("--runs_dir", default="outputs", help="folder holding sft/, reward/, ppo/ (default: outputs)")
    parser.add_argument("--output_dir", default=None, help="where to write the PNGs (default: RUNS_DIR/plots)")
    parser.add_argument("--eval_json", default=None, help="before/after numbers (default: RUNS_DIR/eval.json)")
    args = parser.parse_args(argv)
    if not render_plots(args.runs_dir, args.output_dir, args.eval_json):
        print(f"error: nothing to plot under {args.runs_dir!r}: run the stages first (make all)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
