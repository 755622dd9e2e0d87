"""ppo_double/summary.py: the run summary names the RL stage's own folder, and the pipeline and the CLI reach it
without importing each other."""

import shutil

from conftest import ROOT
from ppo_double.summary import summarize


def test_a_grpo_run_is_summarized_under_its_own_folder(tiny_sft, tmp_path):
    for stage in ("sft", "grpo"):
        shutil.copytree(tiny_sft, tmp_path / stage)
    (tmp_path / "wall_times.tsv").write_text("sft\t70\nreward\t63\ngrpo\t77\neval\t7\n")
    text = summarize(str(tmp_path))
    assert "grpo 77 s" in text and f"{tmp_path}/grpo (GRPO policy)" in text
    assert f"ppo-double generate {tmp_path}/grpo " in text and f"compare {tmp_path}/sft {tmp_path}/grpo" in text
    assert "/ppo" not in text


def test_cli_and_pipeline_do_not_import_each_other():
    for module, other in (("pipeline", "cli"), ("cli", "pipeline")):
        source = (ROOT / "ppo_double" / f"{module}.py").read_text(encoding="utf-8")
        assert f"from .{other} import" not in source and f"ppo_double.{other}" not in source
