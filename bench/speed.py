"""The unit of machine speed: the tutorial's plain PyTorch SFT loop, and the recipe's SFT beside it.

Seconds on a 2-core machine vary by 2x between machines of one kind and over a day on one machine, so the bench
reports wall times also in plain-loop units: seconds / the plain loop's seconds per 100 SFT steps, measured in the same
invocation. Both loops train the same model on the same pre-tokenized data with the same batch; only the loop differs.
"""

import contextlib
import importlib.util
import io
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
        labels = torch.tensor([r + [-100] * (width - len(r)) for r in chunk["labels"]])
        # the tutorial's loss, by hand: next-token cross-entropy over the completion (and no loss_type to look up)
        logits = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def recipe(steps: int, batch: int) -> float:
    """recipes/sft.py on its YAML defaults but `steps` steps; returns the trainer's own train_runtime.

    No checkpoints (the plain loop saves none), and the output folder inside the temporary folder, so that the
    recipe's `<output_dir>-checkpoints` folder goes away with it.
    """
    spec = importlib.util.spec_from_file_location("recipe_sft", ROOT / "recipes" / "sft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["--max_steps", str(steps), "--per_device_train_batch_size", str(batch), "--save_strategy", "no"]
    args += ["--eval_after_training", "false", "--disable_tqdm", "true", "--logging_steps", str(max(1, steps // 5))]
    # the recipe's own log lines are no part of the bench's console: a timing, not a training run to follow
    quiet = io.StringIO()
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        trainer = module.main([*args, "--output_dir", str(Path(out) / "sft")])
    return next(e["train_runtime"] for e in reversed(trainer.state.log_history) if "train_runtime" in e)


def seconds_per_100_steps(steps: int = 300, batch: int = 64) -> dict[str, float]:
    """Seconds per 100 SFT steps of the plain loop, then of the recipe: {"plain": ..., "recipe": ...}."""
    return {"plain": 100 * plain_loop(steps, batch) / steps, "recipe": 100 * recipe(steps, batch) / steps}
