"""Generate answers for held-out prompts and score them with the rule-based judge (never with the reward model)."""

import json
import math
import statistics
from collections import defaultdict
from itertools import groupby

import torch

from .data import token_ids
from .modeling import CLASSIFIER_LABELS
from .task import PREFIXES, SYSTEMS, UNPREFIXED, judge, parse_prompt, prefix_for


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    prompts: list[str],
    sample: bool = False,
    seed: int = 0,
    max_new_tokens: int = 7,
    batch_size: int = 512,
) -> list[str]:
    """Completions (text after the prompt, up to and including EOS) for each prompt, in order.

    Prompts are batched by length so no padding is needed: valid prompts all have the same length, and left
    padding would need position ids that GPT-2's generate does not derive from the attention mask.
    """
    model.eval()
    device = next(model.parameters()).device
    # The judge's own random stream: every generator (the CPU's and each GPU's, which manual_seed reseeds too) is put
    # back as it was, so judging never changes what the training samples next.
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        return _generate(model, tokenizer, prompts, sample, max_new_tokens, batch_size, device)


def _generate(model, tokenizer, prompts, sample, max_new_tokens, batch_size, device) -> list[str]:
    answers = [None] * len(prompts)
    # Each distinct prompt tokenized once per process (token_ids), and answers read back id by id: the tokenizer's
    # per-call overhead was a third of a judgement's time.
    ids = {prompt: token_ids(tokenizer, prompt) for prompt in set(prompts)}
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for _, group in groupby(order, key=lambda i: len(prompts[i])):
        group = list(group)
        for start in range(0, len(group), batch_size):
            idx = group[start : start + batch_size]
            input_ids = torch.tensor([ids[prompts[i]] for i in idx], device=device)
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=sample,
                temperature=1.0 if sample else None,
                top_k=0 if sample else None,
                top_p=1.0 if sample else None,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                # One process judges a plain model (distributed.gathered_model). Under ZeRO-3 generate would
                # otherwise wait at every token for the other processes, which do not generate.
                synced_gpus=False,
            )
            for i, row in zip(idx, out[:, input_ids.shape[1] :].tolist()):
                text = tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens(row))
                answers[i] = (
                    text.split(tokenizer.eos_token, 1)[0] + tokenizer.eos_token if tokenizer.eos_token in text else text
                )
    return answers


def score(prompts: list[str], completions: list[str]) -> dict:
    """Judge every (prompt, completion) and aggregate per prefix and overall.

    Per group: n, exact_match, correct (the value is the right double, any system), eos (ended with EOS),
    well_formed, and the share of answers in each numeral system (`system/digits`, ..., `system/other`).
    """
    return aggregate(prompts, [judge(prompt, completion) for prompt, completion in zip(prompts, completions)])


def aggregate(prompts: list[str], verdicts: list) -> dict:
    """`score`'s metrics from the judge's verdict on each prompt's answer."""
    groups = defaultdict(list)
    for prompt, verdict in zip(prompts, verdicts):
        groups[prefix_for(parse_prompt(prompt)[0])].append(verdict)
        groups["all"].append(verdict)
    order = [p for p in (UNPREFIXED, *PREFIXES) if p in groups]
    if len(order) > 1:  # with a single prefix, "all" would repeat its row
        order.append("all")
    metrics = {}
    for name in order:
        verdicts = groups[name]
        n = len(verdicts)
        row = {
            "n": n,
            "exact_match": sum(v.exact_match for v in verdicts) / n,
            "correct": sum(v.correct for v in verdicts) / n,
            "eos": sum(v.ended_with_eos for v in verdicts) / n,
            "well_formed": sum(v.well_formed for v in verdicts) / n,
        }
        for system in SYSTEMS:
            row[f"system/{system}"] = sum(v.system == system for v in verdicts) / n
        row["system/other"] = 1 - sum(row[f"system/{s}"] for s in SYSTEMS)
        metrics[name] = row
    return metrics


# Sampled answers per prompt when a policy is tested: the one evaluation of `make eval`, the pipeline and the
# studies. The sampled correct-double share is ~99 %; on 16 answers per test prompt (24 000 over the three prefixes) one
# model's share has a standard error of ~0.05 points, against 0.25 on one answer (the same SFT policy scored 98.6 and
# 99.1 % under two sampling seeds there). The judge during training draws fewer (`judge_samples`).
TEST_SAMPLES = 16
# "Without losing its arithmetic", declared before any study used it (docs/glossary.md#keeps-its-arithmetic): paired
# over the test prompts of the three prefixes, the one-sided 95 % lower bound of the change in the sampled correct
# share stays above -KEEP_MARGIN. Why 0.25 points: docs/design-record.md.
KEEP_MARGIN = 0.0025
ONE_SIDED_95 = 1.645


def judged(model, tokenizer, prompts: list[str], samples: int = 0, seed: int = 0, max_new_tokens: int = 7) -> dict:
    """Per-prefix metrics (`score`) of the greedy answers (`samples` 0) or of `samples` answers per prompt sampled at
    temperature 1."""
    asked = prompts * max(samples, 1)
    answers = generate_answers(model, tokenizer, asked, sample=samples > 0, seed=seed, max_new_tokens=max_new_tokens)
    return score(asked, answers)


def evaluate(model, tokenizer, prompts: list[str], seed: int = 0, max_new_tokens: int = 7, samples: int = TEST_SAMPLES):
    """{"greedy": per-prefix metrics, "sampled": per-prefix metrics at temperature 1 over `samples` answers per
    prompt, "samples", "correct_per_prompt": per prefix, each prompt's count of correct sampled answers (in the order
    of `prompts`), for the paired test of `keeps_arithmetic`}."""
    asked = prompts * samples
    answers = generate_answers(model, tokenizer, asked, sample=True, seed=seed, max_new_tokens=max_new_tokens)
    verdicts = [judge(prompt, answer) for prompt, answer in zip(asked, answers)]
    per_prompt = defaultdict(list)
    for i, prompt in enumerate(prompts):
        per_prompt[prefix_for(parse_prompt(prompt)[0])].append(sum(v.correct for v in verdicts[i :: len(prompts)]))
    return {
        "greedy": judged(model, tokenizer, prompts, max_new_tokens=max_new_tokens),
        "sampled": aggregate(asked, verdicts),
        "samples": samples,
        "correct_per_prompt": dict(per_prompt),
    }


def keeps_arithmetic(before: dict, after: dict, margin: float = KEEP_MARGIN) -> dict | None:
    """The paired non-inferiority test of `after`'s sampled correct share against `before`'s (two `evaluate` results
    on the same prompts): over their prefixed prompts, the mean change per prompt, its one-sided 95 % lower
    bound, and whether that bound is above -margin. None without prefixed prompts or per-prompt counts (older files)."""
    found = [r.get("correct_per_prompt", {}) for r in (before, after)]
    prefixes = [p for p in PREFIXES if all(p in counts for counts in found)]
    if not prefixes:
        return None
    changes = [
        a / after["samples"] - b / before["samples"]
        for p in prefixes
        for b, a in zip(found[0][p], found[1][p], strict=True)
    ]
    mean = statistics.fmean(changes)
    lower = mean - ONE_SIDED_95 * statistics.stdev(changes) / math.sqrt(len(changes))
    return {"change": mean, "lower": lower, "holds": lower > -margin, "prompts": len(changes)}


def format_table(results: dict) -> str:
    """A markdown table: one row per (mode, prefix)."""
    columns = ["exact_match", "correct", "eos", *(f"system/{s}" for s in SYSTEMS), "system/other"]
    lines = ["| mode | prefix | n | " + " | ".join(columns) + " |", "|---" * (len(columns) + 3) + "|"]
    for mode in ("greedy", "sampled"):
        for prefix, row in results[mode].items():
            cells = " | ".join(f"{100 * row[c]:.1f}%" for c in columns)
            lines.append(f"| {mode} | {prefix} | {row['n']} | {cells} |")
    return "\n".join(lines)


def format_comparison(before: dict, after: dict) -> str:
    """A markdown before -> after table of exact match and correct doubles, per mode and prefix."""
    lines = [
        "| mode | prefix | exact match before | exact match after | correct before | correct after |",
        "|---|---|---|---|---|---|",
    ]
    for mode in ("greedy", "sampled"):
        for prefix, row in after[mode].items():
            old = before[mode][prefix]
            lines.append(
                f"| {mode} | {prefix} | {100 * old['exact_match']:.1f}% | {100 * row['exact_match']:.1f}% "
                f"| {100 * old['correct']:.1f}% | {100 * row['correct']:.1f}% |"
            )
    if test := keeps_arithmetic(before, after):
        verdict = "keeps its arithmetic" if test["holds"] else "**loses arithmetic**"
        lines.append(
            f"\nSampled correct share, paired over {test['prompts']} prefixed prompts: {100 * test['change']:+.2f} "
            f"points (one-sided 95 % lower bound {100 * test['lower']:+.2f}): {verdict} (the bound must stay above "
            f"-{100 * KEEP_MARGIN:.2f} points)."
        )
    return "\n".join(lines)


def save_results(results: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False, indent=2)


@torch.no_grad()
def classifier_accuracy(model, dataset, batch_size: int = 1000) -> dict:
    """Accuracy of the reward classifier per true class, per corruption kind (`invalid/<kind>`) and overall."""
    model.eval()
    device = next(model.parameters()).device
    hits, counts = defaultdict(int), defaultdict(int)
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        width = max(map(len, rows["input_ids"]))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows["input_ids"]], device=device)
        predicted = model(input_ids=ids, attention_mask=(ids != 0).long()).logits.argmax(-1).tolist()
        for label, kind, guess in zip(rows["labels"], rows["kind"], predicted):
            groups = [CLASSIFIER_LABELS[label], "all"] + ([f"invalid/{kind}"] if kind else [])
            for group in groups:
                counts[group] += 1
                hits[group] += label == guess
    order = [*CLASSIFIER_LABELS, "all", *sorted(k for k in counts if k.startswith("invalid/"))]
    return {name: hits[name] / counts[name] for name in order if name in counts}


def format_accuracy(results: dict) -> str:
    lines = ["| class | accuracy |", "|---|---|"]
    lines += [f"| {name} | {100 * acc:.2f}% |" for name, acc in results.items()]
    return "\n".join(lines)
