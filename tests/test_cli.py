"""The `ppo-double` console command, against the tiny SFT checkpoint (plumbing, not learning)."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from ppo_double.cli import main, show_answer
from ppo_double.evaluate import evaluate, format_comparison, format_table, generate_answers
from ppo_double.modeling import build_policy, load_tokenizer
from ppo_double.task import heldout_prompts


def run_main(argv, capsys, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def expected_lines(model_dir, typed: list[str], **kwargs) -> list[str]:
    """What `generate` must print for prompts typed as `大写:3164`, computed directly with generate_answers."""
    model, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir), load_tokenizer(str(model_dir))
    answers = generate_answers(model, tokenizer, [f"S{t}x2=" for t in typed], **kwargs)
    return [f"{t} -> {show_answer(a)}" for t, a in zip(typed, answers)]


def test_show_answer_strips_eos_and_marks_what_is_odd():
    assert show_answer("陆叁贰捌E") == "陆叁贰捌"
    assert show_answer("陆叁贰捌捌捌捌") == "陆叁贰捌捌捌捌 [no EOS]"
    assert show_answer("E") == "[empty]"


def test_generate_prints_one_line_per_prompt(tiny_sft, capsys):
    code, out, err = run_main(["generate", str(tiny_sft), "大写:3164", "小写:1250", "S数字:4321x2="], capsys)
    assert code == 0 and err == ""
    # The model's own form S数字:4321x2= is accepted and echoed in the short form.
    assert out.splitlines() == expected_lines(tiny_sft, ["大写:3164", "小写:1250", "数字:4321"])


def test_generate_sampling_is_seeded(tiny_sft, capsys):
    argv = ["generate", str(tiny_sft), *["大写:3164"] * 8, "--sample", "--seed", "3"]
    first, second = run_main(argv, capsys)[1], run_main(argv, capsys)[1]
    assert first == second
    assert first.splitlines() == expected_lines(tiny_sft, ["大写:3164"] * 8, sample=True, seed=3)
    assert len(set(first.splitlines())) > 1  # sampled: the barely trained model does not repeat itself 8 times
    greedy = run_main(["generate", str(tiny_sft), "大写:3164", "--greedy"], capsys)[1]
    assert greedy.splitlines() == expected_lines(tiny_sft, ["大写:3164"])


def test_generate_reads_stdin_when_no_prompt_or_dash(tiny_sft, capsys, monkeypatch):
    stdin = "大写:1234\n\n  小写:5678  \n"
    code, out, _ = run_main(["generate", str(tiny_sft)], capsys, stdin=stdin, monkeypatch=monkeypatch)
    assert code == 0
    assert out.splitlines() == expected_lines(tiny_sft, ["大写:1234", "小写:5678"])
    code, out, _ = run_main(["generate", str(tiny_sft), "数字:1111", "-"], capsys, stdin=stdin, monkeypatch=monkeypatch)
    assert code == 0 and [line.split(" -> ")[0] for line in out.splitlines()] == ["数字:1111", "大写:1234", "小写:5678"]


@pytest.mark.parametrize(
    ("prompt", "named"),
    [
        ("繁体:3164", "unknown prefix '繁体'"),
        ("大写:316", "number '316'"),
        ("大写:31645", "number '31645'"),
        ("大写:３１６４", "character '３' at position 3 is not in the model's 42-character vocabulary"),
        ("", "empty prompt"),
        ("大写3164", "malformed prompt"),
    ],
)
def test_bad_prompt_is_one_line_error_exit_2(tiny_sft, capsys, prompt, named):
    code, out, err = run_main(["generate", str(tiny_sft), "大写:1111", prompt], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: prompt 2: ") and named in err


def test_bad_stdin_line_names_the_line(tiny_sft, capsys, monkeypatch):
    code, out, err = run_main(
        ["generate", str(tiny_sft)], capsys, stdin="大写:1234\n大写:12\n", monkeypatch=monkeypatch
    )
    assert code == 2 and out == ""
    assert err.startswith("error: stdin line 2: number '12'") and err.count("\n") == 1


def test_missing_or_broken_model_folder_is_one_line_error(tmp_path, capsys):
    code, _, err = run_main(["generate", str(tmp_path / "nope"), "大写:3164"], capsys)
    assert code == 2 and err.count("\n") == 1 and "no checkpoint folder" in err and "nope" in err
    code, _, err = run_main(["eval", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "no config.json" in err
    (tmp_path / "config.json").write_text("{not json")
    code, _, err = run_main(["generate", str(tmp_path), "大写:3164"], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {tmp_path}/config.json is corrupted")


def test_console_script_end_to_end(tiny_sft):
    """The installed `ppo-double` (`python -m ppo_double.cli` if the venv has no script): a real process, stdin."""
    script = Path(sys.executable).with_name("ppo-double")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ppo_double.cli"]
    ok = subprocess.run([*command, "generate", str(tiny_sft)], input="大写:3164\n", capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == expected_lines(tiny_sft, ["大写:3164"])
    assert ok.stderr == ""  # no progress bars or warnings on a normal run


def test_every_command_has_its_own_help(capsys):
    for command, phrase in [
        ("generate", "PROMPT -> ANSWER"),
        ("eval", "exact_match"),
        ("compare", "before"),
        ("plots", "trainer_state.json"),
        ("summary", "wall_times.tsv"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        out = capsys.readouterr().out
        assert exit_info.value.code == 0 and phrase in out and f"ppo-double {command}" in out and "examples:" in out


def test_eval_prints_the_same_table_as_evaluate(tiny_sft, capsys, tmp_path):
    output = tmp_path / "eval.json"
    code, out, _ = run_main(["eval", str(tiny_sft), "--prompts", "unprefixed", "--output_json", str(output)], capsys)
    assert code == 0
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_sft), load_tokenizer(str(tiny_sft))
    expected = evaluate(model, tokenizer, heldout_prompts(prefixed=False), seed=0)
    assert format_table(expected) in out
    assert json.loads(output.read_text(encoding="utf-8")) == {str(tiny_sft): expected}


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A freshly initialised 1-layer policy folder: answers differently from the tiny SFT."""
    out = tmp_path_factory.mktemp("untrained")
    torch.manual_seed(0)
    build_policy(n_layer=1).save_pretrained(out)
    load_tokenizer().save_pretrained(out)
    return out


def test_compare_prints_the_comparison_and_differing_examples(tiny_sft, untrained, capsys):
    code, out, _ = run_main(["compare", str(untrained), str(tiny_sft), "--prompts", "unprefixed"], capsys)
    assert code == 0
    assert "| mode | prefix | exact match before | exact match after |" in out
    assert "| greedy | __ |" in out and "| sampled | __ |" in out
    assert f"| prompt | A: {untrained} | B: {tiny_sft} |" in out
    examples = [line for line in out.splitlines() if line.startswith("| __:")]
    assert len(examples) == 6
    for line in examples:
        _, prompt, a, b, _ = line.split("|")
        assert a.strip() != b.strip() and a.strip()[-1] in "✓✗" and b.strip()[-1] in "✓✗"


def test_summary_reports_times_table_models_and_next_commands(tiny_sft, untrained, capsys, tmp_path):
    assert run_main(["summary", "--runs_dir", str(tmp_path)], capsys)[0] == 2  # nothing run yet: one error line
    for stage, folder in (("sft", untrained), ("ppo", tiny_sft)):
        shutil.copytree(folder, tmp_path / stage)
    (tmp_path / "wall_times.tsv").write_text("sft\t70\nreward\t63\nppo\t77\neval\t7\n")
    eval_json = tmp_path / "eval.json"
    run_main(["compare", str(tmp_path / "sft"), str(tmp_path / "ppo"), "--output_json", str(eval_json)], capsys)
    results = list(json.loads(eval_json.read_text(encoding="utf-8")).values())

    code, out, err = run_main(["summary", "--runs_dir", str(tmp_path)], capsys)
    assert code == 0 and err == ""
    # sft and reward ran side by side: the total counts the longer of the two
    assert "wall time: sft 70 s and reward 63 s side by side, ppo 77 s, eval 7 s; total 2 min 34 s" in out
    assert format_comparison(*results) in out
    assert f"models (save_pretrained folders): {tmp_path}/sft (SFT policy), {tmp_path}/ppo (PPO policy)" in out
    assert f"ppo-double generate {tmp_path}/ppo 大写:3164" in out and "make plots" in out


def test_every_ppo_double_command_in_the_docs_runs(tiny_sft, tmp_path):
    """The `ppo-double ...` examples of README.md, README.zh-CN.md and docs/*.md, run as written (outputs/ holds
    tiny checkpoints)."""
    import re
    import shlex
    import shutil

    from conftest import ROOT

    pages = "\n".join(p.read_text(encoding="utf-8") for p in [*ROOT.glob("README*.md"), *ROOT.glob("docs/*.md")])
    found = (m.group(1).strip() for m in re.finditer(r"^\$? ?(ppo-double [^#\n]*)", pages, flags=re.MULTILINE))
    commands = list(dict.fromkeys(found))  # each once: the Chinese README repeats the English one's
    assert len(commands) >= 4
    for stage in ("sft", "ppo"):
        shutil.copytree(tiny_sft, tmp_path / "outputs" / stage)
    console_script = Path(sys.executable).parent / "ppo-double"
    for command in commands:
        argv = shlex.split(command)[1:]
        out = subprocess.run([str(console_script), *argv], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, (command, out.stderr)
        assert out.stdout.strip(), command


def test_every_make_target_in_the_docs_exists():
    """`make X` in README.md, README.zh-CN.md and docs/*.md names a target of the Makefile."""
    import re

    from conftest import ROOT

    pages = "\n".join(p.read_text(encoding="utf-8") for p in [*ROOT.glob("README*.md"), *ROOT.glob("docs/*.md")])
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.MULTILINE))
    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", pages))
    assert {"all", "test", "summary", "plots"} <= named
    assert named <= targets, named - targets
