"""Tables and pictures of a study, from its records in the store; the README's marked blocks.

Nothing here runs or measures: `python bench/run.py STUDY --report-only` writes the same document from the same
store every time (the bootstrap's random state is fixed in stats.py).
"""

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import stats

from ppo_double.task import PREFIXES

DASH = "—"


def pct(value, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}%"


def num(value, spec: str = ".0f") -> str:
    return DASH if value is None else format(value, spec)


def per_prefix(values: dict | None) -> str:
    return DASH if not values else " / ".join(pct(values[p]) for p in PREFIXES)


def interval(estimate, spec: str = ".0f", scale: float = 1.0) -> str:
    """`IQM [low, high]` of stats.iqm / paired_change, scaled."""
    if estimate is None:
        return DASH
    point, low, high = (scale * value for value in estimate)
    if math.isnan(low):
        return format(point, spec)
    return f"{point:{spec}} [{low:{spec}}, {high:{spec}}]"


def table(header: list[str], rows: list[list[str]]) -> str:
    """Markdown, without the columns no row has a number in (e.g. pipeline seconds where every stage was cached)."""
    keep = [
        i for i in range(len(header)) if i == 0 or any(row[i] not in ("", DASH, f"{DASH} ({DASH})") for row in rows)
    ]
    header, rows = [header[i] for i in keep], [[row[i] for i in keep] for row in rows]
    lines = [header, ["---"] * len(header), *rows]
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


# --- the document ---------------------------------------------------------------------------------------------------


def run_rows(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per run: the columns some record has a number for."""
    columns = [
        ("wall s (" + " / ".join(("sft", "reward", "rl", "eval")) + ")", None, lambda r, m: walls(r)),
        ("total s (units)", "total_s", lambda r, m: f"{num(m['total_s'])} ({num(m.get('total_units'))})"),
        ("reward: invalid caught (lowest kind)", "reward_invalid", reward_cell),
        ("completions", "completions", lambda r, m: num(m["completions"])),
        (f"onset (every prefix ≥ {100 * 0.9:g} % greedy)", "onset", lambda r, m: num(m["onset"])),
        ("completions to target", "completions", lambda r, m: num(m["completions_to_target"])),
        *(
            (f"{mode} exact {' / '.join(PREFIXES)}", name, lambda r, m, name=name: per_prefix(m[name]))
            for mode, name in (("greedy", "greedy_exact_match"), ("sampled", "sampled_exact_match"))
        ),
        ("sampled correct SFT → run", "sft_sampled_correct", correct_cell),
        ("lowest greedy correct in training", "min_greedy_correct", lambda r, m: pct(m["min_greedy_correct"])),
        ("reward / judged exact of the last rollouts", "final_reward", rollout_cell),
        ("every target", "target_met", lambda r, m: "yes" if m["target_met"] else "**no**"),
    ]
    present = [c for c in columns if c[1] is None or any(c[1] in r["metrics"] for r in records)]
    rows = []
    for r in records:
        if r["failed_stage"]:
            rows.append([r["variant"], str(r["seed"]), f"failed: {r['failed_stage']}", *[""] * (len(present) - 1)])
        else:
            m = r["metrics"]
            rows.append(
                [r["variant"], str(r["seed"]), *(cell(r, m) if k is None or k in m else DASH for _, k, cell in present)]
            )
    return ["variant", "seed", *(name for name, _, _ in present)], rows


def walls(record: dict) -> str:
    stages = record["stages"]
    return " / ".join(
        DASH if s not in stages else "cached" if stages[s]["cached"] else f"{stages[s]['wall_s']:.0f}"
        for s in ("sft", "reward", "rl", "eval")
    )


def reward_cell(record: dict, m: dict) -> str:
    kinds = [v for k, v in m.get("reward_accuracy", {}).items() if k.startswith("invalid/")]
    return f"{pct(m['reward_invalid'], 2)} ({pct(min(kinds, default=None), 1)})"


def correct_cell(record: dict, m: dict) -> str:
    return f"{pct(m['sft_sampled_correct'], 2)} → {pct(m['sampled_correct'], 2)}"


def rollout_cell(record: dict, m: dict) -> str:
    return f"{m['final_reward']:.3f} / {pct(m['final_judged'])} (gap {m['final_reward'] - m['final_judged']:+.3f})"


def summary_rows(frame) -> tuple[list[str], list[list[str]]]:
    """The per-variant table of a stats.summary frame."""
    header = [
        "variant",
        "runs (failed)",
        "every target met [95 % Wilson]",
        "completions to target, IQM [95 % CI] (runs reaching it)",
        "s to target, IQM (plain-loop units)",
        "pipeline s, IQM [95 % CI] (units)",
        "sampled correct change vs SFT, points, mean [95 % CI]",
        "lowest greedy correct in training",
        "reward − judged exact of the last rollouts, IQM [95 % CI]",
    ]
    rows = []
    for variant, row in frame.iterrows():

        def units(name, row=row):
            return interval(row[name], ".0f") if row[name] else DASH

        rows.append(
            [
                variant,
                f"{row['runs']} ({row['failed']})",
                met_cell(row),
                reached_cell(row),
                f"{interval(row['seconds_to_target'])} ({units('units_to_target')})",
                f"{interval(row['total_s'])} ({units('total_units')})",
                interval(row["correct_change"], "+.2f", scale=100),
                pct(row["min_greedy_correct"]),
                interval(row["reward_gap"], "+.3f"),
            ]
        )
    return header, rows


def completions_needed(records: list[dict]) -> dict[str, list[float]]:
    """Per variant, each finished RL run's completions to the target (inf: never reached it)."""
    needed = {}
    for r in records:
        if not r["failed_stage"] and "completions" in r["metrics"]:
            needed.setdefault(r["variant"], []).append(r["metrics"]["completions_to_target"] or math.inf)
    return needed


def met_cell(row) -> str:
    """`met/runs [Wilson 95 %]` of a stats.summary row."""
    return f"{row['met']}/{row['runs']} [{100 * row['met_low']:.0f}–{100 * row['met_high']:.0f} %]"


def reached_cell(row) -> str:
    """`IQM [95 % CI] (reached/runs)` of a stats.summary row's completions to the target."""
    return f"{interval(row['completions_to_target'])} ({row['completions_to_target_n']}/{row['runs']})"


def improvement_rows(records: list[dict]) -> list[list[str]]:
    """P(X reaches the target in fewer completions than Y), every ordered pair of variants; a run that never
    reached it counts as needing more than any that did."""
    needed = {variant: runs for variant, runs in completions_needed(records).items() if min(runs) < math.inf}
    rows = []
    for x, y in itertools.permutations(needed, 2):
        rows.append([x, y, interval(stats.fewer_is_better(needed[x], needed[y]), ".2f")])
    return rows


def analysis(study: dict, records: list[dict]) -> tuple[pd.DataFrame, list[list[str]]]:
    """stats.summary's per-variant frame and (with baselines) the ranking against them: both bootstrap, and both the
    report and the page's per-detail blocks show them, so they are computed once."""
    frame = stats.summary(records)
    return frame, detail_rows(study, records, frame)


def report(study: dict, records: list[dict], analysed: tuple, figure: Path | None = None) -> str:
    """The study's markdown: what ran, (with baselines) each variant ranked against its baseline, the per-variant
    summary with intervals, the runs (folded), the machine, the picture(s). `analysed`: analysis(study, records)."""
    frame, ranked = analysed
    header, rows = summary_rows(frame)
    parts = [
        " ".join(str(study.get("description", "")).split()),
        f"Per variant, over its seeds (`python bench/run.py bench/studies/{study['name']}.yaml`; records in "
        f"`bench/results/{study['name']}.jsonl`). IQM: interquartile mean with rliable's stratified-bootstrap 95 % "
        "interval; the sampled-correct change is paired per seed (the eval stage samples the SFT and the run on the "
        "same prompts), with a t interval. Targets (every prefix, held-out test numbers): greedy ≥ 99.5 % and "
        "sampled ≥ 98 % exact match, sampled correct share ≥ the SFT's, greedy correct ≥ 97 % at every judgement "
        "during training, the reward catching ≥ 99 % of invalid answers (a classifier with an invalid class).",
    ]
    if ranked:
        parts += [
            "Each variant against its algorithm's defaults, ranked by how much the change costs: the probability "
            "that a run on the defaults reaches the target in fewer completions than a run of the variant (a run "
            "that never reaches it counts as needing more; rliable, 95 % CI). 0.5: no difference; above: the "
            "detail helps; below: the change does.",
            table(DETAIL_HEADER, ranked),
            "Per variant:",
        ]
    parts.append(table(header, rows))
    pairs = improvement_rows(records) if not ranked else []
    if len(pairs) > 1:
        parts += [
            "Probability that a run of X reaches the target in fewer completions than a run of Y (rliable, 95 % CI):",
            table(["X", "Y", "P(X needs fewer) [95 % CI]"], pairs),
        ]
    header, rows = run_rows(records)
    parts += [f"<details><summary>Each run ({len(records)})</summary>\n\n{table(header, rows)}\n\n</details>"]
    parts.append(machine_line(records))
    if figure and any(r["history"] for r in records):
        if ranked:  # one picture per variant beside its baseline, for the page that explains them
            detail_figures(study, records, Path(figure).with_suffix(""))
        else:
            parts.append(f"![{study['name']}: IQM over seeds with 95 % bands]({figure})")
            curves(records, figure)
    return "\n\n".join(part for part in parts if part)


def machine_line(records: list[dict]) -> str:
    """The machines, versions and commits the records come from (several when a study grew over time)."""
    seen = {}
    for r in records:
        versions = ", ".join(f"{name} {v}" for name, v in r["versions"].items())
        machine = f"{r['machine']['cpu_count']} CPU cores ({r['machine']['cpu'] or 'cpu unknown'})"
        threads = "make all's threads" if r["jobs"] == 1 else f"{r['jobs']} runs at once, one thread each"
        plain = f"plain loop {num(r['plain_loop_s_per_100'], '.2f')} s / 100 SFT steps"
        plain += f" (recipes/sft.py {r['recipe_sft_s_per_100'] / r['plain_loop_s_per_100']:.2f}x)"
        line = f"{machine}, {threads}, {plain}; {versions}; commit {r['git_commit'][:8]}; {r['date']}"
        seen[line] = seen.get(line, 0) + 1
    return "Measured on: " + "; ".join(f"{n} run(s): {line}" for line, n in seen.items()) + "."


# --- the picture ----------------------------------------------------------------------------------------------------


def on_grid(series: list[list[dict]], name: str, x: str = "episode") -> tuple[np.ndarray, np.ndarray]:
    """`name` of each run at every completion count (`x`) any of them has it at, a run holding its last value after
    it stopped early (the policy it saved) and its first before it first has it."""
    series = [[e for e in run if e.get(name) is not None and e.get(x) is not None] for run in series]
    grid = np.array(sorted({e[x] for run in series for e in run}))
    matrix = []
    for run in series:
        done = np.array([e[x] for e in run])
        values = np.array([e[name] for e in run], dtype=float)
        matrix.append(values[np.clip(np.searchsorted(done, grid, side="right") - 1, 0, None)])
    return grid, np.array(matrix)


# (records' field, the value's name in it, the axis label); `logged` rows count completions under "completions"
JUDGED = [
    ("history", "exact_match", "greedy exact match (validation)"),
    ("history", "correct", "greedy correct share (validation)"),
]


def curves(records: list[dict], path: Path, panels: list[tuple[str, str, str]] | None = None) -> Path:
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
    return Path(path)


# --- details: each variant against its algorithm's defaults ----------------------------------------------------------


def baseline_of(study: dict) -> dict[str, str]:
    """Each variant's baseline: the study's `baselines` variant with the same algorithm (baselines themselves: none)."""
    algorithm = {v: (spec or {}).get("algorithm", "ppo") for v, spec in study.get("variants", {}).items()}
    bases = {algorithm[b]: b for b in study.get("baselines", [])}
    return {v: bases[a] for v, a in algorithm.items() if a in bases and v not in bases.values()}


def detail_rows(study: dict, records: list[dict], frame: pd.DataFrame) -> list[list[str]]:
    """Per variant against its baseline, ranked by P(a baseline run reaches the target in fewer completions than a
    variant run; never reaching it counts as needing more than any run that did): first, the details whose change
    costs the most."""
    needed = completions_needed(records)
    rows = []
    for variant, base in baseline_of(study).items():
        if variant not in frame.index or base not in frame.index:
            continue
        row, ref = frame.loc[variant], frame.loc[base]
        worse = stats.fewer_is_better(needed.get(base, [math.inf]), needed.get(variant, [math.inf]))
        rows.append(
            (
                -worse[0],
                [
                    variant,
                    base,
                    interval(worse, ".2f"),
                    f"{met_cell(row)} vs {ref['met']}/{ref['runs']}",
                    f"{reached_cell(row)} vs {num(ref['completions_to_target'] and ref['completions_to_target'][0])}",
                    f"{pct(row['min_greedy_correct'])} vs {pct(ref['min_greedy_correct'])}",
                    interval(row["correct_change"], "+.2f", scale=100),
                ],
            )
        )
    return [cells for _, cells in sorted(rows, key=lambda pair: pair[0])]


DETAIL_HEADER = [
    "variant",
    "against",
    "P(the defaults need fewer completions) [95 % CI]",
    "every target met [95 % Wilson] vs the defaults",
    "completions to target, IQM [95 % CI] (runs reaching it) vs the defaults' IQM",
    "lowest greedy correct in training vs the defaults",
    "sampled correct change vs SFT, points [95 % CI]",
]


def detail_blocks(study: dict, analysed: tuple, folder: str) -> dict[str, str]:
    """Per variant, the markdown its page section shows: its baseline's and its own numbers, the probability that the
    baseline reaches the target in fewer completions, and its picture (written by detail_figures into `folder`).
    `analysed`: analysis(study, records)."""
    frame, rows = analysed
    ranked = {row[0]: row[2] for row in rows}
    blocks = {}
    for variant, base in baseline_of(study).items():
        if variant not in ranked:
            continue
        rows = []
        for name in (base, variant):
            row = frame.loc[name]
            rows.append(
                [
                    f"`{name}`",
                    met_cell(row),
                    reached_cell(row),
                    pct(row["min_greedy_correct"]),
                    interval(row["correct_change"], "+.2f", scale=100),
                ]
            )
        header = ["", "every target [95 % Wilson]", "completions to target, IQM [95 % CI] (runs reaching it)"]
        header += ["lowest greedy correct in training", "sampled correct vs SFT, points [95 % CI]"]
        blocks[variant] = "\n\n".join(
            [
                table(header, rows),
                f"P(a `{base}` run reaches the target in fewer completions than a `{variant}` run) = "
                f"{ranked[variant]}.",
                f"![{variant} against {base}: IQM over seeds with 95 % bands]({folder}/{variant}.png)",
            ]
        )
    return blocks


def detail_figures(study: dict, records: list[dict], folder: Path) -> dict[str, Path]:
    """One picture per variant: its baseline's and its own judged curves beside its `signature` logged metric."""
    figures = {}
    for variant, base in baseline_of(study).items():
        signature = (study["variants"][variant] or {}).get("signature")
        runs = [r for r in records if r["variant"] in (base, variant)]
        if not any(r["variant"] == variant for r in runs):
            continue
        panels = [*JUDGED, *([("logged", signature, signature)] if signature else [])]
        figures[variant] = curves(runs, Path(folder) / f"{variant}.png", panels)
    return figures


# --- README blocks --------------------------------------------------------------------------------------------------


def markers(study: dict) -> tuple[str, str]:
    name = study.get("readme", study["name"])
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def marker_lines(lines: list[str], pair: tuple[str, str]) -> tuple[int, int]:
    """Indices of the start and end marker lines; ValueError when missing, repeated or out of order."""
    starts = [i for i, line in enumerate(lines) if line.strip() == pair[0]]
    ends = [i for i, line in enumerate(lines) if line.strip() == pair[1]]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise ValueError(
            f"expected one line {pair[0]!r} followed by one line {pair[1]!r}; found {len(starts)} start and "
            f"{len(ends)} end markers"
        )
    return starts[0], ends[0]


def check_markers(path: Path, study: dict) -> None:
    """Before anything runs: the file has the study's markers, its whole block's or a part's (`<!-- NAME:PART:start
    -->`, e.g. the headline), else a ValueError naming the file, one line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        if f"<!-- {study.get('readme', study['name'])}:" not in text:
            marker_lines(text.splitlines(), markers(study))  # raises, naming the markers it expected
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


def replace_between(text: str, block: str, pair: tuple[str, str]) -> str:
    lines = text.splitlines()
    start, end = marker_lines(lines, pair)
    new = [*lines[: start + 1], "", *block.strip("\n").splitlines(), "", *lines[end:]]
    return "\n".join(new) + ("\n" if text.endswith("\n") else "")


def write_markers(path: Path, study: dict, block: str, details: dict[str, str] | None = None) -> None:
    """The study's block between its markers and each of `details` (part: block, e.g. a variant's section or the
    headline) between `<!-- NAME:PART:start -->` and its end marker, where the file has them."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if markers(study)[0] in text:
        text = replace_between(text, block, markers(study))
    for variant, detail in (details or {}).items():
        pair = tuple(marker.replace(":", f":{variant}:", 1) for marker in markers(study))
        if pair[0] in text:
            text = replace_between(text, detail, pair)
    path.write_text(text, encoding="utf-8")


def headline(records: list[dict], seed: int = 42) -> str:
    """The README's headline: how many seeds met every target (Wilson interval), the paired sampled-correct change,
    where PPO stopped, and `seed`'s run per prefix. Closed-form statistics only (no bootstrap): cheap to re-render in a
    test."""
    done = [r["metrics"] for r in records if not r["failed_stage"]]
    met = sum(bool(m.get("target_met")) for m in done)
    low, high = stats.wilson(met, len(records))
    change, c_low, c_high = (
        100 * v for v in stats.paired_change(*zip(*((m["sampled_correct"], m["sft_sampled_correct"]) for m in done)))
    )
    stops = sorted(m["completions"] for m in done)
    seeds = sorted(r["seed"] for r in records)
    one = next(r for r in records if r["seed"] == seed)
    m, start = one["metrics"], one["history"][0]
    rows = [
        [
            f"`{p}`",
            f"{pct(start[f'exact_match/{p}'])} → **{pct(m['greedy_exact_match'][p])}**",
            f"{pct(start[f'sampled_exact_match/{p}'])} → **{pct(m['sampled_exact_match'][p])}**",
        ]
        for p in PREFIXES
    ]
    return "\n\n".join(
        [
            f"**Every target met on {met} of {len(records)} seeds** ({seeds[0]}–{seeds[-1]}; 95 % Wilson interval "
            f"{100 * low:.0f}–{100 * high:.0f} %). Sampled answers are right doubles {change:+.2f} points more often "
            f"than the SFT's (paired over seeds, 95 % CI {c_low:+.2f} to {c_high:+.2f}); PPO trained a median of "
            f"{np.median(stops):.0f} episodes ({stops[0]}–{stops[-1]}). Seed {seed}, before PPO (the SFT policy, "
            "judged on the validation numbers before the first update) → after (held-out test numbers):",
            table(["prefix", "greedy exact match", "sampled exact match"], rows),
            f"Sampled answers that are right doubles, in any system: {pct(m['sft_sampled_correct'], 2)} (SFT) → "
            f"{pct(m['sampled_correct'], 2)} (PPO).",
        ]
    )
