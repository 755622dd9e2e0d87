"""Write the README's headline from the store: the block between its `bench:headline` markers, the one part of a page
written by hand that the store's numbers are spliced into (every study page is written whole by bench/run.py).

The runs are the pipeline study's records (bench/studies/pipeline.yaml, its own seeds on the current recipes' defaults)
in bench/results/pipeline.jsonl, as `bench/run.py bench/studies/pipeline.yaml --report-only` reads them.

    python docs/headline.py            # writes the block into README.md
"""

import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import run  # noqa: E402
import stats  # noqa: E402
from render import pct, table  # noqa: E402
from store import RESULTS, Store  # noqa: E402

from ppo_double.task import PREFIXES  # noqa: E402

README = ROOT / "README.md"
START, END = "<!-- bench:headline:start -->", "<!-- bench:headline:end -->"


def pipeline_runs() -> list[dict]:
    """The pipeline study's records under its current keys (one variant: in seed order)."""
    return run.current_records(
        run.load_study(ROOT / "bench" / "studies" / "pipeline.yaml"), Store(RESULTS / "pipeline.jsonl")
    )


def headline(records: list[dict], seed: int = 42) -> str:
    """The README's headline: how many seeds met every target (Wilson interval), the paired sampled-correct change,
    where PPO stopped, and `seed`'s run per prefix. No bootstrap: cheap to re-render in a test."""
    done = [r["metrics"] for r in records if not r["failed_stage"]]
    met = sum(bool(m.get("target_met")) for m in done)
    low, high = stats.wilson(met, len(records))
    pairs = zip(*((m["sampled_correct"], m["sft_sampled_correct"]) for m in done))
    change, c_low, c_high = (100 * v for v in stats.paired_change(*pairs))
    stops = sorted(m["completions"] for m in done)
    seeds = sorted(r["seed"] for r in records)
    one = next(r for r in records if r["seed"] == seed)
    m, start = one["metrics"], one["history"][0]
    modes = {"greedy_exact_match": "exact_match", "sampled_exact_match": "sampled_exact_match"}  # record: history
    rows = [
        [f"`{p}`", *(f"{pct(start[f'{k}/{p}'])} → **{pct(m[name][p])}**" for name, k in modes.items())]
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


def with_headline(readme: str, block: str) -> str:
    """`readme` with `block` between its headline markers. ValueError unless the page has the markers once."""
    new, found = re.subn(f"{START}.*?{END}", lambda _: f"{START}\n\n{block.strip()}\n\n{END}", readme, flags=re.S)
    if found != 1:
        raise ValueError(f"expected one {START} ... {END} pair, found {found}")
    return new


def main() -> int:
    README.write_text(with_headline(README.read_text(encoding="utf-8"), headline(pipeline_runs())), encoding="utf-8")
    print(f"wrote the headline into {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
