"""bench/: a study file is checked before anything runs, the store round-trips and skips finished runs, the statistics
give known numbers, and a tiny study runs end to end through the pipeline runner, then skips what it stored."""

import json
import math
import shutil
import sys

import numpy as np
import pytest
import yaml
from test_ppo import TINY_PPO

from conftest import ROOT, TINY_REWARD, TINY_SFT, finished_run, load_script
from ppo_double.task import PREFIXES

sys.path.insert(0, str(ROOT / "bench"))
import render  # noqa: E402
import run  # noqa: E402
import stats  # noqa: E402
from store import Store, key  # noqa: E402

GOOD = {"seeds": [42, 43], "variants": {"a": {}, "b": {"algorithm": "grpo", "rl": "--beta 0"}}}


def study_file(tmp_path, study: dict, name: str = "s"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"stages": ["sft", "dpo"]}, "stages must be a list of"),
        ({"variants": {"a": {"ppo": "--kl_coef 0.1"}}}, "variant 'a' has unknown key(s)"),
        ({"variants": {"a": {"algorithm": "dpo"}}}, "algorithm must be one of"),
        ({"seeds": "42 43"}, "seeds must be a non-empty list of integers"),
        ({"seeds": [42, 4.5]}, "seeds must be a non-empty list of integers"),
        ({"seeds": []}, "seeds must be a non-empty list of integers"),
        ({"variant": {}}, "unknown key(s) ['variant']"),
        ({"variants": {}}, "a non-empty `variants:` mapping"),
        ({"variants": {"a": {"seeds": [42, "43"]}}}, "variant 'a': seeds must be a non-empty list of integers"),
        ({"baselines": ["c"]}, "baselines must list variants of the study, one per algorithm"),
        ({"variants": {"a": {}, "b": {}}, "baselines": ["a", "b"]}, "one per algorithm"),
        ({"measured_on": "60f846acb7"}, "measured_on maps an algorithm to the recipe-defaults digest"),
    ],
)
def test_a_bad_study_is_refused_in_one_line_before_anything_runs(tmp_path, capsys, change, message):
    path = study_file(tmp_path, {**GOOD, **change})
    with pytest.raises(run.StudyError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        run.load_study(path)
    assert run.main([str(path), "--store", str(tmp_path / "store.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "store.jsonl").exists()


def test_an_unknown_variant_on_the_command_line_is_refused(tmp_path, capsys):
    assert run.main([str(study_file(tmp_path, GOOD)), "--variants", "c"]) == 2
    assert "no variant ['c']" in capsys.readouterr().err


def test_the_committed_studies_load():
    studies = sorted((ROOT / "bench" / "studies").glob("*.yaml"))
    assert {p.stem for p in studies} >= {"pipeline", "algorithms", "reward_hacking", "ppo_settings", "rl_settings"}
    for path in studies:
        study = run.load_study(path)
        for variant in study["variants"]:
            run.settings(study, variant)


def test_a_variant_runs_its_own_seeds(tmp_path, capsys):
    study = {**GOOD, "variants": {"a": {}, "b": {"algorithm": "grpo", "seeds": [7]}}}
    store = tmp_path / "store.jsonl"
    assert run.main([str(study_file(tmp_path, study)), "--store", str(store), "--report-only"]) == 1
    assert "s: 3 runs, 0 in" in capsys.readouterr().out  # a on 42 and 43, b on 7


def test_every_number_the_trainer_logged_is_kept_at_its_completion_count():
    history = [{"episode": 0, "step": 0}, {"episode": 512, "step": 8}]  # the judge's: 64 completions per step
    log = [
        {"loss": 0.5, "kl": 0.01, "step": 8},
        {"eval/exact_match": 0.9, "step": 8},  # the judge's line: in the history already
        {"objective/kl": 0.123456, "episode": 128, "step": 1},
        {"train_loss": 0.4, "step": 8},  # the summary at the end
    ]
    assert run.logged(log, history) == [
        {"completions": 512, "loss": 0.5, "kl": 0.01, "step": 8},
        {"completions": 128, "objective/kl": 0.1235, "episode": 128, "step": 1},
    ]


def test_a_resumed_runs_judgements_without_seconds_still_make_a_record(tmp_path):
    """A run resumed from a checkpoint rebuilds its earlier judgements from the log, which has no seconds."""
    fields = run.metrics({"rl": finished_run(tmp_path)["rl"]}, ["rl"])
    found, trained = fields["metrics"], fields["logged"]
    assert [h["seconds"] for h in fields["history"]] == [None, 9.0]
    assert found["completions"] == 512 and trained == [{"completions": 512, "loss": 0.1, "step": 8}]
    assert found["completions_per_s"] is None  # its seconds count from the resume: no rate, no time to target


def test_settings_put_the_defaults_first_and_the_floors_off_when_measuring(tmp_path):
    study = run.load_study(study_file(tmp_path, {**GOOD, "measure": True, "defaults": {"rl": "--kl_coef 0.2"}}))
    given = run.settings(study, "b")
    assert run.settings(study, "b") == given  # no call changes the next
    assert given["algorithm"] == "grpo"
    assert given["rl"][-4:] == ["--kl_coef", "0.2", "--beta", "0"]
    assert "--min_exact_match" in given["rl"] and "--min_sampled_correct" in given["sft"]


def test_a_changed_recipe_default_is_another_run_and_a_comment_is_not(tmp_path, monkeypatch):
    configs = tmp_path / "repo" / "recipes" / "configs"
    shutil.copytree(ROOT / "recipes" / "configs", configs)
    monkeypatch.setattr(run, "ROOT", tmp_path / "repo")
    study = run.load_study(study_file(tmp_path, GOOD))
    before, folders = run.settings(study, "a"), run.stage_folders(tmp_path, 42, run.settings(study, "a"))
    ppo = configs / "ppo.yaml"
    ppo.write_text("# a comment and a blank line\n\n" + ppo.read_text(encoding="utf-8"), encoding="utf-8")
    assert run.settings(study, "a") == before and run.stage_folders(tmp_path, 42, before) == folders
    ppo.write_text(ppo.read_text(encoding="utf-8").replace("kl_coef: 0.1", "kl_coef: 0.2"), encoding="utf-8")
    after = run.settings(study, "a")
    assert key("s", "a", 42, after) != key("s", "a", 42, before)
    assert run.stage_folders(tmp_path, 42, after)["rl"] != folders["rl"]


def test_a_study_of_some_stages_is_keyed_by_their_defaults_only(tmp_path, monkeypatch):
    configs = tmp_path / "repo" / "recipes" / "configs"
    shutil.copytree(ROOT / "recipes" / "configs", configs)
    monkeypatch.setattr(run, "ROOT", tmp_path / "repo")
    reward_only = run.load_study(study_file(tmp_path, {**GOOD, "stages": ["reward"]}))
    before = run.settings(reward_only, "a")
    ppo = configs / "ppo.yaml"
    ppo.write_text(ppo.read_text(encoding="utf-8").replace("kl_coef: 0.1", "kl_coef: 0.2"), encoding="utf-8")
    assert run.settings(reward_only, "a") == before  # PPO's YAML is no part of a reward study's runs
    reward = configs / "reward.yaml"
    reward.write_text(reward.read_text(encoding="utf-8").replace("seed: 42", "seed: 7"), encoding="utf-8")
    assert run.settings(reward_only, "a") != before


def test_a_study_kept_on_its_defaults_keys_its_records_by_them_and_runs_nothing_more(tmp_path, capsys):
    """`measured_on`: a study measured on earlier recipe defaults keeps its records (keys of that digest) after a
    default changes, for the algorithms it names; running it again is refused before anything runs."""
    today = run.settings(run.load_study(study_file(tmp_path, GOOD)), "a")["recipe_defaults"]
    pinned = run.load_study(study_file(tmp_path, {**GOOD, "measured_on": {"ppo": "0123456789"}}))
    assert run.settings(pinned, "a")["recipe_defaults"] == "0123456789"  # ppo: the digest named
    assert run.settings(pinned, "b")["recipe_defaults"] != today  # grpo: today's own digest
    store = tmp_path / "store.jsonl"
    assert run.main([str(study_file(tmp_path, {**GOOD, "measured_on": {"ppo": "0"}})), "--store", str(store)]) == 2
    assert "kept on the recipe defaults it was measured on" in capsys.readouterr().err
    assert not store.exists()


def test_stage_folders_share_upstream_stages_only(tmp_path):
    study = run.load_study(study_file(tmp_path, GOOD))
    a, b = (run.stage_folders(tmp_path, 42, run.settings(study, v)) for v in ("a", "b"))
    assert a["sft"] == b["sft"] and a["reward"] == b["reward"]
    assert a["rl"] != b["rl"] and a["eval"] != b["eval"]
    assert run.stage_folders(tmp_path, 43, run.settings(study, "a"))["sft"] != a["sft"]


def test_the_store_round_trips_and_keys_follow_the_settings(tmp_path):
    store = Store(tmp_path / "results" / "s.jsonl")
    assert store.records() == [] and store.keys() == set()
    records = [{"key": key("s", "a", seed, {"rl": ["--x"]}), "metrics": {"v": seed, "名": "数字"}} for seed in (1, 2)]
    for record in records:
        store.append(record)
    assert store.records() == records
    assert key("s", "a", 1, {"rl": ["--x"]}) in store.keys()
    assert key("s", "a", 1, {"rl": ["--y"]}) not in store.keys()


def test_wilson_interval_and_iqm_give_known_numbers():
    low, high = stats.wilson(4, 5)
    assert (round(low, 4), round(high, 4)) == (0.3755, 0.9638)
    assert stats.wilson(10, 10)[1] == pytest.approx(1.0)
    point, low, high = stats.iqm([1, 2, 3, 4, 100, 5, 6, 7])  # the 25 % trimmed mean: 3, 4, 5, 6
    assert point == pytest.approx(4.5) and low <= point <= high and high < 100
    assert stats.iqm([7, 7, 7, 7]) == pytest.approx((7, 7, 7))


def test_paired_change_and_probability_of_improvement():
    mean, low, high = stats.paired_change([0.3, 0.5, 0.4], [0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and low < 0.2 < high
    assert stats.fewer_is_better([1, 2, 3], [10, 20, 30])[0] == pytest.approx(1.0)
    assert stats.fewer_is_better([10, 20], [10, 20])[0] == pytest.approx(0.5)
    assert stats.fewer_is_better([math.inf], [5])[0] == pytest.approx(0.0)


def test_bootstrap_intervals_do_not_depend_on_what_ran_before():
    """rliable draws its resamples from numpy's global generator: the same numbers must give the same intervals
    whatever state another library left it in, and the caller's state must be left as it was."""
    runs, other = [9728, 11008, 12800, 14848, math.inf], [10240, 11264, 11008, 13824, 12800]
    results = []
    for seed in (1, 2):
        np.random.seed(seed)
        results.append((stats.iqm(runs[:4] + other), stats.fewer_is_better(runs, other)))
        assert np.random.rand() == np.random.RandomState(seed).rand()
    assert results[0] == results[1]


def synthetic(variant: str, seed: int, met: bool, completions: int | None, change: float) -> dict:
    history = [{"episode": e, "exact_match": e / 1024, "sampled_correct": 0.99} for e in (0, 512, 1024)]
    metrics = {
        "target_met": met,
        "completions": 1024,
        "completions_to_target": completions,
        "seconds_to_target": completions and completions / 100,
        "units_to_target": completions and completions / 400,
        "total_s": 100.0 + seed,
        "total_units": 25.0,
        "sampled_correct": 0.99 + change + seed * 1e-5,
        "sft_sampled_correct": 0.99,
        "keep_change": change + seed * 1e-5,
        "keep_lower": change + seed * 1e-5 - 0.001,
        "min_greedy_correct": 0.98,
        "greedy_exact_match": dict.fromkeys(PREFIXES, 1.0),
        "sampled_exact_match": dict.fromkeys(PREFIXES, 0.99),
    }
    return {
        "variant": variant,
        "seed": seed,
        "failed_stage": None,
        "metrics": metrics,
        "history": history,
        "rollouts": [{"episode": e, "reward": 0.9, "judged": 0.9 - seed / 1e4} for e in (128, 256)],
        "stages": {"rl": {"cached": False, "wall_s": 10.0}},
        "settings": {"eval": []},
        "versions": {"torch": "x"},
        "machine": {"cpu_count": 2, "cpu": "c"},
        "jobs": 1,
        "plain_loop_s_per_100": 4.0,
        "recipe_sft_s_per_100": 4.4,
        "git_commit": "0" * 40,
        "date": "2026-11-30",
    }


def test_the_summary_of_a_synthetic_store(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "REPS", 500)  # the intervals' width is not under test here; the suite's time is
    records = [synthetic("a", s, met=s != 44, completions=1000 + s, change=0.002) for s in (42, 43, 44, 45, 46)]
    records += [synthetic("b", s, met=True, completions=c, change=-0.001) for s, c in ((42, 5000), (43, None))]
    records.append({**synthetic("b", 44, True, 1, 0), "failed_stage": "rl", "metrics": {}})
    frame = stats.summary(records)
    assert list(frame.index) == ["a", "b"]
    assert (frame.loc["a", "runs"], frame.loc["a", "met"], frame.loc["b", "failed"]) == (5, 4, 1)
    assert frame.loc["a", "completions_to_target"][0] == pytest.approx(1044)
    assert frame.loc["b", "completions_to_target"][0] == pytest.approx(5000)
    assert frame.loc["b", "completions_to_target_n"] == 1
    assert frame.loc["a", "correct_change"][0] == pytest.approx(0.002 + 44e-5)
    study = {"name": "s", "description": "d"}
    document = render.report(study, records, figure=tmp_path / "s.png")
    assert "4/5 [38–96 %]" in document and "failed: rl" in document
    assert "| a | b | 1.00" in document  # every run of a reaches the target in fewer completions than any of b
    assert (tmp_path / "s.png").stat().st_size > 0


def test_a_study_of_the_sft_alone_reports_the_sfts_own_number_and_no_targets(tmp_path, monkeypatch):
    """A record of a study that runs SFT holds the SFT's own judgement (its floor's number, on the unprefixed test
    prompts); a study without the RL stage has no targets to count, and its page says nothing of them."""
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "eval_results.json").write_text(json.dumps({"sampled": {"__": {"correct": 0.985}}}))
    assert run.metrics({"sft": sft}, ["sft"])["metrics"] == {"sft_own_correct": 0.985}
    monkeypatch.setattr(stats, "REPS", 500)
    records = []
    for seed, share in ((42, 0.985), (43, 0.971)):
        record = synthetic("a", seed, met=False, completions=None, change=0.0)
        records.append({**record, "metrics": {"sft_own_correct": share, "total_s": 60.0, "total_units": 25.0}})
    records.append({**records[0], "variant": "b", "metrics": {"total_s": 60.0, "total_units": 25.0}})  # none to show
    frame = stats.summary(records)
    assert frame.loc["a", "met"] is None and frame.loc["a", "sft_own_correct"] == 0.971
    document = render.report({"name": "s", "description": "d", "stages": ["sft"]}, records)
    assert "| a | 2 (0) | 60 [60, 60] (25 [25, 25]) | 97.1% |" in document
    assert "| b | 1 (0) | 60 [60, 60] (25 [25, 25]) | — |" in document
    assert "every target" not in document and "glossary.md#target" not in document


def test_each_detail_is_ranked_against_its_algorithms_baseline(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "REPS", 500)
    study = {
        "name": "d",
        "baselines": ["ppo", "grpo"],
        "variants": {"ppo": {}, "slow": {"signature": "objective/kl"}, "same": {}, "grpo": {"algorithm": "grpo"}},
    }
    records = []
    for variant, reach in (("ppo", 1000), ("slow", None), ("same", 1000), ("grpo", 2000)):
        for seed in (42, 43, 44):
            record = synthetic(variant, seed, met=reach is not None, completions=reach, change=0.001)
            record["logged"] = [{"completions": c, "objective/kl": c / 1e4} for c in (128, 256)]
            records.append(record)
    rows = render.ranking(study, stats.summary(records))
    assert [row[:3] for row in rows] == [["slow", "ppo", "1.00 [1.00, 1.00]"], ["same", "ppo", "0.50 [0.50, 0.50]"]]
    assert rows[0][3].startswith("0/3") and rows[0][3].endswith("vs 3/3")
    document = render.report(study, records, figure=tmp_path / "d.png", folder=tmp_path)
    assert (tmp_path / "d" / "slow.png").stat().st_size > 0 and not (tmp_path / "d" / "ppo.png").exists()
    assert document.index("| slow | ppo |") < document.index("<details><summary>Each run (12)</summary>")
    section = document.split("### `slow`")[1]
    assert "| slow | ppo | 1.00" in section and "](d/slow.png)" in section and "### `ppo`" not in document
    assert not (tmp_path / "d.png").exists()  # one picture per detail instead of every variant on one


def test_a_page_is_written_whole_and_the_readme_gets_only_the_headline(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "REPS", 500)
    path = study_file(tmp_path, {"seeds": [42, 43], "variants": {"a": {}}})
    given = run.settings(run.load_study(path), "a")
    store = Store(tmp_path / "store.jsonl")
    for seed in (42, 43):
        store.append({**synthetic("a", seed, True, 1000, 0.001), "key": key("s", "a", seed, given)})
    page, figure = tmp_path / "docs" / "studies" / "s.md", tmp_path / "docs" / "s.png"
    args = [str(path), "--store", str(store.path), "--report-only", "--page", str(page), "--figure", str(figure)]
    assert run.main(args) == 0
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# The `s` study, seeds 42–43\n") and "](../s.png)" in text and figure.is_file()
    headline = load_script("docs/headline.py")  # the README's one spliced block: its own script, beside the pages
    with pytest.raises(ValueError, match="expected one"):
        headline.with_headline("intro\n", "new")
    before = "intro\n<!-- bench:headline:start -->\nold\n<!-- bench:headline:end -->\nafter\n"
    spliced = headline.with_headline(before, "new")
    assert spliced == "intro\n<!-- bench:headline:start -->\n\nnew\n\n<!-- bench:headline:end -->\nafter\n"
    assert headline.with_headline(spliced, "new") == spliced


@pytest.mark.parametrize("code, stored", [(3, True), (130, False), (143, False), (-9, False)])
def test_a_failed_run_is_stored_as_a_miss_and_an_interrupted_one_not(tmp_path, monkeypatch, code, stored):
    def fake(commands, logs, threads=None, skip=()):
        return {stage: {"returncode": code if stage == "rl" else 0, "wall_s": 1.0} for stage in commands}

    monkeypatch.setattr(run.pipeline, "run", fake)
    study = run.load_study(study_file(tmp_path, GOOD))
    store = Store(tmp_path / "store.jsonl")
    runner = run.Runner(study, store, tmp_path, 1, {"plain": 4.0, "recipe": 4.4})
    record = runner.run("a", 42)
    assert (len(store.records()) == 1) is stored
    assert record is None if not stored else record["failed_stage"] == "rl"


def test_a_finished_stage_is_taken_from_its_cache_folder(tmp_path, monkeypatch):
    """A stage whose last file is there (eval_results.json; the eval's own JSON file) is skipped and stored as cached;
    a stage folder without it (a run killed mid-stage) runs again."""
    skipped = []

    def fake(commands, logs, threads=None, skip=()):
        skipped.extend(skip)
        return {
            stage: {"returncode": 3 if stage == "rl" else 0, "wall_s": 1.0} for stage in commands if stage not in skip
        }

    monkeypatch.setattr(run.pipeline, "run", fake)
    study = run.load_study(study_file(tmp_path, GOOD))
    paths = run.stage_folders(tmp_path, 42, run.settings(study, "a"))
    for stage in ("sft", "reward"):
        paths[stage].mkdir()
    (paths["sft"] / "eval_results.json").write_text("{}")  # reward: a folder without its last file
    paths["eval"].write_text("{}")
    record = run.Runner(study, Store(tmp_path / "store.jsonl"), tmp_path, 1, {"plain": 4.0, "recipe": 4.4}).run("a", 42)
    assert skipped == ["sft", "eval"] and record["stages"]["sft"] == record["stages"]["eval"] == {"cached": True}
    assert record["stages"]["reward"]["cached"] is False and record["failed_stage"] == "rl"


def test_rl_threads_set_the_rl_and_eval_stages_threads_only(tmp_path, monkeypatch):
    seen = {}

    def fake(commands, logs, threads=None, skip=()):
        seen.update({stage: threads for stage in commands})
        # SFT and reward pass, RL fails: a stored miss, no metrics to collect
        return {stage: {"returncode": 3 if stage == "rl" else 0, "wall_s": 1.0} for stage in commands}

    monkeypatch.setattr(run.pipeline, "run", fake)
    study = run.load_study(study_file(tmp_path, {"seeds": [42], "variants": {"a": {}, "b": {"rl_threads": 2}}}))
    a, b = (run.settings(study, v) for v in ("a", "b"))
    assert "rl_threads" not in a  # (absent unless set: the keys and folders of the runs stored before it stay)
    folders = [run.stage_folders(tmp_path, 42, given) for given in (a, b)]
    assert [folders[0][s] == folders[1][s] for s in run.pipeline.STAGES] == [True, True, False, False]
    run.Runner(study, Store(tmp_path / "store.jsonl"), tmp_path, 1, {"plain": 4.0, "recipe": 4.4}).run("b", 42)
    assert seen == {"sft": None, "reward": None, "rl": 2, "eval": 2}  # SFT and reward: half the cores each, as make all


def test_a_tiny_study_runs_through_the_pipeline_then_skips_what_it_stored(tmp_path, monkeypatch, capsys):
    """sft -> reward -> ppo -> eval with tiny settings, seed 7; then the same command runs nothing."""
    import speed

    monkeypatch.setattr(speed, "seconds_per_100_steps", lambda: {"plain": 4.0, "recipe": 4.4})
    tiny = {
        "sft": " ".join(TINY_SFT),
        "reward": " ".join(TINY_REWARD),
        "rl": " ".join(TINY_PPO),
        "eval": "--samples 1 --prompts prefixed",
    }
    path = study_file(tmp_path, {"seeds": [7], "measure": True, "defaults": tiny, "variants": {"tiny": {}}})
    args = [str(path), "--store", str(tmp_path / "store.jsonl"), "--work_dir", str(tmp_path / "work")]
    assert run.main(args) == 0
    (record,) = Store(tmp_path / "store.jsonl").records()
    assert record["failed_stage"] is None and set(record["stages"]) == {"sft", "reward", "rl", "eval"}
    assert record["metrics"]["completions"] == 64 and len(record["history"]) >= 2
    assert record["versions"]["trl"].startswith("1.12") and len(record["git_commit"]) >= 40
    assert record["metrics"]["total_units"] == pytest.approx(record["metrics"]["total_s"] / 4.0)
    capsys.readouterr()
    assert run.main([*args, "--seeds", "7"]) == 0
    assert "1 runs, 1 in" in capsys.readouterr().out and len(Store(tmp_path / "store.jsonl").records()) == 1
    json.dumps(record)  # the record is plain JSON
