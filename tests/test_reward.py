import itertools
import json
import random

import pytest
import torch
from transformers import AutoModelForSequenceClassification
from trl.experimental.ppo.ppo_trainer import truncate_response
from trl.experimental.utils import get_reward

from conftest import NO_FLOORS, ROOT, load_recipe
from ppo_double.errors import UsageError
from ppo_double.modeling import load_tokenizer
from ppo_double.reward import ClassifierScorer, NumeralReward, RewardFunction, RuleScorer, load_scorer
from ppo_double.task import (
    CORRUPTIONS,
    INVALID,
    NUMERALS,
    PREFIXES,
    TEST_NUMBERS,
    TRAIN_NUMBERS,
    classifier_examples,
    corrupt_completion,
    judge,
    make_completion,
    make_prompt,
    parse_prompt,
    to_numeral,
)

TOKENIZER = load_tokenizer()
RESPONSE_LENGTH = 7


def ppo_batch(prompts, completions):
    """query_responses exactly as PPOTrainer builds them: response cut after the first EOS, right-padded with P."""
    queries = torch.tensor([TOKENIZER(p).input_ids for p in prompts])
    responses = [TOKENIZER(c).input_ids[:RESPONSE_LENGTH] for c in completions]
    responses = torch.tensor([r + [0] * (RESPONSE_LENGTH - len(r)) for r in responses])
    responses = truncate_response(TOKENIZER.eos_token_id, TOKENIZER.pad_token_id, responses)
    return torch.cat([queries, responses], 1), queries.shape[1]


def function_rewards(scorer, prompts, completions, missing_eos_penalty=None):
    """Scores of a RewardFunction as GRPOTrainer and RLOOTrainer call it: completion ids (at most 7, cut after the
    first EOS, EOS kept) and the completions as text without special tokens."""
    ids = [TOKENIZER(c).input_ids[:RESPONSE_LENGTH] for c in completions]
    ids = [row[: row.index(TOKENIZER.eos_token_id) + 1] if TOKENIZER.eos_token_id in row else row for row in ids]
    texts = [TOKENIZER.decode(row, skip_special_tokens=True) for row in ids]
    function = RewardFunction(scorer, TOKENIZER, missing_eos_penalty=missing_eos_penalty)
    return torch.tensor(function(prompts=list(prompts), completions=texts, completion_ids=ids, trainer_state=None))


def rewards(model, prompts, completions):
    query_responses, context_length = ppo_batch(prompts, completions)
    with torch.no_grad():
        _, scores, _ = get_reward(model, query_responses, TOKENIZER.pad_token_id, context_length)
    return scores


# --- data -------------------------------------------------------------------------------------------------------


def test_classifier_examples_are_seeded_labelled_and_never_heldout():
    a, b = classifier_examples(2000, seed=3), classifier_examples(2000, seed=3)
    assert a == b and a != classifier_examples(2000, seed=4)
    assert 0.35 < sum(e["label"] == INVALID for e in a) / len(a) < 0.45
    for example in a:
        prompt, completion = example["text"].split("=", 1)
        prompt += "="
        assert parse_prompt(prompt)[1] in TRAIN_NUMBERS
        verdict = judge(prompt, completion)
        if example["label"] == INVALID:
            assert not verdict.exact_match
        else:
            assert verdict.exact_match and verdict.system == ("digits", "lower", "upper")[example["label"]]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_every_corruption_is_judged_invalid(kind):
    rng = random.Random(0)
    for _ in range(300):
        number, label = rng.choice(TEST_NUMBERS), rng.randrange(3)
        completion = corrupt_completion(number, label, kind, rng)
        assert not judge(make_prompt(number, label), completion).exact_match, (number, completion)


@pytest.mark.parametrize("target", ["original", "replaced"])
def test_pretraining_corrupts_only_answer_numerals_within_their_system(target):
    from ppo_double.data import AnswerCorruptionCollator, answer_dataset

    rows = [r["input_ids"] for r in answer_dataset(TOKENIZER, 300, seed=0)]
    torch.manual_seed(0)
    batch = AnswerCorruptionCollator(TOKENIZER, corrupt_prob=0.5, target=target)([{"input_ids": r} for r in rows])
    replaced_total = answer_total = 0
    for i, original in enumerate(rows):
        start, end = original.index(TOKENIZER.convert_tokens_to_ids("=")) + 1, len(original) - 1  # answer, before E
        ids = batch["input_ids"][i, : len(original)].tolist()
        assert ids[:start] == original[:start] and ids[end:] == original[end:]  # question and E untouched
        assert (
            batch["attention_mask"][i, : len(original)].all() and not batch["attention_mask"][i, len(original) :].any()
        )
        labels = batch["labels"][i].tolist()
        assert all(label == -100 for p, label in enumerate(labels) if not start <= p < end)
        for p in range(start, end):
            was, now = TOKENIZER.decode([original[p]]), TOKENIZER.decode([ids[p]])
            system = next(k for k, chars in enumerate(NUMERALS) if was in chars)
            assert now in NUMERALS[system]  # a replacement stays in the answer's numeral system
            expected = original[p] if target == "original" else int(now != was)
            assert labels[p] == expected
            replaced_total += now != was
            answer_total += 1
    assert 0.45 < replaced_total / answer_total < 0.55


# --- the adapter's contract, on a tiny classifier -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_reward):
    return NumeralReward.from_pretrained(str(tiny_reward)), AutoModelForSequenceClassification.from_pretrained(
        tiny_reward
    ).eval()


def test_reward_is_the_probability_of_the_requested_class_on_the_unprefixed_text(tiny):
    adapter, classifier = tiny
    prompts = [make_prompt(3164, label) for label in (0, 1, 2, None)]
    completions = ["陆叁贰捌E"] * 4
    scores = rewards(adapter, prompts, completions)
    unprefixed = TOKENIZER("S__:3164x2=陆叁贰捌E", return_tensors="pt")
    probs = classifier(**unprefixed).logits.softmax(-1)[0]
    expected = torch.stack([probs[0], probs[1], probs[2], 1 - probs[INVALID]])
    torch.testing.assert_close(scores, expected)
    assert ((0 <= scores) & (scores <= 1)).all()


def test_the_log_classifier_reward_is_the_log_of_the_classifier_reward(tiny, tiny_reward):
    adapter, _ = tiny
    logged = NumeralReward(load_scorer("log_classifier", str(tiny_reward)))
    prompts = [make_prompt(3164, label) for label in (0, 1, 2, None)]
    scores, logs = (rewards(model, prompts, ["陆叁贰捌E"] * 4) for model in (adapter, logged))
    torch.testing.assert_close(logs, scores.log())
    assert (logs <= 0).all()


def test_padding_does_not_change_the_reward(tiny):
    adapter, _ = tiny
    alone = rewards(adapter, ["S大写:3164x2="], ["陆叁贰捌E"])
    padded = rewards(adapter, ["S大写:3164x2=", "S大写:3164x2="], ["陆叁贰捌E", "壹陆叁贰捌E"])
    torch.testing.assert_close(alone[0], padded[0])


def test_reward_function_and_ppo_adapter_give_the_same_score(tiny):
    adapter, _ = tiny
    numbers = TEST_NUMBERS[:4]
    prompts, completions = [], []
    for q, label in itertools.product(numbers, range(3)):
        right, other = make_completion(q, label), make_completion(q, (label + 1) % 3)
        runaway = to_numeral(2 * q, label) + to_numeral(0, label) * 3  # no EOS within the 7 tokens
        for completion in (right, other, make_completion(q + 1, label), runaway, "E"):
            prompts.append(make_prompt(q, label))
            completions.append(completion)
    # PPO: TRL's get_reward on PPOTrainer's batch, then PPOTrainer's missing_eos_penalty
    query_responses, context_length = ppo_batch(prompts, completions)
    ppo_scores = rewards(adapter, prompts, completions)
    ppo_scores[~(query_responses[:, context_length:] == TOKENIZER.eos_token_id).any(-1)] -= 1.0
    # GRPO/RLOO: completions as their trainers pass them to a reward function
    torch.testing.assert_close(function_rewards(adapter, prompts, completions, missing_eos_penalty=1.0), ppo_scores)
    assert (ppo_scores < 0).sum() == len(numbers) * 3  # the runaway answers, penalised alike


def test_unknown_prefix_is_an_error(tiny):
    adapter, _ = tiny
    query_responses, context_length = ppo_batch(["S:数1234x2="], ["2468E"])
    with pytest.raises(ValueError, match="prompt prefix ':数' is none of"):
        get_reward(adapter, query_responses, 0, context_length)


def test_loading_something_else_is_a_clear_error(tiny_sft, tmp_path):
    with pytest.raises(UsageError, match="holds a policy .GPT-2., not the reward classifier"):
        NumeralReward.from_pretrained(str(tiny_sft))
    with pytest.raises(UsageError, match=r"no checkpoint folder .*: train it first \(`make reward`\)"):
        NumeralReward.from_pretrained(str(tmp_path / "missing"))


# --- the tutorial's 3-class classifier and the rule-based reward, through the same interfaces ---------------------


@pytest.fixture(scope="module")
def tiny_tutorial(tmp_path_factory):
    """A tiny classifier trained as `make reward-tutorial` trains it: 3 classes, clean answers, no pre-training."""
    out = tmp_path_factory.mktemp("reward-tutorial")
    config = str(ROOT / "recipes" / "configs" / "reward_tutorial.yaml")
    tiny = ["--max_steps", "8", "--per_device_train_batch_size", "16", "--num_hidden_layers", "1", *NO_FLOORS["reward"]]
    load_recipe("reward").main(["--config", config, *tiny, "--disable_tqdm", "true", "--output_dir", str(out)])
    return NumeralReward.from_pretrained(str(out)), AutoModelForSequenceClassification.from_pretrained(out).eval(), out


def test_tutorial_classifier_has_the_three_systems_and_is_scored_on_clean_answers(tiny_tutorial):
    _, classifier, out = tiny_tutorial
    assert classifier.config.id2label == {0: "digits", 1: "lower", 2: "upper"}
    accuracy = json.loads((out / "eval_results.json").read_text())
    assert {k.removeprefix("eval_") for k in accuracy} == {f"accuracy/{k}" for k in ("digits", "lower", "upper", "all")}


def test_three_class_reward_is_the_probability_of_the_requested_system(tiny_tutorial):
    adapter, classifier, _ = tiny_tutorial
    prompts = [make_prompt(3164, label) for label in (0, 1, 2, None)]
    completions = ["陆叁贰捌E"] * 4
    probs = classifier(**TOKENIZER("S__:3164x2=陆叁贰捌E", return_tensors="pt")).logits.softmax(-1)[0]
    expected = torch.stack([probs[0], probs[1], probs[2], torch.tensor(1.0)])  # `__`: any system is right
    torch.testing.assert_close(rewards(adapter, prompts, completions), expected)  # PPO's get_reward
    query_responses, _ = ppo_batch(prompts, completions)
    torch.testing.assert_close(adapter(query_responses, query_responses != 0), expected)  # the scorer's interface
    torch.testing.assert_close(function_rewards(adapter.scorer, prompts, completions), expected)  # GRPO's, RLOO's


def judged_pairs() -> list[tuple[str, str]]:
    """Right answers in every system and every kind of wrong one, for every prefix and `__`."""
    rng = random.Random(0)
    pairs = []
    for number in TEST_NUMBERS[:4]:
        for requested in (0, 1, 2, None):
            for label in range(3):
                completions = [make_completion(number, label)]
                completions += [corrupt_completion(number, label, kind, rng) for kind in CORRUPTIONS]
                completions.append(to_numeral(2 * number, label) + to_numeral(0, label) * 3)  # never ends
                pairs += [(make_prompt(number, requested), completion) for completion in completions]
    return pairs


def test_rule_reward_is_one_exactly_for_the_judges_exact_matches():
    prompts, completions = zip(*judged_pairs())
    expected = torch.tensor([float(judge(p, c[:RESPONSE_LENGTH]).exact_match) for p, c in zip(prompts, completions)])
    assert expected.sum() == 4 * (3 + 3)  # per number: the right answer in the requested system, and any for `__`
    adapter = NumeralReward(load_scorer("rule"))
    assert torch.equal(rewards(adapter, prompts, completions), expected)  # PPO's get_reward
    query_responses, _ = ppo_batch(prompts, completions)
    assert torch.equal(RuleScorer()(query_responses, query_responses != 0), expected)  # the scorer's interface
    # What the PPO trainer logs next to the reward: the judge's share of exact matches among the rows scored.
    assert adapter.pop_rollout_exact_match() == 24 / len(prompts) and adapter.pop_rollout_exact_match() is None
    # GRPO's and RLOO's reward function: the same verdict, minus the missing-EOS penalty (PPOTrainer's own, there).
    no_eos = torch.tensor([float("E" not in c[:RESPONSE_LENGTH]) for c in completions])
    assert no_eos.sum() > 0
    scores = function_rewards(RuleScorer(), prompts, completions, missing_eos_penalty=0.5)
    torch.testing.assert_close(scores, expected - 0.5 * no_eos)


def test_classifier_of_another_shape_is_refused(tiny_reward, tmp_path):
    from ppo_double.modeling import build_classifier

    build_classifier(num_hidden_layers=1, labels=("digits", "lower")).save_pretrained(tmp_path / "two")
    with pytest.raises(UsageError, match=r"holds a BERT classifier with 2 labels \(digits, lower\), not a reward"):
        load_scorer("classifier", str(tmp_path / "two"))
    assert isinstance(load_scorer("classifier", str(tiny_reward)), ClassifierScorer)


# --- what the trained classifier has learned (slow: trains the default classifier) ------------------------------


@pytest.fixture(scope="module")
def trained_reward(trained):
    return NumeralReward.from_pretrained(str(trained / "reward")), trained / "reward"


@pytest.mark.slow
def test_trained_classifier_accuracy_per_class(trained_reward):
    _, folder = trained_reward
    accuracy = json.loads((folder / "eval_results.json").read_text())
    for system in ("digits", "lower", "upper"):
        assert accuracy[f"accuracy/{system}"] >= 0.995
    assert accuracy["accuracy/invalid"] >= 0.98
    for kind in CORRUPTIONS:  # wrong doubles included: the encoder's pre-training is what makes these learnable
        assert accuracy[f"accuracy/invalid/{kind}"] >= 0.95, kind


@pytest.mark.slow
def test_matching_system_scores_higher_by_a_clear_margin(trained_reward):
    adapter, _ = trained_reward
    numbers = TEST_NUMBERS[:50]
    for requested, produced in itertools.product(range(3), range(3)):
        prompts = [make_prompt(q, requested) for q in numbers]
        match = rewards(adapter, prompts, [make_completion(q, requested) for q in numbers])
        other = rewards(adapter, prompts, [make_completion(q, produced) for q in numbers])
        if requested != produced:
            assert (match - other).min() > 0.5, (PREFIXES[requested], produced)
        else:
            assert match.min() > 0.9


@pytest.mark.slow
def test_invalid_answers_score_below_the_correct_ones(trained_reward):
    adapter, _ = trained_reward
    rng = random.Random(7)
    prompts, good, bad, runaway = [], [], [], []
    for kind in CORRUPTIONS:
        for _ in range(40):
            number, label = rng.choice(TEST_NUMBERS), rng.randrange(3)
            completion = corrupt_completion(number, label, kind, rng)
            if judge(make_prompt(number, label), completion).exact_match:
                continue
            prompts.append(make_prompt(number, label))
            good.append(make_completion(number, label))
            bad.append(completion)
            runaway.append(to_numeral(2 * number, label) + to_numeral(0, label) * 3)  # never stops: no EOS
    good_scores, bad_scores = rewards(adapter, prompts, good), rewards(adapter, prompts, bad)
    runaway_scores = rewards(adapter, prompts, runaway)
    # At most 1 % outliers: the classifier's held-out invalid accuracy is ~99.8 %, and across seeds (and reward
    # budgets) a single answer out of these ~360 scored above the lowest correct one now and then. PPO's runaway
    # answers also get TRL's missing_eos_penalty, whatever the classifier says.
    assert (bad_scores >= good_scores.min()).float().mean() <= 0.01
    assert good_scores.min() > 0.9
    assert (runaway_scores >= 0.1).float().mean() <= 0.01
