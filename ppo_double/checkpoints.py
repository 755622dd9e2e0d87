"""Checkpoint folders: where a stage writes them, which one a rerun resumes from, and loading them safely.

A stage run with `--output_dir X` writes
    X-checkpoints/checkpoint-N/   the trainer's checkpoints while it trains; a rerun resumes from the latest one
    X/                            the final model, moved into place by one rename once every file in it is written
so a run killed at any moment never leaves an `X` that a later stage, an evaluation or the Hub push takes for
complete, and a checkpoint caught half-written is skipped on resume. Weights load from safetensors only (no pickle).
"""

import atexit
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from accelerate import PartialState

from .distributed import on_main
from .errors import UsageError, first_line, on_full_disk

logger = logging.getLogger(__name__)

# Written last by transformers' Trainer._save_checkpoint: a checkpoint whose trainer_state.json parses is complete.
TRAINER_STATE = "trainer_state.json"
WEIGHTS = "model.safetensors"
# What each role's config.json says, and where such a folder comes from.
ROLES = {
    "policy": {"model_type": "gpt2", "what": "a policy (GPT-2)", "make": "make sft", "example": "outputs/sft"},
    "reward": {
        "model_type": "bert",
        "what": "the reward classifier (BERT)",
        "make": "make reward",
        "example": "outputs/reward",
    },
}


def checkpoints_dir(output_dir: str) -> str:
    return str(output_dir).rstrip("/\\") + "-checkpoints"


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """Why a trainer checkpoint cannot be resumed from, or None when it can.

    Unfinished: its trainer_state.json, written last, is missing or does not parse (a save cut short by a kill or a
    full disk). Broken: the save finished, but the weights or the optimizer state are missing or truncated since
    (an old checkpoint caught mid-deletion, a disk or copy that lost data). Cheap: it reads file headers, not tensors.
    """
    checkpoint = Path(checkpoint)
    try:
        json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"unfinished: no readable {TRAINER_STATE}"
    if not any((checkpoint / name).is_file() for name in (WEIGHTS, "adapter_model.safetensors")):
        return f"broken: no {WEIGHTS}"
    if problem := optimizer_problem(checkpoint):
        return problem
    for path in checkpoint.rglob("*"):  # PPO's value_model/ included
        torn_safetensors = path.suffix == ".safetensors" and safetensors_error(path)
        torn_zip = path.suffix in (".pt", ".pth") and not zipfile.is_zipfile(path)  # torch.save's zip ends in its index
        if torn_safetensors or torn_zip:
            return f"broken: {path.relative_to(checkpoint)} is truncated or corrupted"
    return None


def optimizer_problem(checkpoint: Path) -> str | None:
    """Why a checkpoint's optimizer state cannot be resumed from, in whichever engine's layout it is: `optimizer.pt`
    (one process, DDP); DeepSpeed's `latest`, naming a `global_step*/` folder with one `*optim_states.pt` shard per
    process (a ZeRO checkpoint resumes on as many processes as wrote it); FSDP's `optimizer.bin` or `optimizer_0/`."""
    if any((checkpoint / name).exists() for name in ("optimizer.pt", "optimizer.bin", "optimizer_0")):
        return None
    try:
        tag = (checkpoint / "latest").read_text(encoding="utf-8").strip()
    except OSError:
        return "broken: no optimizer.pt"
    shards = len(list((checkpoint / tag).glob("*optim_states.pt")))
    if not shards:
        return f"broken: DeepSpeed's {tag}/ holds no optimizer state"
    processes = PartialState().num_processes
    if shards != processes:
        return (
            f"incompatible: DeepSpeed saved it on {shards} processes, this run has {processes} (relaunch with "
            f"--num_processes {shards})"
        )
    return None


def safetensors_error(path: Path) -> str | None:
    """Why a safetensors file cannot be loaded (safetensors' own first line), or None. It reads the header only, and
    checks it against the file: a truncated file does not cover what its header promises."""
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as handle:
            handle.keys()
    except Exception as err:  # safetensors raises its own SafetensorError (or OSError) for a broken file
        return first_line(err)
    return None


def is_complete(checkpoint: str | Path) -> bool:
    """A trainer checkpoint that can be resumed from: see `checkpoint_problem`."""
    return checkpoint_problem(checkpoint) is None


def scan_checkpoints(folder: str | Path) -> tuple[str | None, list[tuple[str, str]]]:
    """(The `checkpoint-N` in `folder` with the highest N that can be resumed from, or None; the newer ones that
    cannot, with why, newest first)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None, []
    steps = [
        (int(match[1]), path)
        for path in folder.iterdir()
        if path.is_dir() and (match := re.fullmatch(r"checkpoint-(\d+)", path.name))
    ]
    skipped = []
    for _, path in sorted(steps, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path), skipped
        skipped.append((str(path), problem))
    return None, skipped


def last_complete_checkpoint(folder: str | Path) -> str | None:
    """The `checkpoint-N` in `folder` with the highest N that can be resumed from, or None."""
    return scan_checkpoints(folder)[0]


def resume_hint(folder: str) -> str:
    """What a rerun of the same command does, in words (for a message that asks for one)."""
    checkpoint = last_complete_checkpoint(folder)
    return f"it resumes from {checkpoint}, which is intact" if checkpoint else "it starts over (no checkpoint yet)"


@dataclass
class StageRun:
    """One stage's folders, and whether it resumes (see `start_run`)."""

    output_dir: str  # the final folder
    checkpoints_dir: str
    resume: bool | str  # True: from the latest complete checkpoint; False: from scratch; str: from that checkpoint

    def resume_from(self, subfolder: str = "") -> str | None:
        """The checkpoint the trainer writing to `checkpoints_dir/subfolder` resumes from (None: from scratch): chosen
        once, by the main process, for every process (on a cluster each node may list a shared folder differently).

        A checkpoint given by path is the stage's main trainer's; other trainers (subfolders) resume their latest.
        """
        checkpoint, refusal = on_main(self._choose, subfolder)
        if refusal:
            raise UsageError(refusal)
        return checkpoint

    def _choose(self, subfolder: str) -> tuple[str | None, str | None]:
        """(The checkpoint to resume from, None) or (None, why the run must not start over silently)."""
        if isinstance(self.resume, str) and not subfolder:
            return self.resume, None
        folder = os.path.join(self.checkpoints_dir, subfolder) if subfolder else self.checkpoints_dir
        if self.resume is False:
            return None, None
        checkpoint, skipped = scan_checkpoints(folder)
        for path, problem in skipped:
            logger.warning("skipping %s (%s)", path, problem)
        kept = [(path, problem) for path, problem in skipped if problem.startswith(("broken", "incompatible"))]
        if kept and not checkpoint:
            # Starting over silently would throw away a run that may have trained for hours.
            path, problem = kept[0]
            return None, (
                f"{path} is {problem} and there is no earlier complete checkpoint in {folder}: pass "
                f"--resume_from_checkpoint false to start over (it deletes {self.checkpoints_dir})"
            )
        if checkpoint:
            logger.warning("resuming from %s (--resume_from_checkpoint false starts over)", checkpoint)
        else:
            logger.warning("no checkpoint in %s: training from scratch", folder)
        return checkpoint, None


def start_run(training_args) -> StageRun:
    """Check `output_dir`, send the trainer's checkpoints to `<output_dir>-checkpoints`, and settle resuming.

    `--resume_from_checkpoint` (TrainingArguments' own field, which the Trainer leaves to scripts): unset or `true`
    resumes from the latest complete checkpoint when there is one; `false` deletes the old checkpoints and starts
    over; a path resumes from that checkpoint. Call before building the trainer.
    """
    final = training_args.output_dir
    work = checkpoints_dir(final)
    for path in (final, work):
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f"output_dir {path!r} is a file, not a folder: pass another --output_dir")
    value = training_args.resume_from_checkpoint
    flag = {None: True, "true": True, "false": False}.get(value if value is None else str(value).lower(), value)
    if isinstance(flag, str) and (problem := checkpoint_problem(flag)):
        raise UsageError(
            f"--resume_from_checkpoint {flag!r} is no complete checkpoint ({problem}): pass another one, or true "
            f"(latest in {work}) or false (start over)"
        )
    state = PartialState()
    _lock_everywhere(work, final, state)
    old = [path for path in Path(work).iterdir() if path.name != LOCK]  # the lock stays: this run holds it
    if flag is False:
        if old and state.is_main_process:
            logger.warning("--resume_from_checkpoint false: deleting the old checkpoints in %s, starting over", work)
            for path in old:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        state.wait_for_everyone()  # on every process (each saw `old` at its own moment)
    if training_args.push_to_hub and not training_args.hub_model_id:
        training_args.hub_model_id = Path(final).name  # the trainer would name the repo after its output_dir
    training_args.output_dir = work
    return StageRun(final, work, flag)


# --- one run per output folder ------------------------------------------------------------------------------------

LOCK = ".lock"  # in the checkpoints folder: holds the PID of the run that writes this output folder
NO_LOCK = "PPO_DOUBLE_NO_LOCK"  # set to 1: no lock (for file systems without flock); never two runs on one folder then
_held: dict[str, int] = {}  # lock file -> open descriptor, for the runs of this process


def _lock_everywhere(work: str, final: str, state) -> None:
    """`lock_folder` on the main process; the other processes of a multi-process run raise its refusal too."""
    refusal = None
    if state.is_main_process:
        try:
            lock_folder(work, final)
        except UsageError as err:
            refusal = str(err)
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        refusal = broadcast_object_list([refusal])[0]
    if refusal:
        raise UsageError(refusal)


def lock_folder(work: str, final: str) -> None:
    """Hold an exclusive lock on `work` (the checkpoints folder of output folder `final`) until the process ends.

    A second run on the same output folder would interleave its checkpoints with the first's and rename its final
    folder over the other's: it is refused in one line naming the other process. The kernel releases the flock when
    its process dies, however it dies; the PID written in the file then tells a killed run's lock (PID left, lock
    free: taken over, with a warning) from a finished one's (emptied on release). A file system that cannot lock
    (some NFS or Lustre mounts) is refused in one line too, unless PPO_DOUBLE_NO_LOCK=1 turns the guard off.
    """
    if os.environ.get(NO_LOCK, "").strip().lower() not in ("", "0", "false", "no"):
        logger.warning("%s is set: no lock on %s; never start a second run on this --output_dir", NO_LOCK, final)
        os.makedirs(work, exist_ok=True)
        return
    new_folder = not os.path.isdir(work)
    os.makedirs(work, exist_ok=True)
    path = os.path.abspath(os.path.join(work, LOCK))
    _release(path)  # an earlier run in this process (a notebook, a test) is over: a process runs one stage at a time
    new_file = not os.path.exists(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):  # held by another open file: another run
            raise UsageError(
                f"another run (process {other}) is writing to {final}: wait for it to end, or pass another --output_dir"
            ) from None
        if new_file:  # leave no trace: an empty checkpoints folder would read as an unfinished run
            os.unlink(path)
            if new_folder:
                os.rmdir(work)
        unsupported = err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
        problem = "does not support file locks" if unsupported else "refused a file lock"
        raise UsageError(
            f"the file system of {work} {problem} (flock: {err.strerror}): put --output_dir on a local or "
            f"lock-capable file system, or set {NO_LOCK}=1 to run without the one-run-per-folder guard (then never "
            "start two runs on the same --output_dir)"
        ) from None
    left = os.pread(fd, 32, 0).decode(errors="replace").strip()
    if left:
        logger.warning("taking over %s, left by process %s, which ended without releasing it", path, left)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[path] = fd


def _release(path: str) -> None:
    fd = _held.pop(path, None)
    if fd is not None:
        os.ftruncate(fd, 0)  # an empty lock file: the run ended normally
        os.close(fd)  # releases the flock


@atexit.register
def _release_all() -> None:
    for path in list(_held):
        _release(path)


@contextmanager
def final_folder(trainer, run: StageRun):
    """Write the final folder through the trainer (save_model, save_state, push_to_hub) and move it into place.

    Inside the block the trainer's `output_dir` is a staging folder next to the checkpoints; on success, the main
    process renames it to `run.output_dir` (a previous final folder is replaced only after the new one is complete).
    """
    args = trainer.args
    staging = os.path.join(run.checkpoints_dir, "final.partial")
    if trainer.accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while saving
        os.makedirs(staging)
    trainer.accelerator.wait_for_everyone()
    args.output_dir = staging

    def drop_staging():  # gives the space back; the final folder was never touched
        if trainer.accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)

    what = f"the final folder {run.output_dir}"
    try:
        with on_full_disk(run.output_dir, what, lambda: resume_hint(run.checkpoints_dir), drop_staging):
            yield staging
            trainer.accelerator.wait_for_everyone()
            if trainer.accelerator.is_main_process:
                _replace_folder(staging, run.output_dir)
    finally:
        args.output_dir = run.checkpoints_dir


def _replace_folder(new: str, final: str) -> None:
    """Rename `new` to `final`; an existing `final` is first renamed aside, then deleted."""
    os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
    if not os.path.isdir(final):
        os.rename(new, final)
        return
    old = new + ".replaced"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(final, old)
    os.rename(new, final)
    shutil.rmtree(old)


# --- loading -----------------------------------------------------------------------------------------------------


def check_checkpoint(path: str, role: str) -> Path:
    """The folder, once it is known to hold a complete `role` ("policy" or "reward") checkpoint with safe weights.

    Raises UsageError (one line: what is wrong, and what to do) for a missing folder, a run that never finished, the
    other role's checkpoint, only pickled weights, or a truncated or corrupted model.safetensors.
    """
    role_info = ROLES[role]
    folder = Path(path)
    if not folder.exists():
        unfinished = os.path.isdir(checkpoints_dir(path))
        hint = (
            f"its run did not finish (checkpoints in {checkpoints_dir(path)}): rerun it, it resumes"
            if unfinished
            else f"train it first (`{role_info['make']}`) or check the path"
        )
        raise UsageError(f"no checkpoint folder {path!r}: {hint}")
    if not folder.is_dir():
        raise UsageError(f"{path!r} is a file, not a checkpoint folder")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except OSError:
        raise UsageError(f"{path!r} is not a checkpoint folder: it has no config.json") from None
    except ValueError:
        raise UsageError(f"{path}/config.json is corrupted (not JSON): retrain or re-download the checkpoint") from None
    model_type = config.get("model_type")
    if model_type != role_info["model_type"]:
        other = next((info["what"] for info in ROLES.values() if info["model_type"] == model_type), model_type)
        raise UsageError(
            f"{path!r} holds {other}, not {role_info['what']}: pass a {role} folder such as {role_info['example']}"
        )
    weights = folder / WEIGHTS
    if not weights.is_file():
        found = (
            "only pickled weights (pytorch_model.bin), which ppo_double never loads"
            if (folder / "pytorch_model.bin").exists()
            else f"no {WEIGHTS}"
        )
        raise UsageError(f"{path!r} has {found}: retrain it, or convert it to safetensors")
    if problem := safetensors_error(weights):
        raise UsageError(f"{weights} is truncated or corrupted ({problem}): rerun the stage that wrote it")
    return folder


def check_generation_fits(policy_path: str, new_tokens: int, setting: str) -> None:
    """UsageError when the longest prompt plus `new_tokens` generated tokens runs past the policy's position
    embeddings (`n_positions` in its config.json): a policy that never stopped would then crash mid-run, and one that
    stops trains to the end on settings it could not honour. Call after check_checkpoint."""
    from .task import PREFIXES, make_prompt

    positions = json.loads((Path(policy_path) / "config.json").read_text(encoding="utf-8")).get("n_positions")
    prompt = len(make_prompt(9999, len(PREFIXES) - 1))  # one token per character; every prompt has this length
    if positions is not None and new_tokens is not None and prompt + new_tokens > positions:
        raise UsageError(
            f"{setting}={new_tokens} with a {prompt}-token prompt runs past the policy's {positions} positions "
            f"(n_positions in {policy_path}/config.json): use at most {positions - prompt} (6 holds an answer and E)"
        )


def load_policy(path: str):
    """(GPT-2 policy, tokenizer) from a checkpoint folder, after `check_checkpoint`."""
    from transformers import AutoModelForCausalLM

    from .modeling import load_tokenizer

    folder = check_checkpoint(path, "policy")
    try:
        return AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True), load_tokenizer(str(folder))
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot load the policy in {path!r}: {first_line(err)}") from None
