"""`datasets.Dataset` builders for each stage, tokenized up front.

SFTTrainer would tokenize prompt/completion text itself, but through the generic Python tokenizer path that takes
~45 s for the default 96k examples on 2 CPU cores; tokenizing the characters directly takes ~2 s and gives SFTTrainer
the same `input_ids` + `completion_mask` columns it would have built.
"""

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
        {"input_ids": [_ids(tokenizer, e["text"]) for e in examples], "labels": [e["label"] for e in examples]}
    )
