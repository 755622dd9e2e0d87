"""`datasets.Dataset` builders for each stage, tokenized up front.

SFTTrainer would tokenize prompt/completion text itself, but through the generic Python tokenizer path that takes
~45 s for the default 96k examples on 2 CPU cores; tokenizing the characters directly takes ~2 s and gives SFTTrainer
the same `input_ids` + `completion_mask` columns it would have built.
"""

import torch
from datasets import Dataset

from .task import TRAIN_NUMBERS, classifier_examples, make_prompt, sample_examples


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))


def sft_dataset(tokenizer, n: int, seed: int) -> Dataset:
    """Unprefixed examples `S__:3320x2=6640E`; the loss mask covers the completion (`6640E`) only."""
    rows = {"input_ids": [], "completion_mask": []}
    for example in sample_examples(n, seed=seed):
        prompt, completion = _ids(tokenizer, example["prompt"]), _ids(tokenizer, example["completion"])
        rows["input_ids"].append(prompt + completion)
        rows["completion_mask"].append([0] * len(prompt) + [1] * len(completion))
    return Dataset.from_dict(rows)


def prompt_dataset(tokenizer, numbers=TRAIN_NUMBERS, labels=(0, 1, 2)) -> Dataset:
    """PPO prompts: every number once per requested label, e.g. `S大写:3164x2=`, as `input_ids`."""
    return Dataset.from_dict(
        {"input_ids": [_ids(tokenizer, make_prompt(q, label)) for label in labels for q in numbers]}
    )


def classifier_dataset(tokenizer, n: int, seed: int, invalid_fraction: float, numbers=TRAIN_NUMBERS) -> Dataset:
    """Unprefixed answers with `labels` 0-2 (numeral system) or 3 (invalid); see task.classifier_examples."""
    examples = classifier_examples(n, seed, numbers=numbers, invalid_fraction=invalid_fraction)
    return Dataset.from_dict(
        {
            "input_ids": [_ids(tokenizer, e["text"]) for e in examples],
            "labels": [e["label"] for e in examples],
            "kind": [e["kind"] for e in examples],  # not a model input: the Trainer drops it for training
        }
    )


def answer_dataset(tokenizer, n: int, seed: int, numbers=TRAIN_NUMBERS) -> Dataset:
    """Correct unprefixed samples `S__:3320x2=6640E` as `input_ids`, for the classifier's encoder pre-training."""
    return Dataset.from_dict(
        {
            "input_ids": [
                _ids(tokenizer, e["prompt"] + e["completion"]) for e in sample_examples(n, seed, numbers=numbers)
            ]
        }
    )


class AnswerMaskingCollator:
    """Pads a batch and hides random answer numerals; `labels` are the hidden numerals (-100 elsewhere).

    transformers' DataCollatorForLanguageModeling masks any token and needs a mask token; here only the answer after
    `=` is masked (the question is the condition, not something to predict) and the vocabulary has no mask token:
    the padding id stands in for it (BERT keeps its embedding at zero, a clean "blank").
    """

    def __init__(self, tokenizer, mask_prob: float):
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id
        self.equals_id = tokenizer.convert_tokens_to_ids("=")
        self.mask_prob = mask_prob

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        input_ids = torch.tensor([f["input_ids"] + [self.pad_id] * (width - len(f["input_ids"])) for f in features])
        attention_mask = (input_ids != self.pad_id).long()
        after_equals = (input_ids == self.equals_id).long().cumsum(1).bool() & (input_ids != self.equals_id)
        answer = after_equals & attention_mask.bool() & (input_ids != self.eos_id)
        masked = answer & (torch.rand(input_ids.shape) < self.mask_prob)
        labels = torch.where(masked, input_ids, -100)
        return {
            "input_ids": input_ids.masked_fill(masked, self.pad_id),
            "attention_mask": attention_mask,
            "labels": labels,
        }
