import json

import huggingface_hub
import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import NO_FLOORS, load_recipe, undocumented, weights
from ppo_double.evaluate import keeps_arithmetic

TINY_PPO = [
    "--total_episodes",
    "64",
    "--per_device_train_batch_size",
    "16",
    "--num_ppo_epochs",
    "1",
    "--judge_every",
    "2",
    "--judge_numbers",
    "16",  # of 500 per prefix: tiny runs test the judge's plumbing, and judging 1 500 prompts dominated their time
    "--test_samples",
    "1",  # of 16 sampled answers per test prompt in the final evaluation: the same reason
    "--logging_steps",
    "1",
    "--target_exact_match",
    "null",
    "--value_warmup_updates",
    "1",
    "--disable_tqdm",
    "true",
    "--judge_threads",
    "1",  # the fast tests run one worker per core: a judge on this process's share of them would oversubscribe
    *NO_FLOORS["rl"],
]


def tiny_ppo_args(sft, reward, output_dir) -> list[str]:
    return [
        *TINY_PPO,
        "--sft_model_path",
        str(sft),
        "--reward_model_path",
        str(reward),
        "--output_dir",
        str(output_dir),
    ]


def run_ppo(args: list[str], capture=lambda trainer: {}) -> dict:
    """recipes/ppo.py on `args`; returns the value model's weights before and after training, and `capture(trainer)`
    read once it has trained."""
    ppo = load_recipe("ppo")
    captured = {}
    original = ppo.PPOTrainer.train

    def train_and_capture(self, **kwargs):
        captured["value_before"] = {k: v.clone() for k, v in self.value_model.state_dict().items()}
        original(self, **kwargs)
        captured["value_after"] = self.value_model.state_dict()
        captured.update(capture(self))

    ppo.PPOTrainer.train = train_and_capture
    try:
        ppo.main(args)
    finally:
        ppo.PPOTrainer.train = original
    return captured


@pytest.fixture(scope="module")
def tiny_ppo(tiny_sft, tiny_reward, tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo")
    captured = run_ppo(
        tiny_ppo_args(tiny_sft, tiny_reward, out), lambda trainer: {"log_history": trainer.state.log_history}
    )
    return out, captured


def test_ppo_changes_policy_and_value_weights(tiny_sft, tiny_ppo):
    out, captured = tiny_ppo
    before, after = weights(tiny_sft), weights(out)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    changed = [
        k for k in captured["value_before"] if not torch.equal(captured["value_before"][k], captured["value_after"][k])
    ]
    assert "score.weight" in changed and any(k.startswith("transformer.") for k in changed)


def test_critic_warmup_holds_the_policy_still(tiny_sft, tiny_reward, tmp_path):
    """During the value warm-up only the value model learns; the scheduler then releases the policy."""
    # TINY_PPO runs 4 updates: all of them warm-up (constant schedule: the policy's rate after it is the full one).
    args = ["--value_warmup_updates", "4", "--lr_scheduler_type", "constant", "--learning_rate", "1e-3"]
    args += ["--scale_prefix_embeddings", "false"]  # else the prefix rows move before training starts
    captured = run_ppo(
        [*tiny_ppo_args(tiny_sft, tiny_reward, tmp_path / "ppo"), *args],
        lambda trainer: {"policy_lr": [g["lr"] for g in trainer.optimizer.param_groups if not g["value_model"]]},
    )
    before, after = weights(tiny_sft), weights(tmp_path / "ppo")
    assert all(torch.equal(before[k], after[k]) for k in before)  # the policy never moved
    value_before, value_after = captured["value_before"], captured["value_after"]
    assert any(not torch.equal(value_before[k], value_after[k]) for k in value_before)
    assert captured["policy_lr"] == [1e-3, 1e-3]  # both policy groups (decay, no decay) released after update 4


def test_ppo_logs_the_judge_next_to_trl_metrics(tiny_ppo):
    out, captured = tiny_ppo
    logged = {k for entry in captured["log_history"] for k in entry}
    assert {"objective/scores", "objective/kl", "eval/exact_match", "eval/correct"} <= logged
    assert {"eval/exact_match/数字", "eval/exact_match/小写", "eval/exact_match/大写"} <= logged
    assert not undocumented(logged, "PPO", "The judge")  # docs/metrics.md has a row for each
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results["greedy"]) == {"数字", "小写", "大写", "all"}
    assert results["greedy"]["all"]["n"] == results["sampled"]["all"]["n"] == 1500  # --test_samples 1
    assert [h["step"] for h in results["judged_during_training"]] == [0, 2, 4]  # the start, then every 2 updates


def test_ppo_output_loads(tiny_ppo):
    out, _ = tiny_ppo
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == 42
    assert (out / "tokenizer_config.json").exists()


@pytest.mark.slow
def test_ppo_learns_to_follow_the_prefix(trained, tmp_path):
    """The real learning check: from a trained SFT policy, PPO on its defaults (a user's run: stopped by the judge,
    and refused by the recipe below its floors) must make the prefix decide the numeral system, in greedy and in
    sampled answers, keeping its arithmetic (the paired test the bench applies). On a third of the budget (6 144
    episodes) it failed at one torch thread: the prefixes separate only after ~3 500 episodes (README "Limits")."""
    sft, reward = trained / "sft", trained / "reward"
    before = load_recipe("evaluate")
    baseline = tmp_path / "baseline.json"
    before.main(["--model", str(sft), "--prompts", "prefixed", "--output_json", str(baseline)])
    ppo = load_recipe("ppo")
    ppo.main(
        [
            "--sft_model_path",
            str(sft),
            "--reward_model_path",
            str(reward),
            "--output_dir",
            str(tmp_path / "ppo"),
            "--disable_tqdm",
            "true",
        ]
    )
    sft_results = json.loads(baseline.read_text())[str(sft)]
    ppo_results = json.loads((tmp_path / "ppo" / "eval_results.json").read_text())
    for prefix in ("数字", "小写", "大写"):
        greedy, sampled = ppo_results["greedy"][prefix], ppo_results["sampled"][prefix]
        assert greedy["exact_match"] >= 0.99, (prefix, greedy)
        assert greedy["exact_match"] >= sft_results["greedy"][prefix]["exact_match"] + 0.3
        assert sampled["exact_match"] >= 0.95, (prefix, sampled)
    assert ppo_results["greedy"]["all"]["correct"] >= 0.99
    kept = keeps_arithmetic(sft_results, ppo_results)
    assert kept["holds"], kept
    assert min(entry["eval/correct"] for entry in ppo_results["judged_during_training"]) >= 0.95


@pytest.mark.filterwarnings("error:fan_in_fan_out")  # lora_config tells LoRA that GPT-2's layers are Conv1D
def test_lora_trains_only_adapter_weights_and_saves_a_merged_policy(tiny_sft, tiny_reward, tmp_path):
    ppo = load_recipe("ppo")
    captured = {}
    original = ppo.PPOTrainer.train

    def train_and_capture(self, **kwargs):
        policy = self.accelerator.unwrap_model(self.model).policy
        captured["before"] = {k: v.detach().clone() for k, v in policy.named_parameters()}
        captured["trainable"] = {k for k, v in policy.named_parameters() if v.requires_grad}
        original(self, **kwargs)
        captured["after"] = {k: v.detach().clone() for k, v in policy.named_parameters()}

    ppo.PPOTrainer.train = train_and_capture
    try:
        ppo.main([*tiny_ppo_args(tiny_sft, tiny_reward, tmp_path / "ppo"), "--use_peft", "true", "--lora_r", "4"])
    finally:
        ppo.PPOTrainer.train = original
    before, after = captured["before"], captured["after"]
    assert captured["trainable"] and all("lora_" in k for k in captured["trainable"])
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= captured["trainable"]  # the base weights never moved
    # The saved policy is the adapter merged into the base weights: a plain GPT-2 checkpoint, different from the SFT.
    merged = weights(tmp_path / "ppo")
    assert not any("lora" in k for k in merged) and merged.keys() == weights(tiny_sft).keys()
    assert any(not torch.equal(merged[k], weights(tiny_sft)[k]) for k in merged)
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "ppo").config.vocab_size == 42


def test_console_shows_a_short_line_every_logging_steps_and_every_judgement():
    from types import SimpleNamespace

    from ppo_double.callbacks import CompactProgressCallback

    lines = []
    callback = CompactProgressCallback()
    callback.training_bar = SimpleNamespace(write=lines.append)
    args = SimpleNamespace(logging_steps=8, batch_size=64)  # PPO: 64 episodes per update
    trl_metrics = {"objective/scores": 0.5, "objective/kl": 0.25, "loss/policy_avg": 0.1, "eps": 54}
    for step in range(1, 17):
        state = SimpleNamespace(is_world_process_zero=True, global_step=step)
        callback.on_log(args, state, None, logs=dict(trl_metrics))
    state = SimpleNamespace(is_world_process_zero=True, global_step=3)
    callback.on_log(args, state, None, logs={"eval/exact_match": 1.0, "eval/sampled_exact_match": 0.98})
    assert lines == [
        "episode 512: reward 0.500, kl 0.250",
        "episode 1024: reward 0.500, kl 0.250",
        "episode 192: exact(greedy) 1.000, exact(sampled) 0.980",
    ]


def test_rule_reward_run_is_judged_resumable_and_pushable(tiny_sft, tmp_path):
    """`--reward rule`: no classifier; TRL's missing-EOS penalty applies; judged, resumed and pushed like any run."""
    from test_hub import FakeHub

    from ppo_double.modeling import EOS_ID
    from ppo_double.reward import NumeralReward

    out, hub, no_eos = tmp_path / "ppo", FakeHub(tmp_path / "hub"), []
    backbone = NumeralReward.backbone

    def recording_backbone(self, input_ids, attention_mask=None, **kwargs):  # one call per update at this batch size
        no_eos.append(1 - (input_ids == EOS_ID).any(1).float().mean().item())
        return backbone(self, input_ids, attention_mask, **kwargs)

    args = [*TINY_PPO, "--reward", "rule", "--sft_model_path", str(tiny_sft), "--output_dir", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(NumeralReward, "backbone", recording_backbone)
        mp.setattr(huggingface_hub.HfApi, "create_repo", lambda api, *a, **k: hub.create_repo(api, *a, **k))
        mp.setattr(huggingface_hub.HfApi, "upload_folder", lambda api, *a, **k: hub.upload_folder(api, *a, **k))
        ppo = load_recipe("ppo")
        ppo.main([*args, "--save_steps", "2"])  # 4 updates, checkpoints every 2
        trainer = ppo.main([*args, "--total_episodes", "128", "--push_to_hub", "true", "--hub_model_id", "me/rule"])
    updates = [entry for entry in trainer.state.log_history if "objective/scores" in entry]
    assert [entry["step"] for entry in updates] == list(range(1, 9))  # the second run resumed at update 5
    assert len(no_eos) == 8
    for entry, share in zip(updates, no_eos):  # reward = the judge's exact match - penalty x share without EOS
        assert entry["objective/scores"] == pytest.approx(entry["judge/rollout_exact_match"] - 1.0 * share)
    results = json.loads((out / "eval_results.json").read_text())
    assert [h["step"] for h in results["judged_during_training"]] == [0, 2, 4, 6, 8]
    (upload,) = hub.uploads
    assert {"model.safetensors", "eval_results.json", "README.md"} <= upload["files"]
    card = (upload["folder"] / "README.md").read_text()
    assert "| `reward` | `rule` |" in card and "| `reward_model_path` | `None` |" in card


def test_prefix_embeddings_start_at_the_trained_rows_scale(tiny_sft):
    """SFT never sees a prefix: those rows keep their initial scale until scale_prefix_embeddings grows them."""
    from ppo_double.modeling import scale_prefix_embeddings
    from ppo_double.tokenizer import VOCAB

    model = AutoModelForCausalLM.from_pretrained(tiny_sft)
    prefix = torch.tensor([c in "数字大写小" for c in VOCAB])
    with torch.no_grad():  # trained rows grow (~4x in the real SFT); the tiny SFT's barely moved
        model.get_input_embeddings().weight[~prefix] *= 4
    before = model.get_input_embeddings().weight.detach().clone()
    scale_prefix_embeddings(model)
    after = model.get_input_embeddings().weight.detach()
    assert torch.equal(after[~prefix], before[~prefix])
    target = before[~prefix].norm(dim=1).mean()
    assert torch.allclose(after[prefix].norm(dim=1), target.expand(5), rtol=1e-5)
    assert torch.allclose(torch.nn.functional.cosine_similarity(after[prefix], before[prefix]), torch.ones(5))
