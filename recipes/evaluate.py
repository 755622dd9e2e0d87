"""Judge a checkpoint on the held-out numbers: greedy and sampled answers, per prompt prefix.

python recipes/evaluate.py --model outputs/ppo
python recipes/evaluate.py --model outputs/sft --prompts unprefixed --output_json /tmp/sft.json
python recipes/evaluate.py --model outputs/ppo --baseline outputs/sft --prompts prefixed --samples 64   # precise
"""

from dataclasses import dataclass, field

from ppo_double.args import parse_args
from ppo_double.checkpoints import load_policy
from ppo_double.errors import run
from ppo_double.evaluate import TEST_SAMPLES, evaluate, format_comparison, format_table, save_results
from ppo_double.task import heldout_selection


@dataclass
class EvalArguments:
    model: str = field(default="outputs/sft", metadata={"help": "checkpoint folder of a policy"})
    baseline: str | None = field(default=None, metadata={"help": "a second policy to compare with (e.g. the SFT)"})
    prompts: str = field(
        default="all",
        metadata={"help": "which held-out prompts", "choices": ["all", "prefixed", "unprefixed"]},
    )
    seed: int = field(default=0, metadata={"help": "seed for the sampled answers"})
    samples: int = field(default=TEST_SAMPLES, metadata={"help": "sampled answers per prompt"})
    output_json: str | None = field(default=None, metadata={"help": "where to write the numbers (default: none)"})


def main(argv=None):
    (args,) = parse_args((EvalArguments,), argv=argv)
    prompts = heldout_selection(args.prompts)

    results = {}
    for name in filter(None, (args.baseline, args.model)):
        model, tokenizer = load_policy(name)
        results[name] = evaluate(model, tokenizer, prompts, seed=args.seed, samples=args.samples)
        print(f"\n{name}\n{format_table(results[name])}")
    if args.baseline:
        print(f"\nbefore ({args.baseline}) -> after ({args.model})\n")
        print(format_comparison(results[args.baseline], results[args.model]))
    if args.output_json:
        save_results(results, args.output_json)


if __name__ == "__main__":
    run(main)
