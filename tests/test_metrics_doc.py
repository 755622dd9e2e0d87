"""docs/metrics.md has a row for every number a stage logs: the default runs' in the committed ablation store (PPO
and GRPO, every key of every update), and the tiny SFT and reward runs' (their logs and eval_results.json). The
tiny PPO, GRPO and RLOO runs check theirs in test_ppo.py and test_online.py."""

import json

from conftest import ROOT, documented, undocumented

STORE = ROOT / "bench" / "results" / "implementation_details.jsonl"


def test_every_key_the_default_rl_runs_logged_has_a_row():
    records = [json.loads(line) for line in STORE.read_text(encoding="utf-8").splitlines() if line.strip()]
    for variant, section in (("ppo", "PPO"), ("grpo", "GRPO and RLOO")):
        runs = [r for r in records if r["variant"] == variant and not r["failed_stage"]]
        assert runs, f"no default {variant} run in {STORE}"
        keys = {k for r in runs for entry in r["logged"] for k in entry} - {"completions"}  # the store's own
        assert not undocumented(keys, section, "The judge"), variant


def test_every_key_sft_and_reward_log_has_a_row(tiny_sft, tiny_reward):
    for folder, section in ((tiny_sft, "SFT"), (tiny_reward, "Reward")):
        keys = {k for entry in json.loads((folder / "trainer_state.json").read_text())["log_history"] for k in entry}
        keys |= set(json.loads((folder / "eval_results.json").read_text())) if section == "Reward" else set()
        assert {"loss", "learning_rate"} <= keys  # the logs were read
        assert not undocumented(keys, section), section


def test_the_check_finds_a_missing_row():
    assert "objective/kl" in documented("PPO") and "objective/kl" not in documented("SFT")
    assert undocumented({"objective/kl", "eval/exact_match/数字", "made/up"}, "PPO", "The judge") == {"made/up"}
