"""Write docs/studies/reward_heldout.md whole from the store: the reward stage on seeds it was not tuned on (issue 34,
item 4); docs/reward_heldout.md says what it measures and reads it.

The runs are the study bench/studies/reward_heldout.yaml's records in bench/results/reward_heldout.jsonl (those of
the current recipes' defaults). The study runs the stage with its floors off, so that a weak classifier is measured
rather than refused; this page applies the floors recipes/reward.py checks (their defaults there) to the stored
numbers: per run, whether it would have passed, the invalid answers caught and the weakest corruption kind; per
thread count and over all runs, how many met every floor, with a 95 % Wilson interval.

    python docs/reward_heldout.py            # writes the page
    python docs/reward_heldout.py --check    # exit 1 when the page is not what the store gives
"""

import argparse
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import render  # noqa: E402
import run  # noqa: E402
import stats  # noqa: E402
from store import RESULTS, Store  # noqa: E402

STUDY = ROOT / "bench" / "studies" / "reward_heldout.yaml"
PAGE = ROOT / "docs" / "studies" / "reward_heldout.md"
SYSTEMS = ("digits", "lower", "upper")
TOTALS = ["threads", "runs meeting every floor [95 % Wilson]", "lowest invalid caught", "lowest kind"]
TOTALS += ["reward s, median (range)"]
RUNS = ["threads", "seed", "digits / lower / upper", "invalid caught", "lowest kind", "floors"]
RUNS += ["reward s (runs at once)"]


def floors() -> dict[str, float]:
    """recipes/reward.py's floors, as its argument defaults give them (min_clean_accuracy, min_invalid_caught,
    min_kind_caught); the YAML does not set them."""
    text = (ROOT / "recipes" / "reward.py").read_text(encoding="utf-8")
    return {name: float(value) for name, value in re.findall(r"(min_\w+): float = field\(default=([0-9.]+)", text)}


def missed(record: dict, floor: dict[str, float]) -> list[str]:
    """`name share` of every class or corruption kind below its floor (as recipes/reward.py checks them)."""
    accuracy = record["metrics"]["reward_accuracy"]
    limits = {system: floor["min_clean_accuracy"] for system in SYSTEMS} | {"invalid": floor["min_invalid_caught"]}
    limits |= {k: floor["min_kind_caught"] for k in accuracy if k.startswith("invalid/")}
    return [f"{k.removeprefix('invalid/')} {render.pct(accuracy[k], 2)}" for k, v in limits.items() if accuracy[k] < v]


def lowest_kind(record: dict) -> tuple[str, float]:
    kinds = {k.removeprefix("invalid/"): v for k, v in record["metrics"]["reward_accuracy"].items() if "/" in k}
    return min(kinds.items(), key=lambda item: (item[1], item[0]))


def met(record: dict, floor: dict[str, float]) -> bool:
    return not record["failed_stage"] and not missed(record, floor)


def threads(record: dict) -> str:
    return str(record["settings"]["threads"])


def wall(record: dict) -> float:
    return record["stages"]["reward"]["wall_s"]


def run_rows(found: list[dict], floor: dict[str, float]) -> list[list[str]]:
    rows = []
    for r in found:
        if r["failed_stage"]:
            rows.append([threads(r), str(r["seed"]), "", "", "", "**failed to run**", ""])
            continue
        accuracy = r["metrics"]["reward_accuracy"]
        kind, share = lowest_kind(r)
        short = missed(r, floor)
        rows.append(
            [
                threads(r),
                str(r["seed"]),
                " / ".join(render.pct(accuracy[s], 2) for s in SYSTEMS),
                render.pct(accuracy["invalid"], 2),
                f"{kind} {render.pct(share, 2)}",
                "met" if not short else "**missed: " + ", ".join(short) + "**",
                f"{wall(r):.0f} ({r['jobs']})",
            ]
        )
    return rows


def total_row(name: str, runs: list[dict], floor: dict[str, float]) -> list[str]:
    done = [r for r in runs if not r["failed_stage"]]
    passed = sum(met(r, floor) for r in runs)
    low, high = stats.wilson(passed, len(runs))
    invalid = min((r["metrics"]["reward_invalid"] for r in done), default=None)
    kinds = [lowest_kind(r) for r in done]
    kind = min(kinds, key=lambda item: item[1], default=None)
    walls = [wall(r) for r in done]
    return [
        name,
        f"{passed}/{len(runs)} [{100 * low:.0f}–{100 * high:.0f} %]",
        render.pct(invalid, 2),
        render.DASH if kind is None else f"{kind[0]} {render.pct(kind[1], 2)}",
        render.DASH if not walls else f"{statistics.median(walls):.0f} ({min(walls):.0f}–{max(walls):.0f})",
    ]


def block(found: list[dict]) -> str:
    """The page's generated part: the floors, the totals with their Wilson intervals, every run, the machine."""
    floor = floors()
    if not found:
        return f"No records yet: run `python bench/run.py {STUDY.relative_to(ROOT)}` (see above)."
    passed = sum(met(r, floor) for r in found)
    low, high = stats.wilson(passed, len(found))
    by_threads = {}
    for r in found:
        by_threads.setdefault(threads(r), []).append(r)
    totals = [total_row(n, runs, floor) for n, runs in by_threads.items()]
    totals.append(total_row("all", found, floor))
    done = [r for r in found if not r["failed_stage"]]
    seeds = sorted({r["seed"] for r in found})
    versions = sorted({f"torch {r['versions']['torch']}" for r in found})
    commits = sorted({r["git_commit"][:8] + ("+dirty" if r["git_commit"].endswith("+dirty") else "") for r in found})
    machines = sorted({f"{r['machine']['cpu_count']} CPU cores ({r['machine']['cpu'] or '?'})" for r in found})
    dates = sorted({r["date"] for r in found})
    return "\n\n".join(
        [
            f"Floors (recipes/reward.py's defaults): each numeral system ≥ {render.pct(floor['min_clean_accuracy'], 2)}"
            f", invalid caught ≥ {render.pct(floor['min_invalid_caught'], 2)}, each kind of corruption ≥ "
            f"{render.pct(floor['min_kind_caught'], 2)}; held-out accuracy on 6 000 answers on the test numbers, "
            "half of them invalid.",
            f"**{passed} of {len(found)} runs meet every floor** (95 % Wilson interval {100 * low:.0f}–"
            f"{100 * high:.0f} %) on seeds {seeds[0]}–{seeds[-1]}; the lowest invalid caught: "
            f"{render.pct(min((r['metrics']['reward_invalid'] for r in done), default=None), 2)}.",
            render.table(TOTALS, totals),
            render.table(RUNS, run_rows(found, floor)),
            f"Measured on: {'; '.join(machines)}; {', '.join(versions)}; commit(s) {', '.join(commits)}; "
            f"{', '.join(dates)}. One-thread runs two side by side (`--jobs 2`), two-thread runs one at a time: the "
            "wall seconds of the two are not comparable.",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing: exit 1 if the page differs")
    args = parser.parse_args(argv)
    study = run.load_study(STUDY)
    found = run.current_records(study, Store(RESULTS / f"{study['name']}.jsonl"))
    new = (
        "# The reward stage on held-out seeds: the floors, run by run\n\nWritten whole by `python "
        "docs/reward_heldout.py` from the store; what it measures and how to read it: "
        f"[reward_heldout.md](../reward_heldout.md).\n\n{block(found)}\n"
    )
    if args.check:
        if not PAGE.is_file() or new != PAGE.read_text(encoding="utf-8"):
            print(f"{PAGE.relative_to(ROOT)} differs from the store: run `python docs/reward_heldout.py`")
            return 1
        return 0
    PAGE.parent.mkdir(exist_ok=True)
    PAGE.write_text(new, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
