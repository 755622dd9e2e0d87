"""A quiet console: each stage prints our short lines, its bar and its result table, not the trainers' metric dicts
or TRL's own announcements."""

from conftest import TINY_REWARD, TINY_SFT, load_recipe


def test_sft_and_reward_print_short_lines_not_metric_dicts(tmp_path, capsys):
    load_recipe("sft").main([*TINY_SFT, "--disable_tqdm", "false", "--output_dir", str(tmp_path / "sft")])
    load_recipe("reward").main([*TINY_REWARD, "--disable_tqdm", "false", "--output_dir", str(tmp_path / "reward")])
    out = capsys.readouterr()
    printed = out.out + out.err
    assert "{'loss'" not in printed and "'train_runtime'" not in printed
    lines = printed.replace("\r", "\n").splitlines()
    assert any(line.startswith("step 4/8: loss ") and ", token accuracy " in line and ", lr " in line for line in lines)
    assert any(line.startswith("step 4/8: loss ") and "token accuracy" not in line for line in lines)  # the reward


def test_ppo_prints_no_trl_announcement(tiny_sft, tiny_reward, tmp_path, capsys):
    from test_ppo import tiny_ppo_args

    load_recipe("ppo").main([*tiny_ppo_args(tiny_sft, tiny_reward, tmp_path / "ppo"), "--disable_tqdm", "false"])
    out = capsys.readouterr()
    assert "===training policy===" not in out.out + out.err
    assert "episode 32: " in out.out + out.err  # our line, at the judge's second judgement
