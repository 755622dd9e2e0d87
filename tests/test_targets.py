"""ppo_double/targets.py: one definition of "every target", read from a run's files, for the bench's studies and for
the summary at the end of `make all`."""

import pytest

from conftest import finished_run
from ppo_double import targets
from ppo_double.summary import summarize


@pytest.mark.parametrize(
    "accuracy, met",
    [({"accuracy/invalid": 0.995}, True), ({"accuracy/invalid": 0.9}, False), ({"accuracy/digits": 1.0}, True)],
    ids=["invalid-caught", "invalid-missed", "no-invalid-class"],
)
def test_the_reward_floor_applies_to_a_classifier_with_an_invalid_class(tmp_path, accuracy, met):
    """The tutorial's 3-class classifier has no invalid class: its runs are judged on the policy's targets alone."""
    found = targets.reached(finished_run(tmp_path, accuracy), ["reward", "rl", "eval"])
    assert found["target_met"] is met


@pytest.mark.parametrize("lost, met", [(0, True), (1, False), (None, False)], ids=["kept", "lost-1/16", "unpaired"])
def test_every_target_needs_the_paired_test_of_keeping_arithmetic(tmp_path, lost, met):
    """A run kept its arithmetic only where the paired test says so: an eval file with nothing to pair (no per-prompt
    counts) is not shown to keep it, though its sampled correct share is above the SFT's."""
    fields = targets.reached(finished_run(tmp_path, {"accuracy/invalid": 1.0}, lost), ["reward", "rl", "eval"])
    assert fields["keeps_arithmetic"] is met and fields["target_met"] is met
    if lost is None:
        assert fields["sampled_correct"] > fields["sft_sampled_correct"] and "keep_lower" not in fields
    else:
        assert fields["keep_change"] == pytest.approx(-lost / 16) and fields["keep_lower"] <= fields["keep_change"]


def test_the_summary_of_make_all_says_which_target_a_run_missed(tmp_path):
    """The pipeline's layout (`ppo`, `eval.json`): each target with what the run reached, ✓ or ✗, then the verdict."""
    paths = finished_run(tmp_path, {"accuracy/invalid": 0.9})
    paths["rl"].rename(tmp_path / "ppo")
    paths["eval"].rename(tmp_path / "eval.json")
    (tmp_path / "sft").mkdir()  # a stage folder, as make all leaves it
    text = summarize(str(tmp_path))
    assert "  ✓ greedy exact match ≥ 99.5 %: 100.0 / 100.0 / 100.0 %" in text
    assert "  ✓ sampled correct share kept (bound above -0.25 points): +0.00 points, lower bound +0.00" in text
    assert "  ✓ greedy correct ≥ 97 % at every judgement while training (validation numbers): lowest 100.0 %" in text
    assert "  ✗ reward catches ≥ 99 % of invalid answers: 90.00 %" in text
    assert text.count("✓") == 4 and text.rstrip().endswith(
        "make plots    # PNG plots of the runs' logs -> outputs/plots/"
    )
    assert "a target missed (✗)" in text and "every target met" not in text


def test_a_run_without_its_eval_has_no_targets_yet(tmp_path):
    paths = finished_run(tmp_path)  # the RL stage alone
    paths["rl"].rename(tmp_path / "ppo")
    assert "targets" not in summarize(str(tmp_path))
    assert targets.report({"rl": tmp_path / "ppo", "eval": tmp_path / "eval.json", "reward": tmp_path / "r"}) is None
