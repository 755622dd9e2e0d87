"""`datasets.Dataset` builders for each stage, tokenized up front.

SFTTrainer would tokenize prompt/completion text itself, but through the generic Python tokenizer path that takes
~45 s for the default 128k examples on 2 CPU cores; tokenizing the characters directly takes ~2 s. The SFT rows come
trainer-ready (`input_ids` + `labels`), so the recipe skips SFTTrainer's preparation: its three `map` passes over the
rows (labels from a mask, truncation, a filter) took ~10 s of the stage and change nothing on rows this short.
"""

import random
from functools import lru_cache

import torch
from datasets import Dataset

from .task import NUMERALS, TRAIN_NUMBERS, classifier_examples, make_prompt, sample_examples


def token_ids(tokenizer, text: str) -> list[int]:
    """The ids of `text` (no special token added), each distinct text tokenized once per process: a dataset repeats
    its texts (9 000 numbers), and the judge asks for the same prompts at every judgement."""
    return list(_cached_ids(tokenizer, text))


@lru_cache(maxsize=1 << 17)
def _cached_ids(tokenizer, text: str) -> tuple[int, ...]:
    return tuple(tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text)))


def sft_dataset(tokenizer, n: int, seed: int, completion_only: bool = True) -> Dataset:
    """Unprefixed examples `S__:3320x2=6640E` as SFTTrainer trains on them: `input_ids`, and `labels` that are -100
    on the prompt (`S__:3320x2=`) when `completion_only`, so that the loss covers the completion (`6640E`) only."""
    rows = {"input_ids": [], "labels": []}
    for example in sample_examples(n, seed=seed):
        prompt, completion = token_ids(tokenizer, example["prompt"]), token_ids(tokenizer, example["completion"])
        rows["input_ids"].append(prompt + completion)
        rows["labels"].append(([-100] * len(prompt) if completion_only else prompt) + completion)
    return Dataset.from_dict(rows)


def prompts(numbers=TRAIN_NUMBERS, labels=(0, 1, 2)) -> list[str]:
    """The RL stages' prompts: every number once per requested label, e.g. `S大写:3164x2=`."""
    return [make_prompt(q, label) for label in labels for q in numbers]


def prompt_dataset(tokenizer, numbers=TRAIN_NUMBERS, labels=(0, 1, 2)) -> Dataset:
    """PPO's prompts as `input_ids` (PPOTrainer takes them tokenized)."""
    return Dataset.from_dict({"input_ids": [token_ids(tokenizer, p) for p in prompts(numbers, labels)]})


def prompt_text_dataset(numbers=TRAIN_NUMBERS, labels=(0, 1, 2)) -> Dataset:
    """GRPO's and RLOO's prompts as text, column `prompt` (the trainers tokenize them)."""
    return Dataset.from_dict({"prompt": prompts(numbers, labels)})


def classifier_dataset(tokenizer, n: int, seed: int, invalid_fraction: float, numbers=TRAIN_NUMBERS) -> Dataset:
    """Unprefixed answers with `labels` 0-2 (numeral system) or 3 (invalid); see task.classifier_examples."""
    examples = classifier_examples(n, seed, numbers=numbers, invalid_fraction=invalid_fraction)
    return Dataset.from_dict(
        {
            "input_ids": [token_ids(tokenizer, e["text"]) for e in examples],
            "labels": [e["label"] for e in examples],
            "kind": [e["kind"] for e in examples],  # not a model input: the Trainer drops it for training
        }
    )


def answer_dataset(tokenizer, n: int, seed: int, numbers=TRAIN_NUMBERS) -> Dataset:
    """Correct unprefixed samples `S__:3320x2=6640E` as `input_ids`, for the classifier's encoder pre-training."""
    examples = sample_examples(n, seed, numbers=numbers)
    return Dataset.from_dict({"input_ids": [token_ids(tokenizer, e["prompt"] + e["completion"]) for e in examples]})


class AnswerCorruptionCollator:
    """Pads a batch of correct samples and replaces random answer numerals by another numeral of the same system.

    `target="original"`: `labels` are the correct numerals at every answer position (a masked-LM head learns to
    repair the answer, i.e. to compute the double); `target="replaced"`: `labels` are 1 where a numeral was replaced
    and 0 at the other answer positions (a token head learns to spot a wrong numeral), and with `invalid_label`,
    `class_labels` are the answer's class: its numeral system (0-2), or `invalid_label` once a numeral of it was
    replaced. Elsewhere -100. Hand-written because transformers' DataCollatorForLanguageModeling needs a mask token
    (the vocabulary has none) and corrupts any position, while only the answer is to be checked against the question.
    """

    def __init__(self, tokenizer, corrupt_prob: float, target: str, invalid_label: int | None = None):
        if target not in ("original", "replaced"):
            raise ValueError(f"target must be 'original' or 'replaced', not {target!r}")
        self.pad_id = tokenizer.pad_token_id
        self.equals_id = tokenizer.convert_tokens_to_ids("=")
        self.first_numeral = tokenizer.convert_tokens_to_ids(NUMERALS[0][0])  # 30 numerals, 10 per system, in order
        self.corrupt_prob = corrupt_prob
        self.target = target
        self.invalid_label = invalid_label

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        input_ids = torch.tensor([f["input_ids"] + [self.pad_id] * (width - len(f["input_ids"])) for f in features])
        offset = input_ids - self.first_numeral
        after_equals = (input_ids == self.equals_id).long().cumsum(1).bool()
        answer = after_equals & (offset >= 0) & (offset < 10 * len(NUMERALS))
        replaced = answer & (torch.rand(input_ids.shape) < self.corrupt_prob)
        corrupted = input_ids.clone()
        for row, col in replaced.nonzero().tolist():  # another digit of the same system
            system, digit = divmod(offset[row, col].item(), 10)
            other = random.choice([d for d in range(10) if d != digit])
            corrupted[row, col] = self.first_numeral + 10 * system + other
        batch = {"input_ids": corrupted, "attention_mask": (input_ids != self.pad_id).long()}
        if self.target == "original":
            batch["labels"] = torch.where(answer, input_ids, -100)
            return batch
        batch["labels"] = torch.where(answer, replaced.long(), -100)
        if self.invalid_label is not None:
            first = answer.long().argmax(1)  # every sample has an answer: its first numeral names the system
            system = offset[torch.arange(len(offset)), first] // 10
            batch["class_labels"] = torch.where(replaced.any(1), self.invalid_label, system)
        return batch
