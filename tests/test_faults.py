"""Faults a long run meets: SIGTERM and Ctrl-C, a second run on the same folder, a full disk, a broken checkpoint.

Each ends in one line and leaves what a rerun of the same command resumes from; the resumed run ends bit-identical to
an uninterrupted one (test_resume's comparison). Most runs are in-process (no import time): the signal comes from the
stage's own StopOnSignal callback, sent to this very process between two steps, as a scheduler's would come.
"""

import errno
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_resume import STAGE_ARGS, assert_same_run, run, stage_args

from conftest import ROOT, load_recipe, weights
from ppo_double import signals
from ppo_double.checkpoints import LOCK, checkpoints_dir, is_complete, last_complete_checkpoint, lock_folder
from ppo_double.errors import DISK_FULL_EXIT, is_disk_full
from ppo_double.errors import run as run_main

# test_resume's tiny runs, with SFT saving every 20 steps but logging every 5: a stop by a signal then saves at a
# step of its own (10, 25), two checkpoints kept to fall back on; and RLOO as GRPO.
FAULT_ARGS = {
    **STAGE_ARGS,
    "sft": [*STAGE_ARGS["sft"], "--save_steps", "20", "--save_total_limit", "2"],
    "rloo": STAGE_ARGS["grpo"],
}


def args_for(stage, out, tiny_sft, tiny_reward) -> list[str]:
    args = stage_args("grpo" if stage == "rloo" else stage, out, tiny_sft, tiny_reward)
    if stage == "sft":
        args += FAULT_ARGS["sft"][len(STAGE_ARGS["sft"]) :]
    return args


@pytest.fixture
def uninterrupted(reference, tiny_sft, tiny_reward, tmp_path):
    """uninterrupted(stage): the folder of an uninterrupted run of `stage` on args_for (shared with test_resume)."""
    return lambda stage: reference(stage, args_for(stage, tmp_path / "unused", tiny_sft, tiny_reward))


def send_at(monkeypatch, signum, step, trainer_index=0):
    """The stage's `trainer_index`-th trainer sends this process `signum` at the end of `step`, after its own stop
    check: the stop comes at a later step, as for a signal that lands mid-step."""
    count = itertools.count()

    class Sender(signals.StopOnSignal):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.index = next(count)

        def on_step_end(self, args, state, control, **kwargs):
            super().on_step_end(args, state, control, **kwargs)
            if self.index == trainer_index and state.global_step == step:
                os.kill(os.getpid(), signum)

    monkeypatch.setattr(signals, "StopOnSignal", Sender)


def exits(main, args) -> int:
    """The exit code of `main(args)` run as the recipes' __main__ runs it (errors.run)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, args)
    return exit_info.value.code


def one_line(stderr: str, start: str) -> str:
    """The one line of `stderr` that starts with `start` (and no traceback anywhere)."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith(start)]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


# --- SIGTERM and Ctrl-C -------------------------------------------------------------------------------------------

# (stage, the trainer that gets the signal, the step it comes after, the step it stops at, the checkpoint). SFT, the
# reward classifier and GRPO stop at their next logged step (every 5, 5 and 2), PPO after the next update. The reward
# stage is stopped in its last phase here; in phase 2 by the next test.
SIGTERM_CASES = [
    ("sft", 0, 7, 10, "checkpoint-10"),
    ("reward", 2, 12, 15, "checkpoint-15"),
    ("ppo", 0, 2, 3, "checkpoint-3"),
    ("grpo", 0, 3, 4, "checkpoint-4"),
    ("rloo", 0, 3, 4, "checkpoint-4"),
]


@pytest.mark.parametrize("stage, trainer_index, sent_at, stopped_at, saved", SIGTERM_CASES)
def test_sigterm_saves_and_the_rerun_ends_as_an_uninterrupted_run(
    stage, trainer_index, sent_at, stopped_at, saved, uninterrupted, tiny_sft, tiny_reward, tmp_path, monkeypatch, capfd
):
    out = tmp_path / "out"
    args = args_for(stage, out, tiny_sft, tiny_reward)
    handlers = {signum: signal.getsignal(signum) for signum in signals.SIGNALS}
    send_at(monkeypatch, signal.SIGTERM, sent_at, trainer_index)
    assert exits(load_recipe(stage).main, args) == 143
    checkpoint = f"{checkpoints_dir(out)}/{saved}"
    line = one_line(capfd.readouterr().err, "stopped by")
    resume = "rerun the same command to resume"
    assert line == f"stopped by SIGTERM at step {stopped_at}: checkpoint saved in {checkpoint}; {resume}"
    assert is_complete(checkpoint) and not out.exists(), "a stopped run must leave a checkpoint and no final folder"
    assert {signum: signal.getsignal(signum) for signum in signals.SIGNALS} == handlers

    monkeypatch.undo()
    load_recipe(stage).main(args)
    expected = uninterrupted(stage)
    if stage == "reward":  # phase 2's probe numbers are measured as it trains: a run resumed in phase 3 has none
        expected = Path(shutil.copytree(expected, tmp_path / "expected"))  # the shared reference stays as it ran
        for folder in (expected, out):
            results = json.loads((folder / "eval_results.json").read_text())
            results.pop("detect/heldout_accuracy", None), results.pop("detect/learned_at_step", None)
            (folder / "eval_results.json").write_text(json.dumps(results))
    assert_same_run(expected, out)


def test_a_far_logging_step_is_not_waited_for(uninterrupted, tiny_sft, tiny_reward, tmp_path, monkeypatch):
    """When the next logging step is further away than the grace (here: any), the run stops after the very next step
    and logs the partial average there; it resumes to the same weights and judge numbers, and every later step's loss
    is logged as in the uninterrupted run."""
    out = tmp_path / "out"
    args = args_for("sft", out, tiny_sft, tiny_reward)
    monkeypatch.setattr(signals.StopOnSignal, "GRACE_SECONDS", 0.0)
    send_at(monkeypatch, signal.SIGTERM, 7)
    with pytest.raises(signals.Stopped, match=r"at step 8: checkpoint saved in .*/checkpoint-8;"):
        load_recipe("sft").main(args)
    monkeypatch.undo()
    load_recipe("sft").main(args)
    a, b = weights(uninterrupted("sft")), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    logged = [json.loads((f / "trainer_state.json").read_text())["log_history"] for f in (uninterrupted("sft"), out)]
    losses = [{e["step"]: e["loss"] for e in history if "loss" in e} for history in logged]
    assert sorted(losses[1]) == [5, 8, 10, 15, 20, 25, 30, 35, 40]  # step 8: the partial average at the stop
    assert {step: loss for step, loss in losses[1].items() if step > 10} == {
        step: loss for step, loss in losses[0].items() if step > 10
    }


def test_the_reward_stage_stops_inside_its_phase_and_the_rerun_resumes_that_phase(
    tiny_sft, tiny_reward, tmp_path, monkeypatch, caplog
):
    """Phase 2 (detect) of 3. Its resumed run is not compared with an uninterrupted one: phases 1 and 2 corrupt
    answers with the global RNG inside the collator, which accelerate's dataloader calls one batch ahead, so a
    checkpoint's RNG state is one batch past its step (a kill -9 mid-phase resumes the same way)."""
    out = tmp_path / "out"
    args = args_for("reward", out, tiny_sft, tiny_reward)
    send_at(monkeypatch, signal.SIGTERM, 3, trainer_index=1)
    with pytest.raises(signals.Stopped, match=r"at step 5: checkpoint saved in .*/detect/checkpoint-5;"):
        load_recipe("reward").main(args)
    work = Path(checkpoints_dir(out))
    assert is_complete(work / "detect" / "checkpoint-5") and last_complete_checkpoint(work) is None  # no phase 3

    monkeypatch.undo()
    caplog.clear()
    load_recipe("reward").main(args)
    assert f"resuming from {work}/detect/checkpoint-5" in caplog.text
    assert json.loads((work / "detect" / "checkpoint-10" / "trainer_state.json").read_text())["global_step"] == 10
    assert (out / "model.safetensors").is_file()


def test_ctrl_c_exits_130_and_the_rerun_resumes(uninterrupted, tiny_sft, tiny_reward, tmp_path):
    """A real Ctrl-C from outside, in its own process, once the first checkpoint (step 20) is written."""
    out = tmp_path / "out"
    args = args_for("sft", out, tiny_sft, tiny_reward)
    code, log = run("sft", args, kill_at=1, log=tmp_path / "stopped.log", sig=signal.SIGINT)
    assert code == 130, log[-3000:]
    line = one_line(log, "stopped by")
    assert line.startswith("stopped by SIGINT at step 25: checkpoint saved in ") and "KeyboardInterrupt" not in log
    assert is_complete(f"{checkpoints_dir(out)}/checkpoint-25") and not out.exists()
    load_recipe("sft").main(args)
    assert_same_run(uninterrupted("sft"), out)


def test_a_second_signal_while_saving_leaves_a_complete_checkpoint(tiny_sft, tiny_reward, tmp_path, monkeypatch, capfd):
    from transformers import Trainer

    save = Trainer._save_checkpoint

    def interrupted_save(self, model, trial):
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal, while the stop's checkpoint is written
        save(self, model, trial)

    out = tmp_path / "out"
    send_at(monkeypatch, signal.SIGTERM, 7)
    monkeypatch.setattr(Trainer, "_save_checkpoint", interrupted_save)
    with pytest.raises(signals.Stopped):
        load_recipe("sft").main(args_for("sft", out, tiny_sft, tiny_reward))
    assert capfd.readouterr().err.count("SIGTERM: still saving the checkpoint, then stopping") == 1
    assert last_complete_checkpoint(checkpoints_dir(out)) == f"{checkpoints_dir(out)}/checkpoint-10"


# --- two runs on one output folder --------------------------------------------------------------------------------


def test_a_second_run_on_the_same_folder_is_refused(uninterrupted, tiny_sft, tiny_reward, tmp_path, capfd):
    out = tmp_path / "out"
    args = args_for("sft", out, tiny_sft, tiny_reward)
    lock = Path(checkpoints_dir(out)) / LOCK
    command = [sys.executable, str(ROOT / "recipes" / "sft.py"), *args]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while first.poll() is None and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.01)
    assert first.poll() is None, "the first run ended before the second started"
    assert exits(load_recipe("sft").main, args) == 2
    line = one_line(capfd.readouterr().err, "error:")
    fix = "wait for it to end, or pass another --output_dir"
    assert line == f"error: another run (process {first.pid}) is writing to {out}: {fix}"
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    assert_same_run(uninterrupted("sft"), out)
    assert lock.read_text() == "", "a finished run leaves no PID in the lock"


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    work = tmp_path / "out-checkpoints"
    work.mkdir()
    (work / LOCK).write_text(dead.stdout)
    lock_folder(str(work), str(tmp_path / "out"))
    assert f"left by process {dead.stdout.strip()}, which ended" in caplog.text
    assert (work / LOCK).read_text() == f"{os.getpid()}\n"


# --- a full disk --------------------------------------------------------------------------------------------------


def fill_disk_at(monkeypatch, marker: str):
    """torch.save fails as on a full disk for any path containing `marker`, after writing a few bytes."""
    save = torch.save

    def full(obj, path, *args, **kwargs):
        if marker in str(path):
            Path(path).write_bytes(b"PK\x03")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full)


@pytest.mark.parametrize("marker, intact", [("checkpoint-40", "checkpoint-20"), ("final.partial", "checkpoint-40")])
def test_a_full_disk_keeps_the_last_checkpoint_and_the_rerun_resumes(
    marker, intact, uninterrupted, tiny_sft, tiny_reward, tmp_path, monkeypatch, capfd
):
    out = tmp_path / "out"
    args = args_for("sft", out, tiny_sft, tiny_reward)
    fill_disk_at(monkeypatch, marker)
    assert exits(load_recipe("sft").main, args) == DISK_FULL_EXIT
    work = checkpoints_dir(out)
    line = one_line(capfd.readouterr().err, "error:")
    assert line.endswith(
        f"free some space and rerun the same command; it resumes from {work}/{intact}, which is intact"
    )
    what = f"a checkpoint in {work}" if marker.startswith("checkpoint") else f"the final folder {out}"
    assert line.startswith(f"error: the disk is full: could not write {what} (")
    assert last_complete_checkpoint(work) == f"{work}/{intact}"
    assert not out.exists() and not os.path.exists(f"{work}/final.partial"), "no final folder, whole or half"
    assert not os.path.exists(f"{work}/checkpoint-40") or marker == "final.partial", "the half-written one is deleted"

    monkeypatch.undo()
    load_recipe("sft").main(args)
    assert_same_run(uninterrupted("sft"), out)


def test_a_disk_full_error_is_recognised(tmp_path, monkeypatch):
    """Python says ENOSPC, safetensors "os error 28"; torch.save's zip writer only a position, on a disk with nothing
    left (its error on a full tmpfs, verbatim)."""
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"), str(tmp_path))
    assert is_disk_full(Exception("Error while serializing: I/O error: No space left on device (os error 28)"), "x")
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"), str(tmp_path))
    assert not is_disk_full(torch_error, str(tmp_path))  # this disk has room: another fault
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    assert is_disk_full(torch_error, str(tmp_path / "not" / "yet"))


# --- a broken checkpoint ------------------------------------------------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous(
    uninterrupted, tiny_sft, tiny_reward, tmp_path, monkeypatch, caplog
):
    out = tmp_path / "out"
    args = args_for("sft", out, tiny_sft, tiny_reward)
    send_at(monkeypatch, signal.SIGTERM, 22)  # stops at 25: checkpoints 20 and 25
    with pytest.raises(signals.Stopped):
        load_recipe("sft").main(args)
    work = Path(checkpoints_dir(out))
    truncate(work / "checkpoint-25" / "model.safetensors")
    assert last_complete_checkpoint(work) == str(work / "checkpoint-20")

    monkeypatch.undo()
    caplog.clear()
    load_recipe("sft").main(args)
    assert f"skipping {work}/checkpoint-25 (broken: model.safetensors is truncated or corrupted)" in caplog.text
    assert f"resuming from {work}/checkpoint-20" in caplog.text
    assert_same_run(uninterrupted("sft"), out)


@pytest.mark.parametrize("damage", ["truncated weights", "no optimizer state"])
def test_a_broken_only_checkpoint_is_refused(damage, tiny_sft, tiny_reward, tmp_path, monkeypatch, capfd):
    out = tmp_path / "out"
    args = args_for("sft", out, tiny_sft, tiny_reward)
    send_at(monkeypatch, signal.SIGTERM, 7)  # stops at 10: the only checkpoint
    with pytest.raises(signals.Stopped):
        load_recipe("sft").main(args)
    checkpoint = Path(checkpoints_dir(out)) / "checkpoint-10"
    if damage == "truncated weights":
        truncate(checkpoint / "model.safetensors")
    else:
        (checkpoint / "optimizer.pt").unlink()
    problem = "model.safetensors is truncated or corrupted" if damage == "truncated weights" else "no optimizer.pt"

    monkeypatch.undo()
    capfd.readouterr()
    assert exits(load_recipe("sft").main, args) == 2
    line = one_line(capfd.readouterr().err, "error:")
    assert line == (
        f"error: {checkpoint} is broken: {problem} and there is no earlier complete checkpoint in "
        f"{checkpoint.parent}: pass --resume_from_checkpoint false to start over (it deletes {checkpoint.parent})"
    )
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 10  # untouched
