"""GRPO and RLOO (recipes/grpo.py, recipes/rloo.py on ppo_double/online.py), and the judge's stop rule in all three RL
trainers."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import NO_FLOORS, load_recipe, undocumented, weights
from ppo_double.task import PREFIXES
from ppo_double.tokenizer import VOCAB

TINY_GROUP = [
    "--max_steps", "4", "--per_device_train_batch_size", "16", "--num_generations", "4", "--judge_every", "2",
    "--judge_numbers", "16", "--test_samples", "1", "--logging_steps", "1", "--target_exact_match", "null",
    "--disable_tqdm", "true", "--judge_threads", "1",  # the fast tests run one worker per core
    *NO_FLOORS["rl"],
]  # fmt: skip


def tiny_group_args(sft, reward, output_dir) -> list[str]:
    paths = {"--sft_model_path": sft, "--reward_model_path": reward, "--output_dir": output_dir}
    return [*TINY_GROUP, *(item for flag, path in paths.items() for item in (flag, str(path)))]


@pytest.fixture(scope="module", params=["grpo", "rloo"])
def tiny_run(request, tiny_sft, tiny_reward, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "run"
    trainer = load_recipe(request.param).main(tiny_group_args(tiny_sft, tiny_reward, out))
    return out, trainer


def test_a_few_updates_change_the_weights(tiny_sft, tiny_run):
    out, trainer = tiny_run
    before, after = weights(tiny_sft), weights(out)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert trainer.state.global_step == 4
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == 42
    assert (out / "tokenizer_config.json").exists()


def test_the_judge_is_logged_next_to_trl_metrics(tiny_run):
    out, trainer = tiny_run
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"reward", "rewards/numeral_reward/mean", "eval/exact_match", "eval/sampled_exact_match"} <= logged
    assert {f"eval/exact_match/{p}" for p in PREFIXES} <= logged
    assert not undocumented(logged, "GRPO and RLOO", "The judge")  # docs/metrics.md has a row for each
    # the judge's entries hold only its metrics: TRL's averages stay in TRL's own log entries
    judged = [entry for entry in trainer.state.log_history if "eval/exact_match" in entry]
    assert [entry["step"] for entry in judged] == [0, 2, 4] and not any("reward" in entry for entry in judged)
    assert [entry["step"] for entry in trainer.state.log_history if "reward" in entry] == [1, 2, 3, 4]
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results["greedy"]) == {*PREFIXES, "all"} and results["greedy"]["all"]["n"] == 1500
    history = results["judged_during_training"]
    # the starting policy, then every 2 updates of 16 completions
    assert [(h["step"], h["episode"]) for h in history] == [(0, 0), (2, 32), (4, 64)]
    assert all(h["seconds"] > 0 for h in history)


@pytest.mark.parametrize("stage", ["ppo", "grpo", "rloo"])
def test_the_judge_stops_each_trainer_at_the_target(stage, tiny_sft, tiny_reward, tmp_path):
    from test_ppo import tiny_ppo_args

    args = (tiny_ppo_args if stage == "ppo" else tiny_group_args)(tiny_sft, tiny_reward, tmp_path / "out")
    # every judgement meets a target of 0 %: the run stops at the first one, after update 1 of 4
    stop_at_once = ["--target_exact_match", "0", "--target_sampled_exact_match", "0", "--target_patience", "1"]
    stop_at_once += ["--target_keep_correct", "false", "--judge_every", "1"]
    trainer = load_recipe(stage).main([*args, *stop_at_once])
    assert trainer.state.global_step == 1
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert [h["step"] for h in results["judged_during_training"]] == [0, 1]


def test_the_stop_rule_waits_for_the_starting_policys_sampled_correct_share():
    """target_keep_correct: a judgement counts only once sampled answers are right doubles as often as at step 0
    (with target_correct_margin: that much more often)."""
    from types import SimpleNamespace

    from ppo_double.callbacks import JudgeCallback, first_stop

    def judgement(exact: float, sampled_correct: float) -> dict:
        logs = {f"eval/{k}/{p}": exact for k in ("exact_match", "sampled_exact_match") for p in PREFIXES}
        return {**logs, "eval/exact_match": exact, "eval/correct": 1.0, "eval/sampled_correct": sampled_correct}

    rule = dict(target=0.995, sampled_target=0.985, patience=2)
    for keep_correct, margin, stopped_at in ((True, 0.0, 4), (False, 0.0, 2), (True, 0.0015, 5)):
        # the start (exact 30 %, 99 % right doubles), then the targets held with 98.5 ... 99.3 % right doubles
        shares = (0.985, 0.988, 0.99, 0.992, 0.993, 0.993)
        verdicts = iter([judgement(0.3, 0.99), *(judgement(1.0, c) for c in shares)])
        judge = JudgeCallback(None, every=1, **rule, keep_correct=keep_correct, correct_margin=margin)
        judge.measure = lambda policy=None, verdicts=verdicts: next(verdicts)
        judge.log = lambda logs, control: None
        args, state = SimpleNamespace(batch_size=64), SimpleNamespace(log_history=[], global_step=0)
        control = SimpleNamespace(should_training_stop=False)
        judge.on_train_begin(args, state, control)
        online = []
        while not control.should_training_stop:
            state.global_step += 1
            judge.on_step_end(args, state, control)
            online.append(judge.streak)
        assert state.global_step == stopped_at
        # the replay of the finished run's judgements (the bench's, docs/stop_margin's) stops at the same one
        assert first_stop(judge.history, judge.patience, judge.reached_target)["step"] == stopped_at
        # and a run resumed after any of its judgements carries on with the streak it had
        for step in range(1, stopped_at + 1):
            resumed = JudgeCallback(None, every=1, **rule, keep_correct=keep_correct, correct_margin=margin)
            resumed.on_train_begin(args, SimpleNamespace(log_history=judge.history[: step + 1]), control)
            assert (resumed.streak, resumed.stopped) == (online[step - 1], step == stopped_at)


def test_the_judge_draws_sampled_answers_only_where_greedy_holds_the_target():
    """Before greedy holds the target the stop rule cannot hold: the judge skips the sampled answers there (4/5 of
    its time), but never the starting policy's, which keep_correct compares with."""
    from types import SimpleNamespace

    from ppo_double.callbacks import JudgeCallback, holds_target
    from ppo_double.modeling import build_policy, load_tokenizer

    trainer = SimpleNamespace(processing_class=load_tokenizer())
    policy = build_policy(n_layer=1)  # untrained: greedy exact match far below any target but 0

    def judgement(target: float | None, start: bool = False) -> dict:
        return JudgeCallback(trainer, every=1, numbers=[1234, 5678], target=target, samples=2)._measure(policy, start)

    sampled = {"eval/sampled_exact_match", "eval/sampled_correct"}
    skipped, start = judgement(0.995), judgement(0.995, start=True)
    assert not sampled & skipped.keys() and sampled <= start.keys()
    assert sampled <= judgement(None).keys()  # no stop rule (GRPO's and RLOO's default): every judgement whole
    assert sampled <= judgement(0.0).keys()  # greedy holds a target of 0
    assert not holds_target(skipped, start, 0.995, 0.0, keep_correct=True)


def test_the_judge_runs_on_its_own_threads_with_the_same_answers(tiny_sft, monkeypatch):
    """`judge_threads`: PPO trains on one thread under accelerate, and a lone process judges on the idle core too.
    The answers are the same at either count; the training's threads are set back after each judgement."""
    from types import SimpleNamespace

    import torch

    from ppo_double import callbacks
    from ppo_double.modeling import load_tokenizer
    from ppo_double.task import VALIDATION_NUMBERS

    seen, real = [], callbacks.judged
    monkeypatch.setattr(callbacks, "judged", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    trainer = SimpleNamespace(processing_class=load_tokenizer(), accelerator=SimpleNamespace(device="cpu"))
    before = torch.get_num_threads()
    logs = {
        threads: callbacks.JudgeCallback(
            trainer,
            every=1,
            numbers=VALIDATION_NUMBERS[:40],
            samples=4,
            start_model_path=str(tiny_sft),
            threads=threads,
        ).measure(start=True)
        for threads in (1, 2)
    }
    assert seen == [1, 1, 2, 2] and torch.get_num_threads() == before  # greedy, then sampled, at each count
    assert logs[1] == logs[2]


def test_the_judges_threads_default_to_this_processs_share_of_the_cores(monkeypatch):
    from ppo_double.distributed import cpu_share

    alone = cpu_share()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(alone))
    assert alone >= 1 and cpu_share() == 1


@pytest.mark.parametrize("stage", ["ppo", "grpo"])
def test_the_start_is_judged_on_the_sft_policy_as_saved(stage, tiny_sft, tiny_reward, tmp_path):
    """keep_correct compares with the SFT policy as saved (as the test does), not with the copy that
    scale_prefix_embeddings changed."""
    from test_ppo import tiny_ppo_args

    from ppo_double import callbacks

    judged_wte, judged = [], callbacks.judged

    def recording_judged(model, tokenizer, prompts, samples=0, *args, **kwargs):
        if not samples:  # each judgement's greedy answers
            judged_wte.append(model.get_input_embeddings().weight.detach().clone())
        return judged(model, tokenizer, prompts, samples, *args, **kwargs)

    args = (tiny_ppo_args if stage == "ppo" else tiny_group_args)(tiny_sft, tiny_reward, tmp_path / "out")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(callbacks, "judged", recording_judged)
        load_recipe(stage).main([*args, "--scale_prefix_embeddings", "true"])
    sft_wte = weights(tiny_sft)["transformer.wte.weight"]
    prefix_rows = [VOCAB.index(c) for c in set("".join(PREFIXES))]
    assert len(judged_wte) == 3  # the start, then every 2 updates
    assert torch.equal(judged_wte[0], sft_wte)
    assert not torch.allclose(judged_wte[1][prefix_rows], sft_wte[prefix_rows])  # the trained copy was scaled


@pytest.mark.filterwarnings("error:fan_in_fan_out")  # lora_config tells LoRA that GPT-2's layers are Conv1D
def test_lora_trains_only_adapter_weights_and_saves_a_merged_policy(tiny_sft, tiny_reward, tmp_path):
    trainer = load_recipe("grpo").main(
        [*tiny_group_args(tiny_sft, tiny_reward, tmp_path / "grpo"), "--max_steps", "2", "--use_peft", "true"]
    )
    assert trainer.state.global_step == 2
    merged, sft = weights(tmp_path / "grpo"), weights(tiny_sft)
    assert not any("lora" in k for k in merged) and merged.keys() == sft.keys()
    changed = {k for k in merged if not torch.equal(merged[k], sft[k])}
    # LoRA on c_attn, c_proj and c_fc: only those weights moved once merged, and the prefix rows of the input
    # embedding, scaled before training (scale_prefix_embeddings)
    assert changed - {"transformer.wte.weight"}
    assert all(
        k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) for k in changed - {"transformer.wte.weight"}
    )
    moved_rows = (merged["transformer.wte.weight"] != sft["transformer.wte.weight"]).any(dim=1).nonzero().flatten()
    assert [VOCAB[i] for i in moved_rows] == sorted(set("".join(PREFIXES)), key=VOCAB.index)


@pytest.mark.slow
def test_grpo_learns_to_follow_the_prefix(trained, tmp_path):
    """The learning check, on the defaults but stopped at a lower sampled target (about 15k completions instead of the
    default's 64k, to fit the CI budget): GRPO from the trained SFT policy makes the prefix decide the numeral system,
    keeping the arithmetic."""
    sft, reward = trained / "sft", trained / "reward"
    args = ["--sft_model_path", str(sft), "--reward_model_path", str(reward), "--output_dir", str(tmp_path / "grpo")]
    load_recipe("grpo").main(
        [*args, "--target_exact_match", "0.995", "--target_sampled_exact_match", "0.95", "--max_steps", "400"]
        + ["--min_exact_match", "0.99", "--min_sampled_exact_match", "0.9", "--disable_tqdm", "true"]  # as asserted
    )
    results = json.loads((tmp_path / "grpo" / "eval_results.json").read_text())
    for prefix in PREFIXES:
        assert results["greedy"][prefix]["exact_match"] >= 0.99, (prefix, results["greedy"][prefix])
        assert results["sampled"][prefix]["exact_match"] >= 0.9, (prefix, results["sampled"][prefix])
    assert results["greedy"]["all"]["correct"] >= 0.99


@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_rule_reward_needs_no_classifier(stage, tiny_sft, tmp_path):
    """`--reward rule`: the judge's verdict through the same reward function; reward_model_path is not read."""
    args = tiny_group_args(tiny_sft, tmp_path / "no-such-classifier", tmp_path / stage)
    trainer = load_recipe(stage).main([*args, "--reward", "rule"])
    means = [e["rewards/numeral_reward/mean"] for e in trainer.state.log_history if "rewards/numeral_reward/mean" in e]
    assert trainer.state.global_step == 4 and len(means) == 4
    assert all(-1.0 <= mean <= 1.0 for mean in means)  # exact match (0 or 1), minus 1 without EOS
