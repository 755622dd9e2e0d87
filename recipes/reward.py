"""Stage 2 — reward: a tiny BERT learns which numeral system an answer uses, or that it is no valid answer.

    python recipes/reward.py                    # defaults from recipes/configs/reward.yaml
    python recipes/reward.py --max_steps 500    # any field overrides the YAML

PPO then calls it through ppo_double.reward.NumeralReward (probability of the requested system).
"""

from dataclasses import dataclass, field
from pathlib import Path

from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

from ppo_double.args import fit_to_device, parse_args
from ppo_double.data import classifier_dataset
from ppo_double.evaluate import classifier_accuracy, format_accuracy
from ppo_double.hub import save_and_push
from ppo_double.modeling import build_classifier, load_tokenizer
from ppo_double.task import TEST_NUMBERS


@dataclass
class RewardScriptArguments:
    invalid_fraction: float = field(default=0.4, metadata={"help": "share of corrupted answers (class 'invalid')"})
    hidden_size: int = field(default=64, metadata={"help": "BERT hidden size"})
    num_hidden_layers: int = field(default=4, metadata={"help": "BERT layers"})
    num_attention_heads: int = field(default=4, metadata={"help": "BERT attention heads"})
    intermediate_size: int = field(default=64, metadata={"help": "BERT feed-forward size"})
    encoder_dropout: float = field(default=0.1, metadata={"help": "dropout inside the BERT encoder"})


def main(argv=None):
    script_args, training_args = parse_args(
        (RewardScriptArguments, TrainingArguments), str(Path(__file__).parent / "configs" / "reward.yaml"), argv
    )
    fit_to_device(training_args)
    set_seed(training_args.seed)

    # Data: unprefixed answers labelled by numeral system, plus corrupted ones labelled "invalid".
    tokenizer = load_tokenizer()
    n = training_args.max_steps * training_args.per_device_train_batch_size
    train_dataset = classifier_dataset(tokenizer, n, training_args.data_seed, script_args.invalid_fraction)

    # Model: the tutorial's BERT classifier, with a 4th class.
    model = build_classifier(
        script_args.hidden_size,
        script_args.num_hidden_layers,
        script_args.num_attention_heads,
        script_args.intermediate_size,
        script_args.encoder_dropout,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()

    # Accuracy per class on held-out numbers (clean answers in each system, and corrupted ones).
    if trainer.accelerator.is_main_process:
        held_out = classifier_dataset(tokenizer, 6000, seed=0, invalid_fraction=0.5, numbers=TEST_NUMBERS)
        results = classifier_accuracy(trainer.model, held_out)
        print(format_accuracy(results))
        trainer.save_metrics("eval", {f"accuracy/{k}": v for k, v in results.items()})

    # Save; with --push_to_hub, push the folder with a model card (stage, key config, accuracy per class).
    save_and_push(trainer, "reward", script_args)
    return trainer


if __name__ == "__main__":
    main()
