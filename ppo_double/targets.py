"""What "it worked" means for one run of the pipeline, read from the files its stages wrote: one definition for the
end of `make all` (`ppo-double summary`) and for every study's "every target" (bench/run.py).

The targets (docs/glossary.md#target), on the held-out test numbers: every prefix's greedy exact match at least
TARGET_GREEDY and sampled at least TARGET_SAMPLED; the sampled correct share kept (evaluate.keeps_arithmetic); the
greedy correct share on the validation numbers never below FLOOR_CORRECT while the RL stage trained; the reward
catching INVALID_CAUGHT of invalid answers (a classifier with an invalid class: the tutorial's 3-class one has none).
"""

import json
import statistics
from pathlib import Path

import yaml

from .callbacks import first_stop, holds_target
from .evaluate import KEEP_MARGIN, keeps_arithmetic
from .task import PREFIXES, UNPREFIXED

ROOT = Path(__file__).resolve().parent.parent
TARGET_GREEDY, TARGET_SAMPLED, FLOOR_CORRECT, INVALID_CAUGHT = 0.995, 0.98, 0.97, 0.99
ONSET = 0.9  # the prefixes have separated once every prefix's greedy exact match is at least this
# the judge's numbers kept per judgement; it draws sampled answers only where greedy holds the target (None elsewhere)
JUDGED = ["exact_match", "sampled_exact_match", "correct", "sampled_correct"]
JUDGED += [f"{k}/{p}" for k in JUDGED[:2] for p in PREFIXES]


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def mean_over_prefixes(results: dict, mode: str, name: str) -> float:
    return statistics.fmean(results[mode][p][name] for p in PREFIXES)


def history(judged: list[dict]) -> list[dict]:
    """The RL stage's judgements (its eval_results.json's `judged_during_training`): completions, seconds (None for
    those a resumed run rebuilt from its log) and JUDGED."""
    return [
        {"episode": h["episode"], "seconds": h.get("seconds")} | {k: h.get(f"eval/{k}") for k in JUDGED} for h in judged
    ]


def completions_to_target(judged: list[dict]) -> dict | None:
    """The judgement (judged[0]: the start) at which PPO's stop rule, read from its YAML, stops: for every algorithm
    the target that completions are counted to."""
    rule = yaml.safe_load((ROOT / "recipes" / "configs" / "ppo.yaml").read_text(encoding="utf-8"))
    names = ("target_exact_match", "target_sampled_exact_match", "target_keep_correct", "target_correct_margin")
    targets = [rule[k] for k in names]
    return first_stop(judged, rule["target_patience"], lambda entry: holds_target(entry, judged[0], *targets))


def reached(paths: dict[str, Path], stages: list[str]) -> dict:
    """What a finished run reached, from the files of its `stages` under `paths` (summary.folders' layout), with
    `target_met` where it has the RL stage and the eval."""
    found: dict = {}
    if "sft" in stages:  # the SFT's own judgement, the one its floor reads: sampled answers to unprefixed test prompts
        found["sft_own_correct"] = read_json(paths["sft"] / "eval_results.json")["sampled"][UNPREFIXED]["correct"]
    if "reward" in stages:
        reward = read_json(paths["reward"] / "eval_results.json")
        found["reward_invalid"] = reward.get("accuracy/invalid")
        found["reward_accuracy"] = {k.removeprefix("accuracy/"): v for k, v in reward.items() if k.startswith("acc")}
    if "rl" in stages:
        results = read_json(paths["rl"] / "eval_results.json")
        judged = results["judged_during_training"]
        judgements = history(judged)
        target, last = completions_to_target(judged), judgements[-1]
        resumed = any(h["seconds"] is None for h in judgements)  # its seconds count from the resume, not the start
        found |= {
            "greedy_exact_match": {p: results["greedy"][p]["exact_match"] for p in PREFIXES},
            "sampled_exact_match": {p: results["sampled"][p]["exact_match"] for p in PREFIXES},
            "min_greedy_correct": min(h["correct"] for h in judgements),
            "onset": next(
                (h["episode"] for h in judgements if min(h[f"exact_match/{p}"] for p in PREFIXES) >= ONSET), None
            ),
            "completions": last["episode"],
            "completions_per_s": None if resumed else last["episode"] / last["seconds"],
            "completions_to_target": target and target["episode"],
            "seconds_to_target": None if resumed else target and target["seconds"],
            "sampled_correct": mean_over_prefixes(results, "sampled", "correct"),
        }
    if "eval" in stages:
        baseline, model = read_json(paths["eval"]).values()  # recipes/evaluate.py writes the baseline first
        found["sft_sampled_correct"] = mean_over_prefixes(baseline, "sampled", "correct")
        found["sampled_correct"] = mean_over_prefixes(model, "sampled", "correct")
        if test := keeps_arithmetic(baseline, model):
            found |= {"keep_change": test["change"], "keep_lower": test["lower"], "keeps_arithmetic": test["holds"]}
        else:  # nothing to pair (no prefixed prompts, or an eval file older than the test): not shown to keep it
            found["keeps_arithmetic"] = False
    if "rl" in stages and "eval" in stages:
        found["target_met"] = all(met for _, _, met in verdicts(found))
    return found


def verdicts(found: dict) -> list[tuple[str, str, bool]]:
    """Each target of a run that `reached` found with its RL stage and eval: (the target, what the run reached, met)."""

    def per_prefix(values: dict) -> str:
        return " / ".join(f"{100 * values[p]:.1f}" for p in PREFIXES) + " %"

    greedy, sampled = found["greedy_exact_match"], found["sampled_exact_match"]
    kept = "nothing to pair"
    if "keep_change" in found:
        kept = f"{100 * found['keep_change']:+.2f} points, lower bound {100 * found['keep_lower']:+.2f}"
    rows = [
        (f"greedy exact match ≥ {100 * TARGET_GREEDY:g} %", per_prefix(greedy), min(greedy.values()) >= TARGET_GREEDY),
        (
            f"sampled exact match ≥ {100 * TARGET_SAMPLED:g} %",
            per_prefix(sampled),
            min(sampled.values()) >= TARGET_SAMPLED,
        ),
        (f"sampled correct share kept (bound above -{100 * KEEP_MARGIN:g} points)", kept, found["keeps_arithmetic"]),
        (
            f"greedy correct ≥ {100 * FLOOR_CORRECT:g} % at every judgement while training (validation numbers)",
            f"lowest {100 * found['min_greedy_correct']:.1f} %",
            found["min_greedy_correct"] >= FLOOR_CORRECT,
        ),
    ]
    if found.get("reward_invalid") is not None:
        invalid = found["reward_invalid"]
        rows.append(
            (
                f"reward catches ≥ {100 * INVALID_CAUGHT:g} % of invalid answers",
                f"{100 * invalid:.2f} %",
                invalid >= INVALID_CAUGHT,
            )
        )
    return rows


def report(paths: dict[str, Path]) -> str | None:
    """The targets of the run under `paths`, a line each with ✓ or ✗, then the verdict; None until its RL stage has
    finished and the eval compared it with the SFT policy."""
    rl = paths["rl"] / "eval_results.json"
    if not (paths["eval"].is_file() and rl.is_file() and "judged_during_training" in read_json(rl)):
        return None
    stages = ["rl", "eval", *(["reward"] if (paths["reward"] / "eval_results.json").is_file() else [])]
    found = reached(paths, stages)
    lines = [f"  {'✓' if met else '✗'} {target}: {value}" for target, value, met in verdicts(found)]
    verdict = "every target met" if found["target_met"] else "a target missed (✗)"
    return "\n".join(["targets (docs/glossary.md#target), held-out test numbers:", *lines, verdict])
