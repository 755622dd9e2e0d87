"""Stage 1 — SFT: a tiny GPT-2 learns to double a 4-digit number, answering in a random numeral system.

python recipes/sft.py                       # defaults from recipes/configs/sft.yaml
python recipes/sft.py --max_steps 300       # any field overrides the YAML
accelerate launch recipes/sft.py            # same, on whatever accelerate is configured for
"""

from dataclasses import dataclass, field
from pathlib import Path

from transformers import set_seed
from trl import SFTConfig, SFTTrainer

from ppo_double.args import fit_to_device, parse_args
from ppo_double.callbacks import compact_console
from ppo_double.checkpoints import start_run
from ppo_double.data import sft_dataset
from ppo_double.errors import run as run_main
from ppo_double.evaluate import TEST_SAMPLES, evaluate, format_table
from ppo_double.finish import finish
from ppo_double.modeling import build_policy, load_tokenizer
from ppo_double.signals import train
from ppo_double.task import UNPREFIXED, heldout_prompts


@dataclass
class SFTScriptArguments:
    n_embd: int = field(default=64, metadata={"help": "GPT-2 hidden size"})
    n_head: int = field(default=4, metadata={"help": "GPT-2 attention heads"})
    n_layer: int = field(default=4, metadata={"help": "GPT-2 layers"})
    num_train_examples: int | None = field(
        default=None, metadata={"help": "size of the generated dataset (default: enough for max_steps, no repeats)"}
    )
    eval_after_training: bool = field(default=True, metadata={"help": "judge held-out prompts after training"})
    test_samples: int = field(
        default=TEST_SAMPLES,
        metadata={"help": "sampled answers per test prompt then, as `make eval` (fewer: only for quick runs)"},
    )
    min_sampled_correct: float = field(
        default=0.98,
        metadata={"help": "floor: sampled answers to held-out prompts that are right doubles (0: no check)"},
    )


def main(argv=None):
    script_args, training_args = parse_args(
        (SFTScriptArguments, SFTConfig), str(Path(__file__).parent / "configs" / "sft.yaml"), argv
    )
    fit_to_device(training_args)
    run = start_run(training_args)  # checkpoints go to <output_dir>-checkpoints; a rerun resumes from the latest
    set_seed(training_args.seed)

    # Data: unprefixed prompt/completion pairs (`S__:3320x2=` -> `6640E`), never from held-out numbers.
    tokenizer = load_tokenizer()
    n = script_args.num_train_examples or training_args.max_steps * training_args.per_device_train_batch_size
    # completion_only_loss None is TRL's "the completion mask when there is one": completion-only here
    completion_only = training_args.completion_only_loss is not False
    train_dataset = sft_dataset(tokenizer, n, training_args.data_seed, completion_only)
    # The rows come trainer-ready (ppo_double/data.py; args.py refuses a max_length that would cut them): SFTTrainer's
    # own preparation would only cost time.
    training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}

    # Model: the tutorial's GPT-2, from scratch.
    model = build_policy(script_args.n_embd, script_args.n_head, script_args.n_layer)

    trainer = SFTTrainer(model=model, args=training_args, train_dataset=train_dataset, processing_class=tokenizer)
    compact_console(trainer)  # one short line per log (step, loss, token accuracy, lr), not the metrics dict
    train(trainer, run.resume_from())  # stops cleanly on SIGTERM / Ctrl-C (ppo_double/signals.py)

    # The result, checked before anything is saved: the judge on held-out unprefixed prompts. Then the final folder:
    # those numbers, the model, and with --push_to_hub the same folder on the Hub with a model card. It appears at
    # output_dir only once complete.
    def judge(model):
        prompts, seed = heldout_prompts(prefixed=False), training_args.seed
        results = evaluate(model, tokenizer, prompts, seed=seed, samples=script_args.test_samples)
        print(format_table(results))
        measured = {"sampled correct": results["sampled"][UNPREFIXED]["correct"]}
        return results, measured, {"sampled correct": script_args.min_sampled_correct}

    fix = "train longer (--max_steps) or from another --seed"
    finish(trainer, run, "sft", judge if script_args.eval_after_training else None, fix, script_args)
    return trainer


if __name__ == "__main__":
    run_main(main)
