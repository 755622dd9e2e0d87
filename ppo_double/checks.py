"""Every stage checks its own result before it writes its final folder.

A result below one of the stage's floors (settings, with defaults the recipe meets on every seed measured) ends the
run with one `error:` line naming the measured number, the floor and what to try, exit code 3, and no final folder:
the checkpoints stay, and a rerun resumes from the last of them (`--min_... 0` turns a floor off). A weak stage is
never silent, and never becomes the next stage's input.
"""

# Every floor off, per stage: for runs that measure whatever result comes (benches, sweeps, plumbing tests) rather
# than stop at a weak one.
NO_FLOORS = {
    "sft": ["--min_sampled_correct", "0"],
    "reward": ["--min_clean_accuracy", "0", "--min_invalid_caught", "0", "--min_kind_caught", "0"],
    "rl": ["--min_exact_match", "0", "--min_sampled_exact_match", "0"],
}


class BelowFloor(Exception):
    """A stage's result is below one of its floors: printed as one line `error: ...`, exit code 3."""


def shortfalls(measured: dict[str, float], floors: dict[str, float]) -> list[str]:
    """`name 97.10% < floor 99.00%` for every `measured[name]` below its floor (a floor of None or 0 checks nothing)."""
    return [
        f"{name} {100 * measured[name]:.2f}% < floor {100 * floor:.2f}%"
        for name, floor in floors.items()
        if floor and measured[name] < floor
    ]
