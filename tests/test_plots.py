"""ppo_double.plots on small fake logs written in the formats the recipes produce."""

import json
import struct

from ppo_double.plots import render_plots
from ppo_double.task import PREFIXES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = {
    "sft_loss.png",
    "reward_loss.png",
    "reward_accuracy.png",
    "ppo_reward_kl.png",
    "ppo_exact_match.png",
    "eval_before_after.png",
}


def write_state(folder, log_history):
    """A transformers TrainerState JSON (save_to_json) with the given log_history."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"global_step": max(row.get("step", 0) for row in log_history), "log_history": log_history}
    (folder / "trainer_state.json").write_text(json.dumps(state, ensure_ascii=False, indent=2), encoding="utf-8")


def fake_runs(root):
    """sft/, reward/, ppo/ and eval.json as the recipes write them, with a few log entries each."""
    write_state(
        root / "sft",
        [
            {"loss": 3.0 / step, "mean_token_accuracy": 1 - 1 / step, "epoch": step / 10, "step": step}
            for step in (1, 2, 3, 4)
        ]
        + [{"train_loss": 1.0, "train_runtime": 9.0, "epoch": 0.4, "step": 4}],  # the closing summary entry
    )
    write_state(root / "reward", [{"loss": 1.4 - 0.3 * i, "epoch": i / 10, "step": 100 * i} for i in (1, 2, 3)])
    accuracy = {"digits": 0.99, "lower": 0.98, "upper": 0.97, "invalid": 0.9, "all": 0.95}
    metrics = {f"accuracy/{k}": v for k, v in accuracy.items()}
    (root / "reward" / "eval_results.json").write_text(json.dumps(metrics, sort_keys=True))  # as save_metrics does
    # PPO: TRL logs `episode` every update; JudgeCallback's entries only get `step` and `epoch` from Trainer.log.
    history = []
    for step in range(1, 9):
        history.append({"objective/scores": step / 10, "objective/kl": step / 100, "episode": 64 * step, "step": step})
        if step % 4 == 0:
            judge = {f"eval/exact_match/{p}": step / 8 - i / 10 for i, p in enumerate(PREFIXES)}
            history.append(
                {**judge, "eval/exact_match": step / 8, "eval/correct": 0.9, "epoch": step / 100, "step": step}
            )
    write_state(root / "ppo", history)
    rows = {p: {"n": 500, "exact_match": 0.3, "correct": 0.95} for p in (*PREFIXES, "all")}
    results = {
        "outputs/sft": {"greedy": {"__": {"n": 500, "exact_match": 0.9, "correct": 0.9}, **rows}, "sampled": rows},
        "outputs/ppo": {"greedy": rows, "sampled": rows},
    }
    (root / "eval.json").write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")


def png_size(path):
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_every_plot_renders_from_the_logs(tmp_path):
    fake_runs(tmp_path / "runs")
    notes = []
    written = render_plots(tmp_path / "runs", tmp_path / "plots", log=notes.append)
    assert {p.name for p in written} == ALL_PLOTS
    assert all(note.startswith("wrote ") for note in notes)
    for path in written:
        width, height = png_size(path)
        assert width >= 400 and height >= 300 and path.stat().st_size > 5000


def test_judge_entries_are_placed_on_the_episode_axis():
    from ppo_double.plots import _episode_of_step

    history = [{"episode": 64 * s, "step": s} for s in (1, 2, 4)] + [{"eval/correct": 1.0, "step": 4}]
    to_episode = _episode_of_step(history)
    assert to_episode(4) == 256 and to_episode(3) == 192  # known step, then the batch-size line
    assert _episode_of_step([{"eval/correct": 1.0, "step": 4}]) is None


def test_missing_stages_are_skipped_with_one_line_each(tmp_path):
    fake_runs(tmp_path / "runs")
    for name in ("ppo", "eval.json"):
        target = tmp_path / "runs" / name
        (target / "trainer_state.json").unlink() if target.is_dir() else target.unlink()
    notes = []
    written = render_plots(tmp_path / "runs", tmp_path / "plots", log=notes.append)
    assert {p.name for p in written} == {"sft_loss.png", "reward_loss.png", "reward_accuracy.png"}
    skipped = [n for n in notes if n.startswith("skipped ")]
    assert len(skipped) == 3 and all("\n" not in n and "not found" in n for n in skipped)
    assert any("ppo_exact_match.png" in n for n in skipped) and any("eval.json" in n for n in skipped)


def test_before_after_from_a_single_model_eval_json(tmp_path):
    """`ppo-double eval --output_json` writes {MODEL: results}: one series of bars, no before/after pair."""
    fake_runs(tmp_path / "runs")
    results = json.loads((tmp_path / "runs" / "eval.json").read_text(encoding="utf-8"))
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"outputs/ppo": results["outputs/ppo"]}, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "runs" / "eval.json").unlink()
    written = render_plots(tmp_path / "runs", tmp_path / "plots", eval_json=single, log=lambda _: None)
    assert (tmp_path / "plots" / "eval_before_after.png") in written
    assert png_size(tmp_path / "plots" / "eval_before_after.png")[0] > 400


def test_entry_point_with_nothing_to_plot_is_an_error_not_a_crash(tmp_path, capsys):
    from ppo_double.plots import main

    assert main(["--runs_dir", str(tmp_path / "none")]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"error: nothing to plot under {str(tmp_path / 'none')!r}: run the stages first (make all)"
    ]
    assert out.count("skipped ") == 6
