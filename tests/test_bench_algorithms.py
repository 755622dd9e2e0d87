"""bench/algorithms.py's pure parts: when a run met the stop rule, the comparison table, the figure."""

import json

import pytest
import yaml

from conftest import ROOT, load_script
from ppo_double.plots import plot_algorithms
from ppo_double.task import PREFIXES

algorithms = load_script("bench/algorithms.py")


def judgement(step: int, greedy: float, sampled: float, correct: float = 1.0, sampled_correct: float = 0.99) -> dict:
    entry = {"step": step, "episode": 64 * step, "seconds": 2.0 * step, "eval/correct": correct}
    entry["eval/sampled_correct"] = sampled_correct
    entry |= {f"eval/exact_match/{p}": greedy for p in PREFIXES}
    entry |= {f"eval/sampled_exact_match/{p}": sampled for p in PREFIXES}
    entry |= {"eval/exact_match": greedy, "eval/sampled_exact_match": sampled}
    return entry


def results(history: list[dict]) -> dict:
    rows = {p: {"exact_match": 1.0, "correct": 1.0} for p in PREFIXES}
    return {
        "greedy": {**rows, "all": {"correct": 1.0}},
        "sampled": {**rows, "all": {"correct": 0.99}},
        "judged_during_training": history,
    }


HISTORY = [
    judgement(0, 0.3, 0.3, sampled_correct=0.985),  # the starting policy
    judgement(8, 0.9, 0.5, correct=0.97),
    judgement(16, 1.0, 0.99),  # held once
    judgement(24, 0.99, 0.99),  # greedy below 99.5 %: the streak restarts
    judgement(32, 1.0, 0.99, sampled_correct=0.98),  # right doubles less often than at the start: restarts too
    judgement(40, 1.0, 0.985),
    judgement(48, 1.0, 0.99),  # held twice in a row: the target
]


def test_outcome_finds_the_judgement_where_the_stop_rule_held():
    outcome = algorithms.outcome(results(HISTORY))
    assert outcome["completions_to_target"] == 64 * 48 and outcome["seconds_to_target"] == 96.0
    assert outcome["completions_per_s"] == 32.0
    assert outcome["min_greedy_correct_in_training"] == 0.97


def test_outcome_of_a_run_that_never_met_the_target():
    outcome = algorithms.outcome(results(HISTORY[:3]))
    assert outcome["completions_to_target"] is None and outcome["seconds_to_target"] is None


def test_comparison_table_has_a_row_per_run_and_a_median_per_algorithm():
    def stage(*extra):
        return {"wall_s": 100.0, "peak_rss_gib": 1.0, "command": ["x", "--resume_from_checkpoint", "false", *extra]}

    runs = [
        {"algorithm": a, "seed": s, "stage": stage(), "failed": False, **algorithms.outcome(results(HISTORY))}
        | {"sampled_correct": 0.99}
        for a in ("ppo", "grpo")
        for s in (42, 43)
    ]
    runs[0]["stage"] = stage("--total_episodes", "8192")
    runs.append({"algorithm": "grpo", "seed": 44, "stage": stage(), "failed": True})
    host = {"cpu_count": 2, "torch_threads": 2, "torch": "2.x", "platform": "Linux", "date": "today"}
    sft = dict.fromkeys((42, 43, 44), {"sampled_correct": 0.98})
    lines = algorithms.comparison_table(runs, sft, host).splitlines()
    rows = [line for line in lines if line.startswith("| ")][2:]
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| ppo", "42"], ["| ppo", "43"], ["| **ppo**", "median"],
        ["| grpo", "42"], ["| grpo", "43"], ["| grpo", "44"], ["| **grpo**", "median"],
    ]  # fmt: skip
    assert rows[0].split(" | ")[2:4] == ["3072", "96.0"] and "98.00% → 99.00%" in rows[0]
    assert rows[5].split(" | ")[2] == "failed"
    assert rows[6].split(" | ")[2] == "3072 (2/3 reached)" and "99.00% (2/3 ≥ SFT)" in rows[6]
    assert "(extra args: ppo 42 `--total_episodes 8192`)" in lines[0]


def test_the_figure_is_written(tmp_path):
    path = plot_algorithms({"ppo": [HISTORY], "grpo": [HISTORY, HISTORY], "rloo": []}, tmp_path / "algorithms.png")
    assert path.stat().st_size > 10_000


def test_the_comparison_goes_between_its_own_readme_markers(tmp_path):
    start, end = algorithms.README_MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{start}\nold\n{end}\n<!-- bench:start -->\nkeep\n<!-- bench:end -->\n")
    algorithms.bench.update_readme(readme, "| new |", algorithms.README_MARKERS)
    assert readme.read_text() == f"a\n{start}\n\n| new |\n\n{end}\n<!-- bench:start -->\nkeep\n<!-- bench:end -->\n"


def test_report_only_tabulates_the_saved_runs_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(algorithms, "run_algorithm", lambda *a: pytest.fail("--report-only ran an algorithm"))
    with pytest.raises(SystemExit, match="no .*algorithms.json to tabulate"):
        algorithms.main(["--report-only", "--output_dir", str(tmp_path)])
    stage = {"wall_s": 100.0, "peak_rss_gib": 1.0, "command": ["x", "--resume_from_checkpoint", "false"]}
    run = {"algorithm": "grpo", "seed": 42, "label": "", "stage": stage, "failed": False}
    run |= algorithms.outcome(results(HISTORY)) | {"sampled_correct": 0.995}
    host = {"cpu_count": 2, "torch_threads": 2, "torch": "2.x", "platform": "Linux", "date": "then"}
    saved = {"machine": host, "target": algorithms.TARGET, "sft": {"42": {"sampled_correct": 0.99}}, "runs": [run]}
    (tmp_path / "algorithms.json").write_text(json.dumps(saved))
    figure = tmp_path / "algorithms.png"
    assert algorithms.main(["--report-only", "--output_dir", str(tmp_path), "--figure", str(figure)]) == 0
    table = (tmp_path / "algorithms.md").read_text()
    assert "| grpo | 42 | 3072 |" in table and "99.00% → 99.50%" in table and "; then." in table
    assert figure.exists()


def test_sweep_rows_name_their_schedule_and_beta_whatever_the_yaml_says():
    rows = {label: args for _, label, args in algorithms.SWEEP}
    for label, args in rows.items():
        pairs = dict(zip(args[::2], args[1::2]))
        assert pairs["--lr_scheduler_type"] == ("linear" if "linear decay" in label else "constant"), label
        assert pairs["--beta"] == ("0.04" if "beta 0.04" in label else "0"), label
        assert len(pairs) == len(args) / 2  # each flag once


def test_the_target_is_ppo_yaml_stop_rule():
    """TARGET judges every algorithm's history by the rule PPO stops at: the two must not drift apart."""
    config = yaml.safe_load((ROOT / "recipes" / "configs" / "ppo.yaml").read_text(encoding="utf-8"))
    assert {key: value for key, value in config.items() if key.startswith("target_")} == algorithms.TARGET
