"""The evaluation: per-prompt counts that agree with the sampled shares, and the paired test of "keeps its
arithmetic" on known numbers."""

import pytest

from ppo_double.checkpoints import load_policy
from ppo_double.evaluate import KEEP_MARGIN, evaluate, format_comparison, keeps_arithmetic
from ppo_double.task import PREFIXES, heldout_prompts


def counts(per_prefix: dict[str, list[int]], samples: int = 16) -> dict:
    return {"samples": samples, "correct_per_prompt": per_prefix}


def test_the_per_prompt_counts_add_up_to_the_sampled_shares(tiny_sft):
    model, tokenizer = load_policy(tiny_sft)
    prompts = heldout_prompts(prefixed=True)[::50]
    results = evaluate(model, tokenizer, prompts, seed=3, samples=3)
    assert results["samples"] == 3
    for prefix in PREFIXES:
        per_prompt = results["correct_per_prompt"][prefix]
        assert len(per_prompt) == sum(prefix in p for p in prompts) == 10
        assert sum(per_prompt) / (3 * len(per_prompt)) == pytest.approx(results["sampled"][prefix]["correct"])


@pytest.mark.parametrize(
    "lost, holds",
    [
        ({}, True),  # the same answers: change 0, bound 0
        ({0: 1, 1: 1, 2: 1}, True),  # 3 prompts of 1 500 lose 1 answer of 16: -0.01 points, bound -0.02
        ({i: 8 for i in range(30)}, False),  # 30 prompts lose half their answers: -1 point
    ],
    ids=["same", "noise-sized-loss", "real-loss"],
)
def test_keeps_arithmetic_is_a_paired_one_sided_bound_at_the_margin(lost, holds):
    before = counts({p: [16] * 500 for p in PREFIXES})
    after = counts({p: [16 - lost.get(i, 0) if p == PREFIXES[0] else 16 for i in range(500)] for p in PREFIXES})
    test = keeps_arithmetic(before, after)
    change = -sum(lost.values()) / 16 / 1500
    assert test["prompts"] == 1500 and test["change"] == pytest.approx(change)
    assert test["lower"] <= test["change"] and test["holds"] is holds
    assert (test["lower"] > -KEEP_MARGIN) is holds


def test_a_gain_on_other_prompts_does_not_hide_a_loss_the_bound_sees():
    """Pairing per prompt: a model that is better on some prompts and worse on others has a wide bound."""
    before = counts({p: [8] * 500 for p in PREFIXES})
    after = counts({p: [0 if i % 2 else 16 for i in range(500)] for p in PREFIXES})
    test = keeps_arithmetic(before, after)
    assert test["change"] == pytest.approx(0) and not test["holds"]


def test_the_comparison_table_states_the_verdict_and_older_files_have_none():
    rows = {m: {p: {"exact_match": 0.5, "correct": 0.99} for p in PREFIXES} for m in ("greedy", "sampled")}
    before = rows | counts({p: [16] * 500 for p in PREFIXES})
    after = rows | counts({p: [8] * 500 for p in PREFIXES})
    assert "**loses arithmetic**" in format_comparison(before, after)
    assert "keeps its arithmetic" in format_comparison(before, before)
    assert keeps_arithmetic(rows, rows) is None and "paired" not in format_comparison(rows, rows)
