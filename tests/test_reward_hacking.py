"""bench/reward_hacking.py's pure parts: the stages it runs, and what it reads from a PPO run and tabulates."""

import json

import pytest

from conftest import load_script
from ppo_double.task import PREFIXES


@pytest.fixture(scope="module")
def hacking():
    return load_script("bench/reward_hacking.py")


def last_value(command: list[str], flag: str) -> str:
    """The value argparse keeps for `flag`: the one after its last occurrence."""
    return command[len(command) - command[::-1].index(flag)]


def test_every_ppo_run_gets_the_same_budget_and_its_own_reward(hacking, tmp_path):
    stages = hacking.seed_stages(7, tmp_path, episodes=256)
    assert list(stages) == ["sft", "reward", "reward-tutorial", "ppo-tutorial", "ppo-project", "ppo-rule"]
    tutorial, out = stages["reward-tutorial"]
    assert last_value(tutorial, "--config") == hacking.TUTORIAL_CONFIG and last_value(tutorial, "--seed") == "7"
    assert last_value(tutorial, "--output_dir") == str(out) == str(tmp_path / "reward-tutorial")
    for name, classifier in (("tutorial", "reward-tutorial"), ("project", "reward"), ("rule", None)):
        command, out = stages[f"ppo-{name}"]
        assert last_value(command, "--output_dir") == str(out) == str(tmp_path / f"ppo-{name}")
        assert command[-4:] == ["--total_episodes", "256", "--target_exact_match", "null"]
        assert last_value(command, "--reward") == ("rule" if classifier is None else "classifier")
        if classifier is not None:
            assert last_value(command, "--reward_model_path") == str(tmp_path / classifier)


def write_run(folder, scores, judged, correct_history):
    folder.mkdir(parents=True)
    history = [{"objective/scores": s, "judge/rollout_exact_match": j, "episode": 64 * (i + 1), "step": i + 1}
               for i, (s, j) in enumerate(zip(scores, judged))]  # fmt: skip
    history.insert(2, {"eval/exact_match": 0.5, "step": 2})  # the judge's own entries are no rollout metrics
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    row = {p: {"exact_match": 0.9, "correct": 0.8} for p in PREFIXES} | {"all": {"exact_match": 0.9, "correct": 0.8}}
    judged_during_training = [{"step": 2 * (i + 1), "eval/correct": c} for i, c in enumerate(correct_history)]
    results = {"greedy": row, "sampled": row, "judged_during_training": judged_during_training}
    (folder / "eval_results.json").write_text(json.dumps(results, ensure_ascii=False))


def test_run_outcome_gap_is_the_reward_minus_the_judge_on_the_last_updates(hacking, tmp_path):
    write_run(
        tmp_path / "ppo", scores=[0.1, 0.5, 0.9, 0.95], judged=[0.1, 0.4, 0.5, 0.55], correct_history=[1, 0.7, 0.9]
    )
    outcome = hacking.run_outcome(tmp_path / "ppo", window=2)
    assert outcome["final_reward"] == pytest.approx(0.925)
    assert outcome["final_judged_exact_match"] == pytest.approx(0.525)
    assert outcome["gap"] == pytest.approx(0.4)
    assert outcome["min_correct_during_training"] == 0.7
    assert outcome["episodes"] == 256 and outcome["curves"]["episode"] == [64, 128, 192, 256]


def test_table_has_a_row_per_reward_and_seed_and_a_median_per_reward(hacking, tmp_path):
    outcomes = {}
    for name in hacking.REWARDS:
        for seed, gap in ((42, 0.1), (43, 0.3)):
            write_run(tmp_path / name / str(seed), [0.9, 0.9], [0.9 - gap, 0.9 - gap], [1.0])
        outcomes[name] = {seed: hacking.run_outcome(tmp_path / name / str(seed), 2) for seed in (42, 43)}
    host = {"cpu_count": 2, "torch": "2.x", "torch_threads": 1}
    lines = hacking.table(outcomes, 256, 2, host).splitlines()
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 3 * 3
    assert rows[2] == (
        "| tutorial | median | 90.0% / 90.0% / 90.0% | 90.0% / 90.0% / 90.0% | 80.0% | 80.0% | 100.0% | 0.900 "
        "| 70.0% | +0.200 |"
    )
    assert "256 episodes" in lines[0] and lines[-1] == "Machine: 2 CPU cores, torch 2.x, 1 torch thread(s) per process."
    assert hacking.plot(outcomes, tmp_path / "picture.png").stat().st_size > 0
