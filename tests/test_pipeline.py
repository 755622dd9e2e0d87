"""ppo_double/pipeline.py: the stages' commands, their order (SFT and reward side by side, then the rest), the thread
split, and the first failure ending the pipeline. Stand-in commands (a few lines of python), no training."""

import sys
import time
from pathlib import Path

from ppo_double import pipeline, summary


def stand_in(tmp_path: Path, name: str, code: int = 0, seconds: float = 0.3) -> list[str]:
    """A command that records when it started and ended, and its OMP_NUM_THREADS, then exits with `code`."""
    done = str(tmp_path / f"{name}.done")
    script = (
        f"import os, sys, time; start = time.time(); time.sleep({seconds!r}); "
        f"open({done!r}, 'w').write(f'{{start}} {{time.time()}} {{os.environ.get(\"OMP_NUM_THREADS\")}}'); "
        f"print('last line of {name}'); sys.exit({code})"
    )
    return [sys.executable, "-c", script]


def span(tmp_path: Path, name: str) -> tuple[float, float, str]:
    start, end, threads = (tmp_path / f"{name}.done").read_text().split()
    return float(start), float(end), threads


def test_sft_and_reward_run_side_by_side_on_half_the_cores_then_rl_then_eval(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "half_cores", lambda: 3)
    commands = {stage: stand_in(tmp_path, stage) for stage in pipeline.STAGES}
    done = pipeline.run(commands, {stage: tmp_path / f"{stage}.log" for stage in pipeline.STAGES})
    assert list(done) == ["sft", "reward", "rl", "eval"] and all(r["returncode"] == 0 for r in done.values())
    (sft_start, sft_end, sft_threads), (reward_start, reward_end, reward_threads) = (
        span(tmp_path, s) for s in ("sft", "reward")
    )
    assert reward_start < sft_end and sft_start < reward_end  # at once
    assert (sft_threads, reward_threads) == ("3", "3")
    rl_start, rl_end, _ = span(tmp_path, "rl")
    assert rl_start >= max(sft_end, reward_end) and span(tmp_path, "eval")[0] >= rl_end
    assert done["rl"]["wall_s"] >= 0.3 and done["rl"]["peak_rss_gib"] > 0


def test_a_failed_stage_ends_the_pipeline_with_its_log_tail(tmp_path):
    commands = {stage: stand_in(tmp_path, stage, code=3 if stage == "reward" else 0) for stage in pipeline.STAGES}
    said = []
    done = pipeline.run(commands, {stage: tmp_path / f"{stage}.log" for stage in pipeline.STAGES}, say=said.append)
    assert set(done) == {"sft", "reward"} and done["reward"]["returncode"] == 3
    assert not (tmp_path / "rl.done").exists()
    (line,) = said
    assert line.startswith("error: the reward stage failed (exit 3)") and "last line of reward" in line


def test_skipped_stages_do_not_run_and_threads_apply_to_every_stage(tmp_path):
    commands = {stage: stand_in(tmp_path, stage, seconds=0) for stage in pipeline.STAGES}
    done = pipeline.run(commands, {}, threads=1, skip=("sft", "reward"))
    assert list(done) == ["rl", "eval"] and not (tmp_path / "sft.done").exists()
    assert span(tmp_path, "rl")[2] == "1" and span(tmp_path, "eval")[2] == "1"


def test_stage_commands_read_and_write_the_folders_and_append_the_overrides(tmp_path):
    paths = pipeline.folders(tmp_path, "grpo")
    commands = pipeline.stage_commands(paths, seed=7, algorithm="grpo", overrides={"rl": ["--beta", "0"]})
    assert commands["sft"][-4:] == ["--data_seed", "7", "--output_dir", str(tmp_path / "sft")]
    rl = commands["rl"]
    assert "recipes/grpo.py" in rl and rl[-2:] == ["--beta", "0"] and "--data_seed" not in rl
    assert rl[rl.index("--sft_model_path") + 1] == str(tmp_path / "sft")
    assert commands["eval"][-2:] == ["--output_json", str(tmp_path / "eval.json")]
    defaults = pipeline.stage_commands(pipeline.folders(tmp_path), accelerate_config="a.yaml")
    assert "--seed" not in defaults["sft"] and defaults["rl"][2:4] == ["--config_file", "a.yaml"]


def test_pipeline_seconds_count_the_side_by_side_stages_once():
    assert summary.pipeline_seconds({"sft": 100, "reward": 80, "ppo": 150, "eval": 10}) == 260
    assert summary.pipeline_seconds({"ppo": 5}) == 5


def test_wall_times_and_the_summary_after_the_stages(tmp_path, monkeypatch, capsys):
    """`make all` (pipeline.main) writes wall_times.tsv for `ppo-double summary` and returns a failed stage's code."""
    monkeypatch.setattr(
        pipeline,
        "stage_commands",
        lambda paths, *a, **k: {s: stand_in(tmp_path, s, code=4 if s == "eval" else 0, seconds=0) for s in paths},
    )
    start = time.time()
    assert pipeline.main(["--output_dir", str(tmp_path / "out")]) == 4
    assert time.time() - start < 30
    times = (tmp_path / "out" / "wall_times.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in times] == ["sft", "reward", "ppo", "eval"]
    out = capsys.readouterr().out
    assert "==> sft, and reward alongside it" in out and "==> ppo" in out and "==> summary" not in out


def test_pinned_threads_pin_the_rl_stages_judge_too(tmp_path):
    """Unpinned, the RL stage's judge takes the process's share of the cores; pinned threads (`bench --jobs 2`: one
    each) pin it too, or two runs side by side would judge on more threads than there are cores."""
    commands = pipeline.stage_commands(pipeline.folders(tmp_path))
    assert pipeline.pinned(commands, "rl", 1)[-2:] == ["--judge_threads", "1"]
    assert pipeline.pinned(commands, "rl", None) == commands["rl"]
    assert pipeline.pinned(commands, "sft", 1) == commands["sft"]
