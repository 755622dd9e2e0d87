"""`ppo-double`: try a checkpoint from the shell — generate answers, judge it, compare two, plot the runs' logs.

    ppo-double generate outputs/ppo 大写:3164 小写:1250
    ppo-double eval outputs/ppo --prompts prefixed
    ppo-double compare outputs/sft outputs/ppo
    ppo-double plots

The logic lives in ppo_double.evaluate / ppo_double.task / ppo_double.plots; this module only parses arguments,
checks them, and prints. Bad input (a malformed prompt, a missing model folder) is one line `error: ...` on stderr
and exit code 2, never a traceback.
"""

import argparse
import os
import sys

from .errors import UsageError
from .task import EOS, PREFIXES, UNPREFIXED, heldout_selection, make_prompt, parse_prompt, prefix_for
from .tokenizer import VOCAB

MARK_NO_EOS = "[no EOS]"
MARK_EMPTY = "[empty]"


# --- prompts and answers -----------------------------------------------------------------------------------------


def normalize_prompt(text: str) -> str:
    """`大写:3164`, `大写:3164x2=` or `S大写:3164x2=` -> the model's prompt `S大写:3164x2=`.

    Raises UsageError with a one-line message naming what is wrong (and any character outside the vocabulary).
    """
    stripped = text.strip()
    try:
        label, number = parse_prompt(stripped)
    except ValueError as err:
        message = str(err)
        outside = [(i, c) for i, c in enumerate(stripped) if c not in VOCAB]
        if outside:
            position, char = outside[0]
            message += f"; character {char!r} at position {position} is not in the model's 42-character vocabulary"
        raise UsageError(message) from None
    return make_prompt(number, label)


def short_prompt(prompt: str) -> str:
    """`S大写:3164x2=` -> `大写:3164`, the form a user types."""
    label, number = parse_prompt(prompt)
    return f"{prefix_for(label)}:{number}"


def show_answer(completion: str) -> str:
    """A completion as `generate_answers` returns it -> what to print: `陆叁贰捌E` -> `陆叁贰捌`.

    A completion that never reached EOS (within the generation budget) is marked `[no EOS]`; an immediate EOS
    prints `[empty]`.
    """
    if EOS in completion:
        answer = completion.split(EOS, 1)[0]
        return answer if answer else MARK_EMPTY
    return f"{completion} {MARK_NO_EOS}".lstrip()


def read_prompts(args_prompts: list[str], stdin) -> list[tuple[str, str]]:
    """(where, text) for each prompt: the arguments in order, `-` (or no argument at all) expanded to stdin lines.

    Blank stdin lines are skipped; an empty argument is an error like any other malformed prompt.
    """
    if not args_prompts:
        args_prompts = ["-"]
    prompts, stdin_read = [], False
    for index, text in enumerate(args_prompts, start=1):
        if text != "-":
            prompts.append((f"prompt {index}", text))
            continue
        if stdin_read:
            continue
        stdin_read = True
        if stdin.isatty():
            print("reading prompts from stdin, one per line (Ctrl-D to end)", file=sys.stderr)
        for line_number, line in enumerate(stdin, start=1):
            if line.strip():
                prompts.append((f"stdin line {line_number}", line.strip()))
    if not prompts:
        raise UsageError("no prompts: give them as arguments (大写:3164) or one per line on stdin")
    return prompts


# --- models ------------------------------------------------------------------------------------------------------


def load_policy(path: str):
    """(model, tokenizer) from a local checkpoint folder; UsageError (one line) when it is missing or broken.

    Only local folders: a path that does not exist is never looked up on the Hub (that takes ~50 s of retries
    offline). Download a Hub checkpoint first (`hf download USER/REPO --local-dir DIR`).
    """
    from .checkpoints import load_policy as load

    return load(path)


# --- subcommands -------------------------------------------------------------------------------------------------


def cmd_generate(args) -> int:
    prompts = []
    for where, text in read_prompts(args.prompts, sys.stdin):
        try:
            prompts.append(normalize_prompt(text))
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None
    model, tokenizer = load_policy(args.model)

    from .evaluate import generate_answers

    answers = generate_answers(model, tokenizer, prompts, sample=args.sample, seed=args.seed)
    for prompt, completion in zip(prompts, answers):
        print(f"{short_prompt(prompt)} -> {show_answer(completion)}")
    return 0


def cmd_eval(args) -> int:
    model, tokenizer = load_policy(args.model)

    from .evaluate import evaluate, format_table, save_results

    prompts = heldout_selection(args.prompts)
    results = evaluate(model, tokenizer, prompts, seed=args.seed)
    print(f"{args.model}: {len(prompts)} held-out test prompts, greedy and sampled (temperature 1, seed {args.seed})")
    print(format_table(results))
    if args.output_json:
        save_results({args.model: results}, args.output_json)
        print(f"wrote {args.output_json}")
    return 0


def cmd_compare(args) -> int:
    a_model, a_tokenizer = load_policy(args.a)
    b_model, b_tokenizer = load_policy(args.b)

    from .evaluate import evaluate, format_comparison, generate_answers, save_results
    from .task import judge

    prompts = heldout_selection(args.prompts)
    results = {
        args.a: evaluate(a_model, a_tokenizer, prompts, seed=args.seed),
        args.b: evaluate(b_model, b_tokenizer, prompts, seed=args.seed),
    }
    print(f"{len(prompts)} held-out test prompts; before = A ({args.a}), after = B ({args.b})\n")
    print(format_comparison(results[args.a], results[args.b]))

    # Example greedy answers where A and B differ, taken in turn from each prefix so every prefix shows up.
    a_answers = generate_answers(a_model, a_tokenizer, prompts)
    b_answers = generate_answers(b_model, b_tokenizer, prompts)
    by_prefix = {}
    for prompt, a, b in zip(prompts, a_answers, b_answers):
        if a != b:
            by_prefix.setdefault(prefix_for(parse_prompt(prompt)[0]), []).append((prompt, a, b))
    differing = sum(map(len, by_prefix.values()))
    examples = []
    while len(examples) < min(args.examples, differing):
        for rows in by_prefix.values():
            if rows and len(examples) < args.examples:
                examples.append(rows.pop(0))
    print(f"\ngreedy answers differ on {differing} of {len(prompts)} prompts", end="")
    if not examples:
        print(".")
    else:
        print(f"; {len(examples)} examples (✓ = exact match: right double, requested system, then EOS):\n")
        print(f"| prompt | A: {args.a} | B: {args.b} |\n|---|---|---|")
        for prompt, a, b in examples:
            cells = [f"{show_answer(c)} {'✓' if judge(prompt, c).exact_match else '✗'}" for c in (a, b)]
            print(f"| {short_prompt(prompt)} | {cells[0]} | {cells[1]} |")
    if args.output_json:
        save_results(results, args.output_json)
        print(f"\nwrote {args.output_json}")
    return 0


def cmd_summary(args) -> int:
    from .summary import summarize

    print(summarize(args.runs_dir))
    return 0


def cmd_plots(args) -> int:
    from .plots import render_plots

    written = render_plots(args.runs_dir, args.output_dir, eval_json=args.eval_json)
    if not written:
        raise UsageError(f"nothing to plot under {args.runs_dir!r}: run the stages first (make all)")
    return 0


# --- parser ------------------------------------------------------------------------------------------------------

_PROMPT_HELP = f"""\
A prompt is PREFIX:NUMBER with a 4-digit NUMBER (1000-9999) and PREFIX one of {", ".join(PREFIXES)}
(digits, chinese lower, chinese upper) or {UNPREFIXED} (no request: the SFT format, any system); the model's
own form S大写:3164x2= is accepted too."""


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="ppo-double",
        description="Try ppo_double checkpoints: generate answers, judge a checkpoint, compare two, plot the logs.",
        epilog="Run `ppo-double COMMAND --help` for each command's options and examples.",
        formatter_class=formatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = commands.add_parser(
        "generate",
        help="answer prompts such as 大写:3164 with a checkpoint",
        description=f"""\
Answer each prompt with the checkpoint in MODEL and print one line per prompt, in order:

    PROMPT -> ANSWER

e.g. `大写:3164 -> 陆叁贰捌`. The answer is the text before EOS (the trailing E is not printed); an answer that
did not end with EOS within 7 new tokens is printed whole and marked {MARK_NO_EOS}, an immediate EOS prints
{MARK_EMPTY}.

{_PROMPT_HELP}
Invalid prompts are reported as one line `error: ...` on stderr, exit code 2, before the model is loaded.""",
        epilog="""\
examples:
  ppo-double generate outputs/ppo 大写:3164 小写:3164 数字:3164
  printf '大写:1234\\n小写:5678\\n' | ppo-double generate outputs/ppo
  ppo-double generate outputs/ppo 大写:3164 --sample --seed 1""",
        formatter_class=formatter,
    )
    gen.add_argument("model", metavar="MODEL", help="local checkpoint folder, e.g. outputs/ppo or outputs/sft")
    gen.add_argument(
        "prompts",
        metavar="PROMPT",
        nargs="*",
        help="prompts such as 大写:3164; `-` or none: read them from stdin, one per line (blank lines skipped)",
    )
    mode = gen.add_mutually_exclusive_group()
    mode.add_argument("--greedy", dest="sample", action="store_false", help="greedy decoding (the default)")
    mode.add_argument("--sample", dest="sample", action="store_true", help="sample at temperature 1 (no top-k/top-p)")
    gen.add_argument("--seed", type=int, default=0, help="seed for --sample (default: 0)")
    gen.set_defaults(func=cmd_generate, sample=False)

    prompts_help = "which held-out test prompts: all (default), prefixed (数字/小写/大写) or unprefixed (__)"
    ev = commands.add_parser(
        "eval",
        help="judge a checkpoint on the held-out test prompts (per-prefix table)",
        description="""\
Judge MODEL on the held-out test numbers with the rule-based judge (never the reward model): greedy and sampled
answers (temperature 1), one row per mode and prefix. Columns: exact_match (right double, requested system, then
EOS), correct (right double in any system), eos, and the share of answers in each numeral system. Same prompts and
numbers as `python recipes/evaluate.py --model MODEL`.""",
        epilog="""\
examples:
  ppo-double eval outputs/ppo --prompts prefixed
  ppo-double eval outputs/sft --prompts unprefixed --output_json outputs/sft_eval.json""",
        formatter_class=formatter,
    )
    ev.add_argument("model", metavar="MODEL", help="local checkpoint folder, e.g. outputs/ppo")
    ev.add_argument("--prompts", choices=["all", "prefixed", "unprefixed"], default="all", help=prompts_help)
    ev.add_argument("--seed", type=int, default=0, help="seed for the sampled answers (default: 0)")
    ev.add_argument("--output_json", metavar="FILE", help="also write the numbers as {MODEL: results} JSON")
    ev.set_defaults(func=cmd_eval)

    cmp = commands.add_parser(
        "compare",
        help="two checkpoints side by side on the same held-out prompts",
        description="""\
Judge checkpoints A (before, e.g. the SFT) and B (after, e.g. PPO) on the same held-out test prompts and print a
before -> after table of exact match and correct doubles per mode and prefix, then example prompts where their
greedy answers differ, with each answer marked ✓ (exact match) or ✗.""",
        epilog="""\
examples:
  ppo-double compare outputs/sft outputs/ppo
  ppo-double compare outputs/sft outputs/ppo --prompts prefixed --examples 12""",
        formatter_class=formatter,
    )
    cmp.add_argument("a", metavar="A", help="the checkpoint before, e.g. outputs/sft")
    cmp.add_argument("b", metavar="B", help="the checkpoint after, e.g. outputs/ppo")
    cmp.add_argument("--prompts", choices=["all", "prefixed", "unprefixed"], default="all", help=prompts_help)
    cmp.add_argument("--examples", type=int, default=6, metavar="N", help="differing answers to show (default: 6)")
    cmp.add_argument("--seed", type=int, default=0, help="seed for the sampled answers (default: 0)")
    cmp.add_argument(
        "--output_json", metavar="FILE", help="also write the numbers as {A: results, B: results} (eval.json format)"
    )
    cmp.set_defaults(func=cmd_compare)

    plots = commands.add_parser(
        "plots",
        help="PNG plots from the runs' logs (trainer_state.json, eval results)",
        description="""\
Render PNG plots from what the stages wrote under RUNS_DIR: SFT loss (sft/trainer_state.json), the reward
classifier's loss and per-class accuracy (reward/trainer_state.json, reward/eval_results.json), PPO reward and KL
and the judge's exact match per prefix during training (ppo/trainer_state.json), and the before/after bars of
`make eval` (eval.json). A plot whose inputs are missing is skipped with a one-line note.""",
        epilog="""\
examples:
  ppo-double plots                      # outputs/ -> outputs/plots/*.png
  ppo-double plots --output_dir docs""",
        formatter_class=formatter,
    )
    plots.add_argument("--runs_dir", default="outputs", help="folder holding sft/, reward/, ppo/ (default: outputs)")
    plots.add_argument("--output_dir", default=None, help="where to write the PNGs (default: RUNS_DIR/plots)")
    plots.add_argument("--eval_json", default=None, help="before/after numbers (default: RUNS_DIR/eval.json)")
    plots.set_defaults(func=cmd_plots)

    summary = commands.add_parser(
        "summary",
        help="what `make all` ran: wall times, the before -> after table, the models, what to try next",
        description="""\
Summarise a pipeline run from what it wrote under RUNS_DIR: each stage's wall time (wall_times.tsv, written by
`make all`), the before -> after table (eval.json, written by `make eval`), the model folders, and commands to try
next. A file that is missing is left out.""",
        epilog="""\
examples:
  ppo-double summary
  ppo-double summary --runs_dir outputs""",
        formatter_class=formatter,
    )
    summary.add_argument("--runs_dir", default="outputs", help="folder holding sft/, reward/, ppo/ (default: outputs)")
    summary.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout closed early (`ppo-double generate ... | head -1`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush does not fail
        return 1


if __name__ == "__main__":
    sys.exit(main())
