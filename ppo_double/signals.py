"""Stop a training stage cleanly on SIGTERM (a cluster scheduler's notice before a preemption) or SIGINT (Ctrl-C).

Every trainer the recipes build trains through `train(trainer, checkpoint)`. While it trains, SIGTERM and SIGINT only
set a flag; at the next step end the callback asks the trainer to save a checkpoint and stop
(`control.should_save`, `control.should_training_stop`: transformers' Trainer, TRL's GRPO and RLOO loops and
ppo_double.ppo.PPOTrainer honour both). Once the checkpoint is written, `train` raises `Stopped`: `errors.run` prints
one line and exits 143 (SIGTERM) or 130 (SIGINT), without evaluating or writing the final folder. Rerunning the same
command resumes from that checkpoint, as after any crash.

A full disk while a checkpoint is written becomes `DiskFull` (one `error:` line, exit code 4), and the half-written
checkpoint is deleted: the previous complete one is what a rerun resumes from.
"""

import os
import shutil
import signal
import threading
import time

import torch
from accelerate import PartialState
from transformers import TrainerCallback

from .checkpoints import is_complete, last_complete_checkpoint, resume_hint
from .errors import Stopped, on_full_disk

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignal(TrainerCallback):
    """Save and stop at the next step end after SIGTERM or SIGINT (see the module docstring).

    The stop waits for the next step at which the trainer logs (every `logging_steps`) when that comes within
    `GRACE_SECONDS` at the pace of the last step: transformers and TRL average the loss and metrics over the steps since
    the last log and do not checkpoint that running sum, so a stop between logs makes the resumed run log one more
    entry (the partial average, at the stop) than an uninterrupted run; its weights are the same either way. A
    scheduler's notice leaves ~30 s: a farther log is not waited for. `every_step` (PPO, whose loop logs every update)
    stops at the very next step. The processes of a multi-process run agree after every step.
    """

    GRACE_SECONDS = 10.0

    def __init__(self, every_step: bool = False):
        self.every_step = every_step
        self.received = 0  # the signal's number, once one came
        self.last_step_end = None

    def handle(self, signum, frame):
        if self.received:
            # os.write, not print: a handler that prints while the interrupted code prints breaks the stream
            os.write(2, f"{signal.Signals(signum).name}: still saving the checkpoint, then stopping\n".encode())
            return
        self.received = signum

    def on_step_end(self, args, state, control, **kwargs):
        now, last, self.last_step_end = time.perf_counter(), self.last_step_end, time.perf_counter()
        self.received = _agreed(self.received)
        if not self.received:
            return
        every = 1 if self.every_step or not state.logging_steps else state.logging_steps
        to_log = -state.global_step % every
        if to_log and state.global_step < state.max_steps:
            wait = to_log * (now - last) if last is not None else 0.0  # seconds to the next log at this pace
            if _agreed(wait) <= self.GRACE_SECONDS:
                return
            control.should_log = True  # the partial average, so that no step's loss goes unlogged
        control.should_save = True
        control.should_training_stop = True


def _agreed(value: float) -> float:
    """The highest `value` of all processes (a received signal's number, a wait): every process must stop at the same
    step, or the others would wait forever for the one that stopped."""
    state = PartialState()
    if state.num_processes == 1:
        return value
    flag = torch.tensor(value, dtype=torch.float64, device=state.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return type(value)(flag.item())


def train(trainer, resume_from_checkpoint: str | None = None) -> None:
    """`trainer.train(resume_from_checkpoint)`, stopped cleanly by SIGTERM or SIGINT (raises `Stopped` once the
    checkpoint is saved) and by a full disk (raises `DiskFull`). The previous signal handlers are back on return."""
    callback = StopOnSignal(every_step=getattr(trainer, "logs_every_step", False))
    trainer.add_callback(callback)
    previous = {}
    if threading.current_thread() is threading.main_thread():  # Python runs signal handlers in the main thread only
        previous = {signum: signal.signal(signum, callback.handle) for signum in SIGNALS}
    folder = trainer.args.output_dir
    try:
        with on_full_disk(folder, f"a checkpoint in {folder}", lambda: resume_hint(folder), _drop_unfinished(trainer)):
            trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        trainer.remove_callback(callback)
    if callback.received:
        trainer.accelerator.wait_for_everyone()  # the main process may still be writing the checkpoint
        step = trainer.state.global_step
        saved = os.path.join(folder, f"checkpoint-{step}")
        where = (
            f"checkpoint saved in {saved}"
            if is_complete(saved)
            else f"latest checkpoint {last_complete_checkpoint(folder) or 'none'}"
        )
        name = signal.Signals(callback.received).name
        raise Stopped(f"stopped by {name} at step {step}: {where}; rerun the same command to resume", callback.received)


def _drop_unfinished(trainer):
    """Delete the checkpoint the trainer was writing when the disk filled (never complete, it is skipped on resume
    anyway): the space it holds is given back before the user is told how much is free."""

    def drop():
        path = os.path.join(trainer.args.output_dir, f"checkpoint-{trainer.state.global_step}")
        if PartialState().is_main_process and os.path.isdir(path) and not is_complete(path):
            shutil.rmtree(path, ignore_errors=True)

    return drop
