"""One run per output folder (ppo_double.checkpoints.lock_folder): a real second holder is refused as another run; a
file system without flock (some NFS or Lustre mounts, simulated here) is refused as such, leaving nothing behind;
PPO_DOUBLE_NO_LOCK=1 runs without the lock."""

import errno
import fcntl
import os
from pathlib import Path

import pytest

from conftest import TINY_SFT, load_recipe
from ppo_double import checkpoints
from ppo_double.checkpoints import LOCK, NO_LOCK, checkpoints_dir, lock_folder
from ppo_double.errors import UsageError, run

FIX = (
    f"put --output_dir on a local or lock-capable file system, or set {NO_LOCK}=1 to run without the "
    "one-run-per-folder guard (then never start two runs on the same --output_dir)"
)


def no_flock(monkeypatch, code=errno.ENOLCK):
    """flock fails as on a file system without lock support."""

    def refuse(fd, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(checkpoints.fcntl, "flock", refuse)


def files(folder) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in Path(folder).rglob("*"))


def test_a_lock_held_elsewhere_is_another_run(tmp_path):
    work = tmp_path / "out-checkpoints"
    work.mkdir()
    fd = os.open(work / LOCK, os.O_RDWR | os.O_CREAT)  # another open file: flock conflicts, even in this process
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242\n")
        with pytest.raises(UsageError, match=r"^another run \(process 4242\) is writing to "):
            lock_folder(str(work), str(tmp_path / "out"))
    finally:
        os.close(fd)


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def test_a_file_system_without_flock_is_named_and_left_untouched(tmp_path, monkeypatch, code):
    no_flock(monkeypatch, code)
    work = tmp_path / "out-checkpoints"
    with pytest.raises(UsageError) as error:
        lock_folder(str(work), str(tmp_path / "out"))
    assert str(error.value) == (
        f"the file system of {work} does not support file locks (flock: {os.strerror(code)}): {FIX}"
    )
    assert files(tmp_path) == [], "a refused run left files behind"


def test_an_old_checkpoints_folder_is_left_as_it_was(tmp_path, monkeypatch):
    no_flock(monkeypatch)
    work = tmp_path / "out-checkpoints"
    (work / "checkpoint-10").mkdir(parents=True)
    (work / "checkpoint-10" / "trainer_state.json").write_text("{}")
    with pytest.raises(UsageError, match="does not support file locks"):
        lock_folder(str(work), str(tmp_path / "out"))
    state = "out-checkpoints/checkpoint-10/trainer_state.json"
    assert files(tmp_path) == ["out-checkpoints", "out-checkpoints/checkpoint-10", state]


def test_the_recipe_says_it_in_one_line(tmp_path, monkeypatch, capsys):
    no_flock(monkeypatch)
    out = tmp_path / "sft"
    with pytest.raises(SystemExit) as exit_info:
        run(load_recipe("sft").main, [*TINY_SFT, "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"error: the file system of {checkpoints_dir(out)} does not support file locks "
        f"(flock: {os.strerror(errno.ENOLCK)}): {FIX}"
    )
    assert files(tmp_path) == []


def test_no_lock_opt_out_runs_with_one_warning(tmp_path, monkeypatch, caplog):
    no_flock(monkeypatch)
    monkeypatch.setenv(NO_LOCK, "1")
    out = tmp_path / "sft"
    load_recipe("sft").main([*TINY_SFT, "--output_dir", str(out)])
    assert (out / "model.safetensors").is_file()
    warnings = [r.getMessage() for r in caplog.records if NO_LOCK in r.getMessage()]
    assert warnings == [f"{NO_LOCK} is set: no lock on {out}; never start a second run on this --output_dir"]
    assert not (Path(checkpoints_dir(out)) / LOCK).exists()


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_no_lock_off_values_keep_the_lock(tmp_path, monkeypatch, value):
    monkeypatch.setenv(NO_LOCK, value)
    work = tmp_path / "out-checkpoints"
    lock_folder(str(work), str(tmp_path / "out"))
    assert (work / LOCK).read_text() == f"{os.getpid()}\n"
    checkpoints._release(str(work / LOCK))
