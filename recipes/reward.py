"""Stage 2 — reward: a tiny BERT learns which numeral system an answer uses, or that it is no valid answer.

Telling a right double from one with a wrong digit means redoing the arithmetic. One label per sequence is too weak
a signal for a 64-wide BERT to discover that (measured: ~27 % of wrong-digit answers caught, however long it
trains), so the classifier's encoder is first taught with a label per answer numeral. Three phases, each with
transformers' Trainer, on one shared encoder:
1. repair: a masked-LM head restores answer numerals that were replaced at random (it learns to compute the double);
2. detect: a token-classification head flags the replaced numerals (it learns to compare answer and question);
3. classify: the tutorial's classifier (pooled output, dropout 0.1, linear head) on the four classes.

    python recipes/reward.py                    # defaults from recipes/configs/reward.yaml
    python recipes/reward.py --max_steps 500    # any field overrides the YAML
    python recipes/reward.py --config recipes/configs/reward_tutorial.yaml   # the tutorial's classifier (below)

With `invalid_fraction: 0` there is no invalid class: the classifier has the tutorial's three classes (the numeral
systems), and with `repair_steps: 0`, `detect_steps: 0` phase 3 alone is the tutorial's reward training
(`make reward-tutorial`). PPO calls either through ppo_double.reward (probability of the requested system).
"""

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

from ppo_double.args import fit_to_device, parse_args
from ppo_double.callbacks import DetectionProbe, compact_console
from ppo_double.checkpoints import start_run
from ppo_double.data import AnswerCorruptionCollator, answer_dataset, classifier_dataset
from ppo_double.distributed import new_accelerator_state
from ppo_double.errors import run as run_main
from ppo_double.evaluate import classifier_accuracy, format_accuracy
from ppo_double.finish import finish
from ppo_double.modeling import CLASSIFIER_LABELS, build_classifier, encoder_heads, load_tokenizer
from ppo_double.signals import train
from ppo_double.task import INVALID, SYSTEMS, TEST_NUMBERS, VALIDATION_NUMBERS


@dataclass
class RewardScriptArguments:
    invalid_fraction: float = field(default=0.4, metadata={"help": "share of corrupted answers (class 'invalid')"})
    hidden_size: int = field(default=64, metadata={"help": "BERT hidden size"})
    num_hidden_layers: int = field(default=4, metadata={"help": "BERT layers"})
    num_attention_heads: int = field(default=4, metadata={"help": "BERT attention heads"})
    intermediate_size: int = field(default=64, metadata={"help": "BERT feed-forward size"})
    encoder_dropout: float = field(default=0.0, metadata={"help": "dropout inside the BERT encoder"})
    repair_steps: int = field(default=500, metadata={"help": "phase 1 steps: restore replaced numerals (0: skip)"})
    repair_corrupt_prob: float = field(default=0.3, metadata={"help": "phase 1: share of answer numerals replaced"})
    detect_steps: int = field(default=1000, metadata={"help": "phase 2 steps: flag replaced numerals (0: skip)"})
    detect_corrupt_prob: float = field(default=0.3, metadata={"help": "phase 2: share of answer numerals replaced"})
    # Floors on the held-out accuracy, checked before the final folder is written (0: no check).
    min_clean_accuracy: float = field(default=0.995, metadata={"help": "floor: each numeral system's accuracy"})
    min_invalid_caught: float = field(default=0.99, metadata={"help": "floor: invalid answers classified invalid"})
    min_kind_caught: float = field(default=0.97, metadata={"help": "floor: the same, for each kind of corruption"})


def main(argv=None):
    script_args, training_args = parse_args(
        (RewardScriptArguments, TrainingArguments), str(Path(__file__).parent / "configs" / "reward.yaml"), argv
    )
    fit_to_device(training_args)
    run = start_run(training_args)  # checkpoints go to <output_dir>-checkpoints; a rerun resumes from the latest
    set_seed(training_args.seed)

    # Model: the tutorial's BERT classifier, with a 4th class when there are invalid answers to learn.
    tokenizer = load_tokenizer()
    has_invalid = script_args.invalid_fraction > 0
    model = build_classifier(
        script_args.hidden_size,
        script_args.num_hidden_layers,
        script_args.num_attention_heads,
        script_args.intermediate_size,
        script_args.encoder_dropout,
        labels=CLASSIFIER_LABELS if has_invalid else SYSTEMS,
    )
    batch = training_args.per_device_train_batch_size

    # Phases 1 and 2: the encoder learns the arithmetic with a label per answer numeral, through two extra heads.
    repair, detect = encoder_heads(model)
    phases = [
        ("repair", repair, script_args.repair_steps, script_args.repair_corrupt_prob, "original"),
        ("detect", detect, script_args.detect_steps, script_args.detect_corrupt_prob, "replaced"),
    ]
    probe = None  # phase 2's held-out detection accuracy, measured as it trains (it learns abruptly)
    for phase, (name, head, steps, corrupt_prob, target) in enumerate(phases, start=1):
        if steps > 0:
            collator = AnswerCorruptionCollator(tokenizer, corrupt_prob, target, INVALID if has_invalid else None)
            if name == "detect":
                probe = DetectionProbe(head, collator, answer_dataset(tokenizer, 1000, 0, VALIDATION_NUMBERS))
            # At a constant learning rate: under the classifier's cosine decay, phase 2 stopped half-way (loss 0.18
            # instead of ~0) and the classifier then caught only 58 % of wrong-digit answers.
            args = dataclasses.replace(
                training_args,
                output_dir=os.path.join(run.checkpoints_dir, name),
                max_steps=steps,
                lr_scheduler_type="constant",
                warmup_steps=0,
                push_to_hub=False,
            )
            phase_trainer = Trainer(
                model=head,
                args=args,
                train_dataset=answer_dataset(tokenizer, steps * batch, training_args.data_seed + phase),
                data_collator=collator,
                callbacks=[probe] if name == "detect" else None,
            )
            compact_console(phase_trainer)
            train(phase_trainer, run.resume_from(name))  # a finished phase: its weights only; a stop stops here
            new_accelerator_state()  # (DeepSpeed) the next phase's Trainer sets up its own engine

    # Phase 3: unprefixed answers labelled by numeral system, plus corrupted ones labelled "invalid".
    n = training_args.max_steps * batch
    train_dataset = classifier_dataset(tokenizer, n, training_args.data_seed, script_args.invalid_fraction)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    compact_console(trainer)  # one short line per log (step, loss, lr), not the metrics dict
    train(trainer, run.resume_from())  # stops cleanly on SIGTERM / Ctrl-C (ppo_double/signals.py)

    # The result, checked before anything is saved: accuracy per class on held-out numbers (clean answers in each
    # system, and corrupted ones when the classifier has the invalid class). Then the final folder: those numbers, the
    # classifier, and with --push_to_hub a model card. It appears at output_dir only once complete.
    def judge(model):
        invalid = 0.5 if has_invalid else 0.0
        held_out = classifier_dataset(tokenizer, 6000, seed=0, invalid_fraction=invalid, numbers=TEST_NUMBERS)
        results = classifier_accuracy(model, held_out)
        print(format_accuracy(results))
        floors = {system: script_args.min_clean_accuracy for system in SYSTEMS}
        if has_invalid:
            floors["invalid"] = script_args.min_invalid_caught
            floors.update({k: script_args.min_kind_caught for k in results if k.startswith("invalid/")})
        metrics = {f"accuracy/{k}": v for k, v in results.items()}
        if probe is not None and probe.history:  # (in this process: a resumed phase 2 counts from its checkpoint)
            metrics["detect/heldout_accuracy"] = probe.history[-1][1]
            metrics["detect/learned_at_step"] = probe.learned_at
            reached = f"{100 * probe.threshold:.1f} %"
            learned = f"first reached {reached} at step {probe.learned_at}" if probe.learned_at else f"never {reached}"
            print(
                f"phase 2 flags {100 * probe.history[-1][1]:.2f} % of held-out answer numerals right ({learned} of "
                f"{script_args.detect_steps})"
            )
        return metrics, results, floors

    finish(trainer, run, "reward", judge, "rerun with another --seed, or longer phases (--detect_steps)", script_args)
    return trainer


if __name__ == "__main__":
    run_main(main)
