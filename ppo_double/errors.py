"""Bad input ends a run with one line naming the problem and its fix, not a traceback."""

import sys


class UsageError(Exception):
    """Bad input from the user (a value, a path, a prompt, a checkpoint): printed as one line `error: ...`."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (libraries' messages can run over many lines), or its type."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def run(main, argv=None) -> None:
    """Run a recipe's `main`, turning a UsageError into `error: <message>` on stderr and exit code 2, and a result
    below its stage's floor (checks.BelowFloor) into the same line and exit code 3."""
    from .checks import BelowFloor

    try:
        main(argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except BelowFloor as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
