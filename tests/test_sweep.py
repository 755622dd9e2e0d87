"""bench/sweep.py's pure parts: which stages variants share, and reading the grid."""

import pytest

from conftest import ROOT, load_script

sweep = load_script("bench/sweep.py")


def test_stage_key_shares_upstream_stages_only():
    base = {"sft": ["--learning_rate", "3e-3"], "reward": [], "ppo": ["--temperature", "1.5"], "eval": []}
    other_ppo = {**base, "ppo": ["--temperature", "1.3"]}
    other_sft = {**base, "sft": []}
    key = sweep.stage_key
    assert key("sft", 42, base) == key("sft", 42, other_ppo)  # a PPO change reuses the SFT and reward
    assert key("reward", 42, base) == key("reward", 42, other_sft)  # the reward does not read the SFT
    assert key("ppo", 42, base) != key("ppo", 42, other_ppo)
    assert key("ppo", 42, base) != key("ppo", 42, other_sft)  # a new SFT means a new PPO run
    assert key("eval", 42, base) != key("eval", 42, other_ppo)
    assert key("sft", 42, base) != key("sft", 43, base)


def test_stage_key_follows_the_yaml_defaults(monkeypatch):
    args = {"sft": [], "reward": [], "ppo": [], "eval": []}
    before = {stage: sweep.stage_key(stage, 42, args) for stage in ("sft", "reward", "ppo")}
    original = sweep.recipe_config
    monkeypatch.setattr(sweep, "recipe_config", lambda s: original(s) + ("# changed" if s == "sft" else ""))
    after = {stage: sweep.stage_key(stage, 42, args) for stage in ("sft", "reward", "ppo")}
    assert after["sft"] != before["sft"] and after["ppo"] != before["ppo"]  # a new SFT default: new SFT and PPO runs
    assert after["reward"] == before["reward"]


def test_load_grid(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("a:\n  ppo: --temperature 1.5 --kl_coef 0.05\n  seeds: [42]\nb:\n  sft: --max_steps 3000\n")
    loaded = sweep.load_grid(grid, None)
    assert loaded["a"] == {
        "args": {"sft": [], "reward": [], "ppo": ["--temperature", "1.5", "--kl_coef", "0.05"], "eval": []},
        "seeds": [42],
    }
    assert loaded["b"]["seeds"] is None and loaded["b"]["args"]["sft"] == ["--max_steps", "3000"]
    assert list(sweep.load_grid(grid, ["b"])) == ["b"]
    with pytest.raises(SystemExit, match="unknown variant"):
        sweep.load_grid(grid, ["c"])


def test_the_committed_grid_parses():
    grid = sweep.load_grid(ROOT / "bench" / "sweep.yaml", None)
    assert grid and all(set(v["args"]) == set(sweep.STAGES) for v in grid.values())


def test_report_only_tabulates_without_running(tmp_path, monkeypatch):
    grid = tmp_path / "grid.yaml"
    grid.write_text("a:\n  ppo: --temperature 1.5\n")
    monkeypatch.setattr(sweep, "run_stage", lambda *a, **k: pytest.fail("--report_only must not run a stage"))
    out = tmp_path / "out"
    assert sweep.main(["--grid", str(grid), "--seeds", "42", "--output_dir", str(out), "--report_only"]) == 0
    assert "| a | 42 | not run |" in (out / "sweep.md").read_text()
