"""Every stage checks its own result before it writes its final folder (ppo_double/checks.py): a result below a floor
is refused in one line, with no final folder and the checkpoints kept."""

import logging

import pytest

from conftest import TINY_REWARD, TINY_SFT, load_recipe
from ppo_double.checkpoints import last_complete_checkpoint
from ppo_double.checks import BelowFloor, shortfalls
from ppo_double.errors import UsageError
from ppo_double.errors import run as run_main


def test_shortfalls_names_each_number_below_its_floor():
    measured = {"invalid": 0.745, "digits": 1.0, "invalid/swap": 0.61}
    floors = {"invalid": 0.99, "digits": 0.995, "invalid/swap": 0.0}  # 0: no check
    assert shortfalls(measured, floors) == ["invalid 74.50% < floor 99.00%"]


def assert_refused(main, args, out, *expected):
    with pytest.raises(BelowFloor) as refused:
        main([*args, "--output_dir", str(out)])
    message = str(refused.value)
    assert all(text in message for text in expected), message
    assert not out.exists()  # no final folder ...
    assert last_complete_checkpoint(f"{out}-checkpoints")  # ... and the checkpoints stay
    return message


def test_sft_refuses_a_policy_below_its_floor(tmp_path):
    # 8 steps: hardly a right double; the recipe's default floor, given after TINY_SFT's 0
    message = assert_refused(
        load_recipe("sft").main, [*TINY_SFT, "--min_sampled_correct", "0.98"], tmp_path / "sft", "floor 98.00%"
    )
    assert "sampled correct" in message and "--max_steps" in message


def test_reward_refuses_a_classifier_below_its_floors(tmp_path):
    floors = ["--min_clean_accuracy", "0.995", "--min_invalid_caught", "0.99", "--min_kind_caught", "0.97"]
    assert_refused(load_recipe("reward").main, [*TINY_REWARD, *floors], tmp_path / "reward", "floor 99.50%")


@pytest.mark.parametrize("stage", ["ppo", "grpo"])
def test_rl_refuses_a_policy_below_its_floors(stage, tiny_sft, tiny_reward, tmp_path):
    from test_online import tiny_group_args
    from test_ppo import tiny_ppo_args

    args = (tiny_ppo_args if stage == "ppo" else tiny_group_args)(tiny_sft, tiny_reward, tmp_path / "unused")
    args = [*args[: args.index("--output_dir")], "--save_steps", "2", "--min_exact_match", "0.995"]
    assert_refused(load_recipe(stage).main, args, tmp_path / stage, "greedy exact match", "floor 99.50%")


def test_rl_warns_when_the_stop_rule_never_held(tiny_sft, tiny_reward, tmp_path, caplog):
    from test_ppo import tiny_ppo_args

    args = [*tiny_ppo_args(tiny_sft, tiny_reward, tmp_path / "ppo"), "--target_exact_match", "0.995"]
    with caplog.at_level(logging.WARNING):
        load_recipe("ppo").main(args)  # floors 0 (TINY_PPO): saved, with a warning
    assert (tmp_path / "ppo").is_dir()
    warned = [r.getMessage() for r in caplog.records if "stop rule never held" in r.getMessage()]
    assert len(warned) == 1 and "exact match greedy" in warned[0] and "--total_episodes" in warned[0]


def test_a_refused_result_is_one_error_line_and_exit_code_3(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_main(load_recipe("sft").main, [*TINY_SFT, "--min_sampled_correct", "0.98", "--output_dir", str(tmp_path)])
    assert exit_.value.code == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "below its floor" in errors[0]


def test_a_floor_outside_0_1_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="min_invalid_caught must be between 0 and 1"):
        load_recipe("reward").main([*TINY_REWARD, "--min_invalid_caught", "99", "--output_dir", str(tmp_path)])
