"""What `make all` ran, in one screen: each stage's wall time, the before -> after table, the targets met or missed,
where the models are, what to try next. `ppo-double summary` prints it again; the pipeline prints it at its end.

It reads only what the stages wrote under the runs folder: `wall_times.tsv` (the pipeline's, one `stage<TAB>seconds`
line per stage, the RL stage under its algorithm's name), `eval.json` (`make eval`'s) and the stage folders (their
layout, `folders`, is the pipeline's; the targets: ppo_double.targets, once the RL stage and the eval have run).
"""

import json
import os
from pathlib import Path

from .errors import UsageError

SIDE_BY_SIDE = ("sft", "reward")  # stages the pipeline runs at once, each on half the cores
ALGORITHMS = ("ppo", "grpo", "rloo")  # the RL stage's choices; its folder is named after its algorithm


def folders(output_dir: Path, algorithm: str = "ppo") -> dict[str, Path]:
    """Where each stage writes: `<output_dir>/sft`, `reward`, `<algorithm>` and `eval.json`."""
    out = Path(output_dir)
    return {"sft": out / "sft", "reward": out / "reward", "rl": out / algorithm, "eval": out / "eval.json"}


def pipeline_seconds(seconds: dict[str, float]) -> float:
    """Wall time of the stages in `seconds` as the pipeline runs them: the longer of SFT and reward, then the rest."""
    together = [value for stage, value in seconds.items() if stage in SIDE_BY_SIDE]
    return max(together, default=0) + sum(value for stage, value in seconds.items() if stage not in SIDE_BY_SIDE)


def read_wall_times(path: str) -> dict[str, int]:
    with open(path, encoding="utf-8") as f:
        return {stage: int(seconds) for stage, seconds in (line.split("\t") for line in f.read().splitlines() if line)}


def rl_folder(runs_dir: str, times: dict[str, int]) -> str:
    """The RL stage's folder name: the algorithm wall_times.tsv names, else the first of ppo, grpo, rloo present."""
    named = [name for name in ALGORITHMS if name in times]
    present = [name for name in ALGORITHMS if os.path.isdir(os.path.join(runs_dir, name))]
    return (named or present or ["ppo"])[0]


def summarize(runs_dir: str) -> str:
    """The summary's text; UsageError when nothing has run under `runs_dir`."""
    from .evaluate import format_comparison
    from .targets import report

    def path(name: str) -> str:
        return os.path.join(runs_dir, name)

    times = read_wall_times(path("wall_times.tsv")) if os.path.isfile(path("wall_times.tsv")) else {}
    rl = rl_folder(runs_dir, times)
    names = {"sft": "SFT policy", "reward": "reward classifier", rl: f"{rl.upper()} policy"}
    models = [f"{path(name)} ({what})" for name, what in names.items() if os.path.isdir(path(name))]
    if not models:
        raise UsageError(f"no stage output under {runs_dir!r}: run the stages first (make all)")
    lines = []
    if times:
        total = pipeline_seconds(times)  # sft and reward ran side by side, both timed from their common start
        side_by_side = [stage for stage in SIDE_BY_SIDE if stage in times]
        stages = [" and ".join(f"{s} {times[s]} s" for s in side_by_side) + " side by side"] if side_by_side else []
        stages += [f"{stage} {seconds} s" for stage, seconds in times.items() if stage not in side_by_side]
        lines.append(f"wall time: {', '.join(stages)}; total {total // 60} min {total % 60} s\n")
    if os.path.isfile(path("eval.json")):  # written by `make eval`: {baseline: results, model: results}
        with open(path("eval.json"), encoding="utf-8") as f:
            (before, old), (after, new) = list(json.load(f).items())[-2:]
        lines.append(f"before ({before}) -> after ({after}), held-out test numbers:\n{format_comparison(old, new)}\n")
    if targets := report(folders(runs_dir, rl)):
        lines.append(f"{targets}\n")
    lines.append(f"models (save_pretrained folders): {', '.join(models)}\n")
    lines.append("try next:")
    lines.append(f"  ppo-double generate {path(rl)} 大写:3164 小写:3164 数字:3164")
    lines.append(f"  ppo-double compare {path('sft')} {path(rl)}")
    lines.append("  make plots    # PNG plots of the runs' logs -> outputs/plots/")
    return "\n".join(lines)
