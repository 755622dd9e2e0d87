"""A study's page, from its records in the store: its tables and pictures, written whole. Nothing here runs or
measures: the same store gives the same page every time (stats.py fixes the bootstrap's random state).
"""

import itertools
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import stats

from ppo_double.evaluate import TEST_SAMPLES
from ppo_double.pipeline import STAGES
from ppo_double.task import PREFIXES

DASH = "—"


def pct(value, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}%"


def num(value, spec: str = ".0f") -> str:
    return DASH if value is None else format(value, spec)


def per_prefix(values: dict | None) -> str:
    return DASH if not values else " / ".join(pct(values[p]) for p in PREFIXES)


def interval(estimate, spec: str = ".0f", scale: float = 1.0) -> str:
    """`point [low, high]` of a (point, low, high) from stats.py, scaled; the point alone where it has no bounds."""
    if estimate is None:
        return DASH
    point, low, high = (scale * value for value in estimate)
    return format(point, spec) if math.isnan(low) else f"{point:{spec}} [{low:{spec}}, {high:{spec}}]"


def table(header: list[str], rows: list[list[str]]) -> str:
    """Markdown, without the columns no row has a number in (e.g. pipeline seconds where every stage was cached)."""
    empty = ("", DASH, f"{DASH} ({DASH})")
    keep = [i for i in range(len(header)) if i == 0 or any(row[i] not in empty for row in rows)]
    lines = [[header[i] for i in keep], ["---"] * len(keep), *([row[i] for i in keep] for row in rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def outcome(record: dict) -> str:
    """One line on a run, for the console."""
    if record["failed_stage"]:
        return f"failed at {record['failed_stage']} (log: its folder's .log under the work dir)"
    m = record["metrics"]
    parts = [f"{stage} {r['wall_s']:.0f} s" for stage, r in record["stages"].items() if not r["cached"]]
    if "greedy_exact_match" in m:
        parts += [f"{m['completions']} completions", f"greedy {per_prefix(m['greedy_exact_match'])}"]
        parts += [f"sampled {per_prefix(m['sampled_exact_match'])}"]
    if "target_met" in m:
        parts.append("every target met" if m["target_met"] else "a target missed")
    return ", ".join(parts)


# --- the tables -----------------------------------------------------------------------------------------------------
def invalid_caught(m: dict) -> str:
    kinds = [v for k, v in m.get("reward_accuracy", {}).items() if k.startswith("invalid/")]
    return f"{pct(m['reward_invalid'], 2)} ({pct(min(kinds, default=None), 1)})"


def sampled_correct(m: dict) -> str:
    change, bound = 100 * m["keep_change"], 100 * m["keep_lower"]  # the paired test's change and its lower bound
    return f"{pct(m['sft_sampled_correct'], 2)} → {pct(m['sampled_correct'], 2)} ({change:+.2f}, bound {bound:+.2f})"


def rollouts(m: dict) -> str:
    return f"{m['final_reward']:.3f} / {pct(m['final_judged'])} (gap {m['final_reward'] - m['final_judged']:+.3f})"


# a run's columns after its variant, seed and wall times: (header, the metric its cell needs, the cell of its metrics)
RUN_COLUMNS = [
    ("SFT's own sampled correct (floor 98 %)", "sft_own_correct", lambda m: pct(m["sft_own_correct"])),
    ("total s (units)", "total_s", lambda m: f"{num(m['total_s'])} ({num(m.get('total_units'))})"),
    ("reward: invalid caught (lowest kind)", "reward_invalid", invalid_caught),
    ("completions", "completions", lambda m: num(m["completions"])),
    ("onset (every prefix ≥ 90 % greedy)", "onset", lambda m: num(m["onset"])),
    ("completions to target", "completions", lambda m: num(m["completions_to_target"])),
    (f"greedy exact {' / '.join(PREFIXES)}", "greedy_exact_match", lambda m: per_prefix(m["greedy_exact_match"])),
    (f"sampled exact {' / '.join(PREFIXES)}", "sampled_exact_match", lambda m: per_prefix(m["sampled_exact_match"])),
    ("sampled correct SFT → run", "sft_sampled_correct", sampled_correct),
    ("lowest greedy correct in training", "min_greedy_correct", lambda m: pct(m["min_greedy_correct"])),
    ("reward / judged exact of the last rollouts", "final_reward", rollouts),
    ("every target", "target_met", lambda m: "yes" if m["target_met"] else "**no**"),
]
# a variant's cells, of its row in stats.summary
CELL = {
    "met": lambda row: (
        DASH
        if row["met"] is None
        else f"{row['met']}/{row['runs']} [{100 * row['met_low']:.0f}–{100 * row['met_high']:.0f} %]"
    ),
    "reached": lambda row: (
        DASH
        if not row["needed"]
        else f"{interval(row['completions_to_target'])} ({row['completions_to_target_n']}/{row['runs']})"
    ),
    "lowest": lambda row: pct(row["min_greedy_correct"]),
    "change": lambda row: interval(row["correct_change"], "+.2f", scale=100),
    "seconds": lambda row: f"{interval(row['seconds_to_target'])} ({interval(row['units_to_target'])})",
    "total": lambda row: f"{interval(row['total_s'])} ({interval(row['total_units'])})",
}
SUMMARY_COLUMNS = [  # (header, cell)
    ("runs (failed)", lambda row: f"{row['runs']} ({row['failed']})"),
    ("every target met [95 % Wilson]", CELL["met"]),
    ("completions to target, IQM [95 % CI] (runs reaching it)", CELL["reached"]),
    ("s to target, IQM (plain-loop units)", CELL["seconds"]),
    ("pipeline s, IQM [95 % CI] (units)", CELL["total"]),
    ("sampled correct change vs SFT, points, mean [95 % CI]", CELL["change"]),
    ("lowest greedy correct in training", CELL["lowest"]),
    ("SFT's own sampled correct, lowest (floor 98 %)", lambda row: pct(row["sft_own_correct"])),
    ("reward − judged exact of the last rollouts, IQM [95 % CI]", lambda row: interval(row["reward_gap"], "+.3f")),
]
RANKING_HEADER = ["variant", "against", "P(the defaults need fewer completions) [95 % CI]"]
RANKING_HEADER += ["every target met [95 % Wilson] vs the defaults"]
RANKING_HEADER += ["completions to target, IQM [95 % CI] (runs reaching it) vs the defaults' IQM"]
RANKING_HEADER += [
    "lowest greedy correct in training vs the defaults",
    "sampled correct change vs SFT, points [95 % CI]",
]


def run_table(records: list[dict]) -> str:
    header = ["variant", "seed", f"wall s ({' / '.join(STAGES)})", *(name for name, _, _ in RUN_COLUMNS)]
    rows = []
    for r in records:
        m, cells = r["metrics"], [r["variant"], str(r["seed"])]
        if r["failed_stage"]:
            rows.append([*cells, f"failed: {r['failed_stage']}", *[""] * len(RUN_COLUMNS)])
        else:
            walls = {s: "cached" if x["cached"] else f"{x['wall_s']:.0f}" for s, x in r["stages"].items()}
            rows.append([*cells, " / ".join(walls.get(s, DASH) for s in STAGES)])
            rows[-1] += [cell(m) if k in m else DASH for _, k, cell in RUN_COLUMNS]
    return table(header, rows)


def baseline_of(study: dict) -> dict[str, str]:
    """Each variant's baseline: the study's `baselines` variant with the same algorithm (baselines themselves: none)."""
    algorithm = {v: spec.get("algorithm", "ppo") for v, spec in study.get("variants", {}).items()}
    bases = {algorithm[b]: b for b in study.get("baselines", [])}
    return {v: bases[a] for v, a in algorithm.items() if a in bases and v not in bases.values()}


def ranking(study: dict, frame) -> list[list[str]]:
    """Each variant against its baseline (RANKING_HEADER), the change that costs the most first: by P(a baseline run
    reaches the target in fewer completions than a variant run; one that never reaches it needs more than any)."""
    rows = []
    for variant, base in baseline_of(study).items():
        if variant in frame.index and base in frame.index:
            row, ref = frame.loc[variant], frame.loc[base]
            worse = stats.fewer_is_better(ref["needed"] or [math.inf], row["needed"] or [math.inf])
            ref_reached = num(ref["completions_to_target"] and ref["completions_to_target"][0])
            cells = [variant, base, interval(worse, ".2f"), f"{CELL['met'](row)} vs {ref['met']}/{ref['runs']}"]
            cells += [f"{CELL['reached'](row)} vs {ref_reached}", f"{CELL['lowest'](row)} vs {CELL['lowest'](ref)}"]
            rows.append((-worse[0], [*cells, CELL["change"](row)]))
    return [cells for _, cells in sorted(rows, key=lambda pair: pair[0])]


def report(study: dict, records: list[dict], figure: Path | None = None, folder: Path = Path(".")) -> str:
    """The study's markdown: what ran, each variant ranked against its baseline where the study has baselines, the
    per-variant summary, the runs folded, the machines, then the picture or, ranked, a section per variant with its
    own. With `figure`, draws the pictures (ranked: one per variant, in the folder of the figure's name) and links
    them relative to `folder`, the page's."""
    frame = stats.summary(records)
    ranked = ranking(study, frame)
    targets = "."  # a study short of the RL stage has no targets
    if "rl" in study.get("stages", STAGES):
        evals = [r["settings"].get("eval", []) for r in records]  # the eval stage's --samples, else evaluate.py's
        samples = sorted({int(a[a.index("--samples") + 1]) if "--samples" in a else TEST_SAMPLES for a in evals})
        targets = (
            "; the sampled-correct change is paired per seed (the eval stage samples the SFT and the run on the same "
            f"prompts, {' or '.join(map(str, samples))} answers each), with a t interval. [Every target]"
            "(../glossary.md#target): as `ppo_double/targets.py` checks it; the runs' table gives the paired test of "
            "[keeping its arithmetic](../glossary.md#keeps-its-arithmetic) as (change, bound) in points."
        )
    parts = [
        " ".join(str(study.get("description", "")).split()),
        f"Per variant, over its seeds (`python bench/run.py bench/studies/{study['name']}.yaml`; records in "
        f"`bench/results/{study['name']}.jsonl`). IQM: interquartile mean with rliable's stratified-bootstrap 95 % "
        f"interval{targets}",
    ]
    if ranked:
        parts += [
            "Each variant against its algorithm's defaults, ranked by how much the change costs: the probability "
            "that a run on the defaults reaches the target in fewer completions than a run of the variant (a run "
            "that never reaches it counts as needing more; rliable, 95 % CI). 0.5: no difference; above: the "
            "detail helps; below: the change does.",
            table(RANKING_HEADER, ranked),
            "Per variant:",
        ]
    rows = [[name, *(cell(row) for _, cell in SUMMARY_COLUMNS)] for name, row in frame.iterrows()]
    parts.append(table(["variant", *(header for header, _ in SUMMARY_COLUMNS)], rows))
    needed = {variant: runs for variant, runs in frame["needed"].items() if min(runs, default=math.inf) < math.inf}
    pairs = [] if ranked else list(itertools.permutations(needed, 2))
    if len(pairs) > 1:
        rows = [[x, y, interval(stats.fewer_is_better(needed[x], needed[y]), ".2f")] for x, y in pairs]
        parts += [
            "Probability that a run of X reaches the target in fewer completions than a run of Y (rliable, 95 % CI):",
            table(["X", "Y", "P(X needs fewer) [95 % CI]"], rows),
        ]
    parts.append(f"<details><summary>Each run ({len(records)})</summary>\n\n{run_table(records)}\n\n</details>")
    parts.append(machine_line(records))
    if figure and any(r["history"] for r in records) and not ranked:
        curves(records, figure)
        parts.append(f"![{study['name']}: IQM over seeds with 95 % bands]({os.path.relpath(figure, folder)})")
    elif figure and any(r["history"] for r in records):  # a section per variant, its picture beside its baseline
        parts.append("## Each variant beside its baseline")
        for variant, base, *rest in ranked:
            signature = study["variants"][variant].get("signature")
            panels = [*JUDGED, *([("logged", signature, signature)] if signature else [])]
            drawn = Path(figure).with_suffix("") / f"{variant}.png"
            curves([r for r in records if r["variant"] in (base, variant)], drawn, panels)
            picture = f"![{variant} against {base}: IQM over seeds with 95 % bands]({os.path.relpath(drawn, folder)})"
            parts.append(f"### `{variant}`\n\n{table(RANKING_HEADER, [[variant, base, *rest]])}\n\n{picture}")
    return "\n\n".join(part for part in parts if part)


def machine_line(records: list[dict]) -> str:
    """The machines, versions and commits the records come from (several when a study grew over time), each with the
    range of its runs' plain-loop measurements (one per invocation: a study run seed by seed has one per run)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        threads = "make all's threads" if r["jobs"] == 1 else f"{r['jobs']} runs at once, one thread each"
        where = f"{r['machine']['cpu_count']} CPU cores ({r['machine']['cpu'] or 'cpu unknown'}), {threads}"
        versions = ", ".join(f"{name} {v}" for name, v in r["versions"].items())
        groups.setdefault((where, f"{versions}; commit {r['git_commit'][:8]}; {r['date']}"), []).append(r)

    def span(values):
        low, high = f"{min(values):.2f}", f"{max(values):.2f}"
        return low if low == high else f"{low}–{high}"

    lines = []
    for (where, what), runs in groups.items():
        plain = span([r["plain_loop_s_per_100"] for r in runs])
        ratio = span([r["recipe_sft_s_per_100"] / r["plain_loop_s_per_100"] for r in runs])
        lines.append(
            f"{len(runs)} run(s): {where}, plain loop {plain} s / 100 SFT steps (recipes/sft.py {ratio}x); {what}"
        )
    return "Measured on: " + "; ".join(lines) + "."


# --- the pictures ---------------------------------------------------------------------------------------------------
def on_grid(series: list[list[dict]], name: str, x: str = "episode") -> tuple[np.ndarray, np.ndarray]:
    """`name` of each run at every completion count (`x`) any of them has it at, a run holding its last value after
    it stopped early (the policy it saved) and its first before it first has it."""
    points = [{e[x]: e[name] for e in run if e.get(name) is not None and e.get(x) is not None} for run in series]
    grid = pd.concat(map(pd.Series, points), axis=1).sort_index().ffill().bfill()
    return grid.index.to_numpy(), grid.to_numpy(dtype=float).T


# (records' field, the value's name in it, the axis label); `logged` rows count completions under "completions"
JUDGED = [
    ("history", "exact_match", "greedy exact match (validation)"),
    ("history", "correct", "greedy correct share (validation)"),
]


def curves(records: list[dict], path: Path, panels: list[tuple[str, str, str]] | None = None) -> None:
    """Per panel, against completions, per variant: the IQM over its seeds with its 95 % band. Default panels:
    validation greedy exact match and sampled correct share and, for runs that log their rollouts, what the reward
    paid them minus the judge's exact match of the same rollouts."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    if panels is None:
        panels = [JUDGED[0], ("history", "sampled_correct", "sampled correct share (validation)")]
        if any(r["rollouts"] for r in records):
            panels.append(("rollouts", "gap", "reward − judged exact match (training rollouts)"))
    fig = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels))
    variants = list(dict.fromkeys(r["variant"] for r in records))
    for variant, color in zip(variants, itertools.cycle(f"C{i}" for i in range(10))):
        runs = [r for r in records if r["variant"] == variant and not r["failed_stage"]]
        for ax, (source, name, label) in zip(axes, panels):
            x = "completions" if source == "logged" else "episode"
            series = [[{**e, "gap": e.get("reward", 0) - e.get("judged", 0)} for e in r.get(source, [])] for r in runs]
            if not series or not all(any(e.get(name) is not None for e in run) for run in series):
                continue
            grid, matrix = on_grid(series, name, x)
            point, low, high = stats.iqm_curves(matrix)
            ax.plot(grid, point, color=color, label=f"{variant} (IQM of {len(series)})")
            ax.fill_between(grid, low, high, color=color, alpha=0.2)
            ax.set(xlabel="completions", ylabel=label)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].set(ylim=(0, 1.02))
    axes[0].legend(loc="lower right")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


# --- the pages ------------------------------------------------------------------------------------------------------
def page(study: dict, records: list[dict], document: str) -> str:
    """A study's page, written whole: a title, where it comes from, the document."""
    seeds = sorted(r["seed"] for r in records)
    return (
        f"# The `{study['name']}` study, seeds {seeds[0]}–{seeds[-1]}\n\nWritten whole by `bench/run.py --page` from "
        "the store (`--report-only`: nothing run); change the study or its records, not this page.\n\n"
        f"{document}\n"
    )
