"""SFT speed: the project's SFT recipe (TRL's SFTTrainer) against a plain PyTorch loop of the tutorial, same run.

    python bench/bench.py                 # 300 steps, 3 repeats each, batch 64, the tutorial's model
    python bench/bench.py --steps 100 --repeats 1

Both sides train the same model on the same pre-tokenized data with the same batch; only the training loop differs.
Prints a markdown table (seconds per 100 steps, median of the repeats, and the ratio recipe / plain) and writes it,
with the raw numbers, to outputs/bench/. Compare ratios from one run, not seconds across machines or runs.
"""

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ppo_double.data import sft_dataset
from ppo_double.modeling import build_policy, load_tokenizer

ROOT = Path(__file__).resolve().parent.parent


def plain_loop(steps: int, batch: int, seed: int = 42) -> float:
    """The tutorial's loop (AdamW 1e-3 here, as the recipe), completion-only loss; returns seconds for `steps`."""
    torch.manual_seed(seed)
    tokenizer = load_tokenizer()
    rows = sft_dataset(tokenizer, steps * batch, seed=seed)
    model = build_policy()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    start = time.perf_counter()
    for step in range(steps):
        chunk = rows[step * batch : (step + 1) * batch]
        width = max(map(len, chunk["input_ids"]))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in chunk["input_ids"]])
        mask = torch.tensor([m + [0] * (width - len(m)) for m in chunk["completion_mask"]])
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=(ids != 0).long(), labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def recipe(steps: int, batch: int) -> float:
    """recipes/sft.py on its YAML defaults but `steps` steps; returns the trainer's own train_runtime."""
    spec = importlib.util.spec_from_file_location("recipe_sft", ROOT / "recipes" / "sft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with tempfile.TemporaryDirectory() as out:
        trainer = module.main(
            [
                "--max_steps",
                str(steps),
                "--per_device_train_batch_size",
                str(batch),
                "--output_dir",
                out,
                "--eval_after_training",
                "false",
                "--disable_tqdm",
                "true",
                "--logging_steps",
                str(max(1, steps // 5)),
            ]
        )
    return next(e["train_runtime"] for e in reversed(trainer.state.log_history) if "train_runtime" in e)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output_dir", default="outputs/bench")
    args = parser.parse_args(argv)

    seconds = {"plain PyTorch loop": [], "recipes/sft.py (SFTTrainer)": []}
    for _ in range(args.repeats):  # interleaved, so that machine noise hits both sides alike
        seconds["plain PyTorch loop"].append(plain_loop(args.steps, args.batch))
        seconds["recipes/sft.py (SFTTrainer)"].append(recipe(args.steps, args.batch))
    per_100 = {name: 100 * statistics.median(values) / args.steps for name, values in seconds.items()}
    plain = per_100["plain PyTorch loop"]
    lines = [
        f"SFT, {args.steps} steps x batch {args.batch}, median of {args.repeats}, torch threads "
        f"{torch.get_num_threads()}",
        "",
        "| loop | s / 100 steps | ratio to plain loop |",
        "|---|---|---|",
        *(f"| {name} | {value:.2f} | {value / plain:.2f}x |" for name, value in per_100.items()),
    ]
    table = "\n".join(lines)
    print(table)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(table + "\n", encoding="utf-8")
    results = {"args": vars(args), "seconds": seconds, "seconds_per_100_steps": per_100}
    (out / "bench.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
