"""The plumbing levers of `make all`'s time, measured: would a larger SFT batch, a hand-written sampling loop or a
cheaper start-up save plain-loop units? Writes docs/profile/plumbing.md (docs/performance.md says what it showed).

    python scripts/plumbing.py

Each number is the best of 3 repeats, on this machine now (run it alone: two torch jobs on 2 cores slow each other).
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from speed import plain_loop  # noqa: E402

from ppo_double.data import token_ids  # noqa: E402
from ppo_double.modeling import build_policy, load_tokenizer  # noqa: E402
from ppo_double.task import heldout_selection  # noqa: E402

PAGE = ROOT / "docs" / "profile" / "plumbing.md"
REPEATS = 3


def best(measure) -> float:
    return min(measure() for _ in range(REPEATS))


def timed(function, calls: int = 10) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - began) / calls


def sft_batches() -> list[str]:
    """The plain loop's cost per sample at one thread, by batch size: does a larger batch train faster per sample?"""
    torch.set_num_threads(1)
    rows = []
    for batch in (64, 128, 256):
        seconds = best(lambda batch=batch: plain_loop(6400 // batch, batch))
        rows.append(f"| SFT step, batch {batch}, 1 thread | {1000 * seconds / 6400:.3f} ms per sample |")
    return rows


@torch.no_grad()
def sampling() -> list[str]:
    """512 sampled 7-token answers: HF generate against a hand-written loop on the same KV cache, at 2 threads."""
    torch.set_num_threads(2)
    tokenizer, model = load_tokenizer(), build_policy().eval()
    prompts = heldout_selection("prefixed")[:512]
    ids = torch.tensor([token_ids(tokenizer, p) for p in prompts])

    def generate():
        model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=7, do_sample=True, top_k=0, top_p=1.0
        )

    def by_hand():
        out = model(input_ids=ids, use_cache=True)
        for _ in range(7):
            token = torch.multinomial(torch.softmax(out.logits[:, -1], -1), 1)
            out = model(input_ids=token, past_key_values=out.past_key_values, use_cache=True)

    generate(), by_hand()  # warm-up
    loops = {"HF `generate`": generate, "a hand-written loop": by_hand}
    return [
        f"| 512 sampled answers, {name}, 2 threads | {1000 * best(lambda f=f: timed(f)):.0f} ms |"
        for name, f in loops.items()
    ]


def start_up() -> list[str]:
    """Seconds to start a process that imports what a stage imports, and `accelerate launch`'s own start-up."""
    python, accelerate = sys.executable, str(Path(sys.executable).parent / "accelerate")
    launch = [accelerate, "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no"]
    cases = {
        "a stage's imports (torch, transformers, TRL, peft)": [python, "-c", "import ppo_double.ppo"],
        "`accelerate launch` of an empty script": [*launch, "--dynamo_backend", "no", "/dev/null"],
    }
    rows = []
    for name, command in cases.items():
        seconds = []
        for _ in range(REPEATS):
            began = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
            seconds.append(time.perf_counter() - began)
        rows.append(f"| {name} | {min(seconds):.2f} s (median {statistics.median(seconds):.2f} s) |")
    return rows


def main() -> None:
    unit = 100 * plain_loop(300, 64) / 300
    rows = [*sft_batches(), *sampling(), *start_up()]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    PAGE.write_text(
        "# Plumbing levers, measured\n\nWritten by `python scripts/plumbing.py`; what it showed: "
        "[performance.md](../performance.md#how-long-make-all-takes).\n\n"
        f"Plain loop: {unit:.2f} s per 100 steps (2 threads); commit {commit.strip()}.\n\n"
        "| measurement | best of 3 |\n|---|---|\n" + "\n".join(rows) + "\n",
        encoding="utf-8",
    )
    print(PAGE.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
