"""bench/bench.py: README markers, the pipeline table and its medians, reading the PPO run's files, the stage order."""

import json
import sys

import pytest

from conftest import ROOT, load_script
from ppo_double.task import PREFIXES

bench = load_script("bench/bench.py")


def stage(wall: float, rss: float, returncode: int = 0) -> dict:
    return {"command": ["x"], "log": "x.log", "returncode": returncode, "wall_s": wall, "peak_rss_gib": rss}


def seed_result(seed: int, stages: dict, **outcome) -> dict:
    base = {"failed_stage": None, "total_s": None, "ppo_episodes": None, "ppo_episodes_per_s": None}
    base.update(dict.fromkeys(bench.JUDGED), target_met=None, time_to_target_s=None)
    return {"seed": seed, "run_dir": f"/tmp/seed{seed}", "stages": stages, **base, **outcome}


@pytest.fixture
def results():
    """Two complete seeds (one meets the target, one not) and one whose PPO stage failed."""
    full = {name: stage(10.0 * (i + 1), 0.5 + i / 10) for i, name in enumerate(bench.STAGES)}
    met = seed_result(
        42,
        full,
        total_s=100.0,
        ppo_episodes=4096,
        ppo_episodes_per_s=20,
        greedy_exact_match=dict.fromkeys(PREFIXES, 1.0),
        sampled_exact_match=dict.fromkeys(PREFIXES, 0.99),
        sampled_correct=0.99,
        sft_sampled_correct=0.98,
        min_greedy_correct=0.995,
        prefix_onset_episode=2048,
        target_met=True,
        time_to_target_s=60.0,
        reward_invalid=0.9993,
    )
    slower = {**full, "ppo": stage(50.0, 0.9)}
    not_met = seed_result(
        43,
        slower,
        total_s=120.0,
        ppo_episodes=8192,
        ppo_episodes_per_s=30,
        greedy_exact_match={PREFIXES[0]: 1.0, PREFIXES[1]: 0.99, PREFIXES[2]: 0.998},
        sampled_exact_match={PREFIXES[0]: 0.97, PREFIXES[1]: 0.95, PREFIXES[2]: 0.99},
        sampled_correct=0.97,
        sft_sampled_correct=0.98,
        min_greedy_correct=0.9,
        prefix_onset_episode=None,
        target_met=False,
        reward_invalid=0.745,
    )
    failed = seed_result(44, {"sft": stage(12.0, 0.6), "reward": stage(22.0, 0.7), "ppo": stage(5.0, 0.4, 1)})
    failed["failed_stage"] = "ppo"
    return [met, not_met, failed]


def test_replace_between_markers_keeps_the_rest():
    text = f"# Title\n\nintro\n{bench.README_START}\nold table\nmore old\n{bench.README_END}\n\nafter\n"
    new = bench.replace_between_markers(text, "| a |\n|---|\n")
    assert new == f"# Title\n\nintro\n{bench.README_START}\n\n| a |\n|---|\n\n{bench.README_END}\n\nafter\n"
    assert bench.replace_between_markers(new, "| a |\n|---|\n") == new  # idempotent


def test_replace_between_empty_markers():
    text = f"a\n{bench.README_START}\n{bench.README_END}\nb"
    assert bench.replace_between_markers(text, "x") == f"a\n{bench.README_START}\n\nx\n\n{bench.README_END}\nb"


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all\n",
        f"{bench.README_START}\nonly the start\n",
        f"{bench.README_END}\n{bench.README_START}\n",
        f"{bench.README_START}\n{bench.README_END}\n{bench.README_START}\n{bench.README_END}\n",
    ],
)
def test_replace_between_markers_errors_without_markers(text):
    with pytest.raises(ValueError, match="bench:start"):
        bench.replace_between_markers(text, "x")


def test_update_readme_and_check_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{bench.README_START}\n{bench.README_END}\nbottom\n", encoding="utf-8")
    bench.check_readme(readme)
    bench.update_readme(readme, "table")
    assert readme.read_text(encoding="utf-8") == f"top\n{bench.README_START}\n\ntable\n\n{bench.README_END}\nbottom\n"
    readme.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="README.md"):
        bench.check_readme(readme)


def test_pipeline_table_rows_and_median(results):
    host = {"cpu_count": 2, "torch_threads": 2, "torch": "2.x", "platform": "Linux"}
    table = bench.pipeline_table(results, {"sft": ["--max_steps", "30"], "ppo": []}, host)
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| seed"))
    assert f"greedy exact {' / '.join(PREFIXES)}" in header
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| 4") or line.startswith("| median")}
    assert f"sampled exact {' / '.join(PREFIXES)}" in header and "lowest greedy correct during PPO" in header
    assert rows["| 42"] == (
        "| 42 | 10.0 | 20.0 | 30.0 | 40.0 | 100.0 | 4096 | 2048 | 20 | 100.0% / 100.0% / 100.0% "
        "| 99.0% / 99.0% / 99.0% | 98.0% → 99.0% | 99.5% | yes | 60.0 | 0.50 / 0.60 / 0.70 / 0.80 | 99.93% |"
    )
    assert rows["| 43"] == (
        "| 43 | 10.0 | 20.0 | 50.0 | 40.0 | 120.0 | 8192 | — | 30 | 100.0% / 99.0% / 99.8% | 97.0% / 95.0% / 99.0% "
        "| 98.0% → 97.0% | 90.0% | no | — | 0.50 / 0.60 / 0.90 / 0.80 | 74.50% |"
    )
    assert rows["| 44"] == (
        "| 44 | 12.0 | 22.0 | failed (5.0) | — | — | — | — | — | — | — | — → — | — | failed: ppo | — "
        "| 0.60 / 0.70 / failed (0.40) / — | — |"
    )
    # Medians over the seeds that have the number: the failed stage and the stages not run count for nothing; the
    # lowest correct share is the lowest of any seed.
    assert rows["| median"] == (
        "| median | 10.0 | 20.0 | 40.0 | 40.0 | 110.0 | 6144 | 2048 | 25 | 100.0% / 99.5% / 99.9% "
        "| 98.0% / 97.0% / 99.0% | 98.0% → 98.0% | 90.0% | 1/3 | 60.0 | 0.50 / 0.60 / 0.80 / 0.80 | 87.22% |"
    )
    # 1 of 3: Wilson's 95 % interval is 6.1-79.2 %
    assert "**Every target met on 1 of 3 seeds (95 % Wilson interval 6–79 %)**." in lines
    assert "extra args: sft `--max_steps 30`" in lines[0]
    assert lines[-1] == "Machine: 2 CPU cores (os.cpu_count()), torch 2.x with 2 threads, Linux."


def test_median_summary(results):
    summary = bench.median_summary(results)
    assert summary["wall_s"] == {"sft": 10.0, "reward": 20.0, "ppo": 40.0, "eval": 40.0}
    assert summary["seeds_target_met"] == 1 and summary["seeds"] == 3
    assert summary["time_to_target_s"] == 60.0


def write_run_dir(
    path, history, greedy, sampled=None, correct=1.0, sft_correct=0.98, judged=(0.99, 0.98), eval_correct=None
):
    """A run folder as the pipeline leaves it: ppo/{trainer_state,eval_results}.json and eval.json (SFT first)."""
    (path / "ppo").mkdir(parents=True)
    (path / "ppo" / "trainer_state.json").write_text(json.dumps({"log_history": history}), encoding="utf-8")

    def rows(exact, correct):
        return {p: {"exact_match": exact[p], "correct": correct} for p in PREFIXES}

    results = {
        "greedy": rows(greedy, 1.0),
        "sampled": rows(sampled or greedy, correct),
        "judged_during_training": [{"episode": 64 * i, "eval/correct": c} for i, c in enumerate(judged, 1)],
    }
    (path / "ppo" / "eval_results.json").write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")
    sft = {
        "greedy": rows(dict.fromkeys(PREFIXES, 0.3), 1.0),
        "sampled": rows(dict.fromkeys(PREFIXES, 0.3), sft_correct),
    }
    if eval_correct is not None:  # the eval stage's own sampling of the PPO policy
        results = {**results, "sampled": rows(sampled or greedy, eval_correct)}
    evaluated = {str(path / "sft"): sft, str(path / "ppo"): results}
    (path / "eval.json").write_text(json.dumps(evaluated, ensure_ascii=False), encoding="utf-8")


HISTORY = [
    {"eps": 10, "objective/kl": 0.0, "episode": 64, "step": 1},
    {"eval/exact_match": 0.5, "step": 1},  # the judge's entries carry no episode
    {"eps": 12, "objective/kl": 0.1, "episode": 128, "step": 2},
    {"eval/exact_match": 0.9, "step": 2},
    {"train_runtime": 11.0, "step": 2},
]


def test_ppo_progress_and_judged(tmp_path):
    exact = {PREFIXES[0]: 1.0, PREFIXES[1]: 0.996, PREFIXES[2]: 0.994}
    sampled = {PREFIXES[0]: 0.99, PREFIXES[1]: 0.98, PREFIXES[2]: 0.97}
    judged = (0.99, 0.96, 1.0)
    write_run_dir(tmp_path, HISTORY, exact, sampled, correct=0.99, sft_correct=0.985, judged=judged, eval_correct=0.992)
    assert bench.ppo_progress(tmp_path / "ppo" / "trainer_state.json") == (128, 12)
    numbers = bench.judged(tmp_path / "ppo", tmp_path / "eval.json")
    assert numbers == {
        "greedy_exact_match": exact,
        "sampled_exact_match": sampled,
        "sampled_correct": pytest.approx(0.992),  # SFT and PPO as the eval stage sampled them: the same seed
        "sft_sampled_correct": pytest.approx(0.985),
        "min_greedy_correct": 0.96,
        "prefix_onset_episode": None,  # HISTORY's judgements hold no per-prefix numbers
    }
    alone = bench.judged(tmp_path / "ppo", tmp_path / "no-eval.json")  # no eval stage: the PPO recipe's own
    assert alone["sft_sampled_correct"] is None and alone["sampled_correct"] == pytest.approx(0.99)


def test_ppo_progress_without_ppo_metrics(tmp_path):
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 0}]}), encoding="utf-8")
    assert bench.ppo_progress(tmp_path / "trainer_state.json") == (None, None)


@pytest.mark.parametrize(
    "change, met",
    [
        ({}, True),
        ({"greedy": {**dict.fromkeys(PREFIXES, 1.0), PREFIXES[1]: 0.994}}, False),  # greedy below 99.5 % for one prefix
        ({"sampled": {**dict.fromkeys(PREFIXES, 0.99), PREFIXES[2]: 0.979}}, False),  # sampled below 98 % for one
        ({"correct": 0.979, "sft_correct": 0.98}, False),  # PPO's sampled answers less often right than the SFT's
        ({"judged": (0.99, 0.969, 1.0)}, False),  # greedy correct share dipped below 97 % during training
    ],
)
def test_seed_outcome_targets(tmp_path, change, met):
    settings = {"greedy": dict.fromkeys(PREFIXES, 0.995), "sampled": dict.fromkeys(PREFIXES, 0.98), **change}
    write_run_dir(tmp_path, HISTORY, **settings)
    stages = {name: stage(seconds, 0.5) for name, seconds in zip(bench.STAGES, (10.0, 12.0, 20.0, 3.0))}
    outcome = bench.seed_outcome(stages, tmp_path)
    # SFT and reward ran side by side, as in `make all`: the longer of the two counts
    assert outcome["failed_stage"] is None and outcome["total_s"] == 35.0
    assert (outcome["ppo_episodes"], outcome["ppo_episodes_per_s"]) == (128, 12)
    assert outcome["target_met"] is met
    assert outcome["time_to_target_s"] == (32.0 if met else None)


def test_prefix_onset_is_the_first_judgement_where_every_prefix_holds_90_percent():
    def judgement(episode, *shares):
        return {"episode": episode, **{f"eval/exact_match/{p}": v for p, v in zip(PREFIXES, shares)}}

    history = [judgement(0, 0.3, 0.3, 0.4), judgement(512, 0.95, 0.5, 0.99), judgement(1024, 0.9, 0.92, 0.97)]
    assert bench.prefix_onset(history) == 1024
    assert bench.prefix_onset(history[:2]) is None


def test_one_by_one_adds_every_stage(tmp_path):
    write_run_dir(tmp_path, HISTORY, dict.fromkeys(PREFIXES, 1.0), dict.fromkeys(PREFIXES, 0.99))
    stages = {name: stage(seconds, 0.5) for name, seconds in zip(bench.STAGES, (10.0, 12.0, 20.0, 3.0))}
    assert bench.seed_outcome(stages, tmp_path, one_by_one=True)["total_s"] == 45.0
    assert bench.seed_outcome(stages, tmp_path)["total_s"] == 35.0


def test_seed_outcome_failed_stage(tmp_path):
    stages = {"sft": stage(10.0, 0.5), "reward": stage(3.0, 0.5, returncode=2)}
    outcome = bench.seed_outcome(stages, tmp_path)
    assert outcome["failed_stage"] == "reward"
    assert outcome["total_s"] is None and outcome["target_met"] is None


def test_seed_outcome_unreadable_ppo_results(tmp_path):
    stages = {name: stage(10.0, 0.5) for name in bench.STAGES}
    outcome = bench.seed_outcome(stages, tmp_path / "missing")
    assert outcome["failed_stage"] == "ppo results" and "error" in outcome


def test_stage_commands_follow_the_makefile(tmp_path):
    commands = bench.stage_commands(7, tmp_path, {"ppo": ["--total_episodes", "256"]})
    assert list(commands) == list(bench.STAGES)
    assert commands["sft"][:2] == [sys.executable, "recipes/sft.py"]
    assert commands["sft"][2:6] == ["--seed", "7", "--data_seed", "7"]
    assert commands["ppo"][1] == "launch" and commands["ppo"][-4:-2] == ["--output_dir", str(tmp_path / "ppo")]
    launch = commands["ppo"][: commands["ppo"].index("recipes/ppo.py")]
    makefile = (ROOT / "Makefile").read_text()
    assert " ".join(launch[2:]) in makefile.replace("\\\n\t", "")  # the Makefile's LAUNCH_ARGS
    assert commands["ppo"][-2:] == ["--total_episodes", "256"]
    assert commands["eval"][-2:] == ["--output_json", str(tmp_path / "eval.json")]


def test_run_stage_records_exit_code_and_log(tmp_path):
    result = bench.run_stage([sys.executable, "-c", "print('hello'); raise SystemExit(3)"], tmp_path / "s.log")
    assert result["returncode"] == 3
    assert result["wall_s"] > 0 and result["peak_rss_gib"] > 0
    assert bench.log_tail(tmp_path / "s.log") == "hello"


def test_run_seed_trains_sft_and_reward_side_by_side_then_the_rest(tmp_path, monkeypatch):
    """As `make all`: SFT and reward at once, each with half the cores; PPO only once both are done, then eval."""
    record = "import os, sys, time; s = time.time(); time.sleep(0.5); open(sys.argv[1], 'w').write("
    record += "f\"{s} {time.time()} {os.environ.get('OMP_NUM_THREADS')}\")"
    marks = tmp_path / "marks"
    marks.mkdir()
    commands = {name: [sys.executable, "-c", record, str(marks / name)] for name in bench.STAGES}
    monkeypatch.setattr(bench, "stage_commands", lambda seed, run_dir, extra: commands)
    result = bench.run_seed(42, tmp_path / "run", {})
    assert all(stage["returncode"] == 0 for stage in result["stages"].values())
    span = {name: (marks / name).read_text().split() for name in bench.STAGES}
    start, end = {n: float(s[0]) for n, s in span.items()}, {n: float(s[1]) for n, s in span.items()}
    assert start["sft"] < end["reward"] and start["reward"] < end["sft"]  # they overlapped
    assert start["ppo"] >= max(end["sft"], end["reward"]) and start["eval"] >= end["ppo"]
    assert span["sft"][2] == span["reward"][2] == str(bench.HALF_CORES)


def test_report_only_tabulates_the_stored_runs_again(tmp_path):
    run_dir = tmp_path / "seed42"
    write_run_dir(run_dir, HISTORY, dict.fromkeys(PREFIXES, 1.0), correct=0.99, sft_correct=0.98, eval_correct=0.993)
    stages = {name: stage(seconds, 0.5) for name, seconds in zip(bench.STAGES, (10.0, 12.0, 20.0, 3.0))}
    host = {"cpu_count": 2, "torch": "x", "torch_threads": 2, "platform": "y"}
    moved = "/elsewhere/seed42"  # the folder was moved since: the runs are read under --output_dir
    stored = {"seed": 42, "run_dir": moved, "stages": stages, "total_s": 45.0, "sampled_correct": 0.99}
    pipeline = {"extra_args": {}, "machine": host, "seeds": [stored], "median": {}}
    raw = {"args": {"steps": 300, "batch": 64, "repeats": 3}, "pipeline": pipeline}
    raw["seconds_per_100_steps"] = {"plain PyTorch loop": 3.0, "recipes/sft.py (SFTTrainer)": 3.3}
    (tmp_path / "bench.json").write_text(json.dumps(raw), encoding="utf-8")
    assert bench.main(["--report-only", "--output_dir", str(tmp_path)]) == 0
    document = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert "| recipes/sft.py (SFTTrainer) | 3.30 | 1.10x |" in document
    (seed,) = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))["pipeline"]["seeds"]
    assert seed["total_s"] == 35.0 and seed["sampled_correct"] == pytest.approx(0.993)  # read again, not kept
    assert "| 42 | 10.0 | 12.0 | 20.0 | 3.0 | 35.0 |" in document
