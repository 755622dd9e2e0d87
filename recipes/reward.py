"""Stage 2 — reward: a tiny BERT learns which numeral system an answer uses, or that it is no valid answer.

Two phases, both with transformers' Trainer:
1. pre-train the encoder by masked prediction of answer numerals on correct samples. Telling a right double from
   one with a wrong digit means redoing the arithmetic; one label per sequence is too weak a signal for a 64-wide
   BERT to discover that (measured: stuck at ~26 % of wrong-digit answers caught after 6000 steps), while predicting
   each hidden numeral from the question teaches it in a few hundred steps;
2. fine-tune the classifier (the same encoder, a fresh pooled head) on the four classes.

    python recipes/reward.py                    # defaults from recipes/configs/reward.yaml
    python recipes/reward.py --max_steps 500    # any field overrides the YAML

PPO then calls it through ppo_double.reward.NumeralReward (probability of the requested system).
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from transformers import BertForMaskedLM, DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

from ppo_double.args import fit_to_device, parse_args
from ppo_double.data import AnswerMaskingCollator, answer_dataset, classifier_dataset
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
    encoder_dropout: float = field(default=0.0, metadata={"help": "dropout inside the BERT encoder"})
    pretrain_steps: int = field(default=2000, metadata={"help": "steps of masked answer prediction (0: none)"})
    pretrain_mask_prob: float = field(default=0.3, metadata={"help": "share of answer numerals hidden per sample"})


def main(argv=None):
    script_args, training_args = parse_args(
        (RewardScriptArguments, TrainingArguments), str(Path(__file__).parent / "configs" / "reward.yaml"), argv
    )
    fit_to_device(training_args)
    set_seed(training_args.seed)

    # Model: the tutorial's BERT classifier, with a 4th class.
    tokenizer = load_tokenizer()
    model = build_classifier(
        script_args.hidden_size,
        script_args.num_hidden_layers,
        script_args.num_attention_heads,
        script_args.intermediate_size,
        script_args.encoder_dropout,
    )
    batch = training_args.per_device_train_batch_size

    # Phase 1: its encoder learns the arithmetic, by filling in hidden answer numerals of correct samples.
    if script_args.pretrain_steps > 0:
        masked_lm = BertForMaskedLM(model.config)
        masked_lm.bert.embeddings, masked_lm.bert.encoder = model.bert.embeddings, model.bert.encoder  # shared
        pretrain_args = dataclasses.replace(training_args, max_steps=script_args.pretrain_steps, push_to_hub=False)
        Trainer(
            model=masked_lm,
            args=pretrain_args,
            train_dataset=answer_dataset(tokenizer, script_args.pretrain_steps * batch, training_args.data_seed),
            data_collator=AnswerMaskingCollator(tokenizer, script_args.pretrain_mask_prob),
        ).train()

    # Phase 2: unprefixed answers labelled by numeral system, plus corrupted ones labelled "invalid".
    n = training_args.max_steps * batch
    train_dataset = classifier_dataset(tokenizer, n, training_args.data_seed + 1, script_args.invalid_fraction)
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
