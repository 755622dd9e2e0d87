"""Bad input and the faults a long run meets end a run with one line naming the problem and its fix, not a
traceback."""

import errno
import os
import shutil
import sys
from contextlib import contextmanager

# Exit codes besides 2 (UsageError) and 3 (checks.BelowFloor); a stop by a signal exits 128 + its number, as a shell
# reports a process the signal killed (143 for SIGTERM, 130 for SIGINT).
DISK_FULL_EXIT = 4


class UsageError(Exception):
    """Bad input from the user (a value, a path, a prompt, a checkpoint): printed as one line `error: ...`."""


class Stopped(Exception):
    """Training stopped by a signal after saving a checkpoint (ppo_double.signals): one line, exit 128 + signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class DiskFull(Exception):
    """The disk filled while the run wrote a checkpoint or its final folder: one line `error: ...`, exit code 4."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (libraries' messages can run over many lines), or its type."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def is_disk_full(err: BaseException, folder: str) -> bool:
    """Whether `err`, raised while writing into `folder`, means the disk is full.

    Python's own writes raise OSError(ENOSPC) and safetensors says "os error 28"; torch.save's zip writer only says a
    write failed or ended at an unexpected position, so such an error counts when the disk has (almost) nothing left.
    """
    chain = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    for each in chain:
        text = str(each)
        if isinstance(each, OSError) and each.errno == errno.ENOSPC:
            return True
        if "No space left on device" in text or "os error 28" in text:
            return True
    torch_write = any(name in str(each) for each in chain for name in ("PytorchStreamWriter", "inline_container"))
    return torch_write and free_bytes(folder) < 16 * 2**20


def free_bytes(folder: str) -> int:
    """Free space on the disk that holds `folder` (or its nearest existing parent)."""
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


@contextmanager
def on_full_disk(folder: str, what: str, resume_hint, cleanup=None):
    """Turn a full disk while the block writes into `folder` into DiskFull, after `cleanup()` (which deletes the
    half-written files). `what` names what was being written; `resume_hint()` says what a rerun does."""
    try:
        yield
    except Exception as err:
        if not is_disk_full(err, folder):
            raise
        if cleanup is not None:
            cleanup()
        raise DiskFull(
            f"the disk is full: could not write {what} ({free_bytes(folder) / 2**20:.1f} MiB free there): free some "
            f"space and rerun the same command; {resume_hint()}"
        ) from None


def run(main, argv=None) -> None:
    """Run a recipe's `main`, turning a UsageError into `error: <message>` on stderr and exit code 2, a result below
    its stage's floor (checks.BelowFloor) into the same line and exit code 3, a full disk into exit code 4, and a
    stop by SIGTERM or SIGINT into its one line and 143 or 130."""
    from .checks import BelowFloor

    exit_codes = {UsageError: 2, BelowFloor: 3, DiskFull: DISK_FULL_EXIT}
    # Every process of a multi-process run raises the same refusal, verdict or stop (each is agreed between them): the
    # first prints it. A full disk is each machine's own.
    first = os.environ.get("RANK", "0") == "0"
    try:
        main(argv)
    except tuple(exit_codes) as err:
        if first or isinstance(err, DiskFull):
            print(f"error: {err}", file=sys.stderr)
        sys.exit(next(code for kind, code in exit_codes.items() if isinstance(err, kind)))
    except Stopped as err:  # asked for, not an error: its own line
        if first:
            print(err, file=sys.stderr)
        sys.exit(err.exit_code)
    except OSError as err:  # a full disk outside the checkpoint and final-folder writes (a log, a results file)
        if err.errno != errno.ENOSPC:
            raise
        print(
            f"error: the disk is full ({first_line(err)}): free some space and rerun the same command; it resumes "
            "from its latest checkpoint",
            file=sys.stderr,
        )
        sys.exit(DISK_FULL_EXIT)
