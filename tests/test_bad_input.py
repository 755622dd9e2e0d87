"""The bad-input matrix: each row one wrong input, answered by one line `error: ...` naming the problem and the fix,
a non-zero exit code, and nothing already saved changed (every file under the test's folders hashed before/after).

Recipes run in-process through `ppo_double.errors.run`, exactly what their `__main__` does; prompts go through the
`ppo-double` CLI. One test runs a recipe as a real process, to see the exit code and stderr a user sees.
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, load_recipe
from ppo_double import cli
from ppo_double.errors import run


def snapshot(*folders) -> dict:
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def workspace(tiny_sft, tiny_reward, tmp_path):
    """Saved work that no bad input may touch: an SFT and a reward folder, a finished PPO output folder, a file."""
    shutil.copytree(tiny_sft, tmp_path / "sft")
    shutil.copytree(tiny_reward, tmp_path / "reward")
    shutil.copytree(tiny_sft, tmp_path / "ppo")  # stands for a finished PPO run in the output folder
    (tmp_path / "notes.txt").write_text("not a folder\n")
    return tmp_path


def recipe_error(capsys, stage, argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        run(load_recipe(stage).main, argv)
    return exit_info.value.code, capsys.readouterr().err


def ppo_args(ws, *extra) -> list[str]:
    return ["--sft_model_path", str(ws / "sft"), "--reward_model_path", str(ws / "reward"),
            "--output_dir", str(ws / "ppo"), *extra]  # fmt: skip


def config_args(ws, *extra) -> list[str]:
    """`--config bad.yaml` (written by `bad_yaml`) for any stage, with its outputs inside the workspace."""
    return ["--config", str(ws / "bad.yaml"), *extra]


def bad_yaml(ws) -> None:
    (ws / "bad.yaml").write_text("max_steps: 5\nlearning_rate: [1.0e-3\n")  # an unclosed list


def relabel(folder: Path, labels: list[str]) -> None:
    """Give the classifier in `folder` another set of labels (its config only: the labels are checked first)."""
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = dict(enumerate(labels))
    config["label2id"] = {label: i for i, label in enumerate(labels)}
    (folder / "config.json").write_text(json.dumps(config))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# (row id, stage, arguments given the workspace, how to break the workspace first, what the message must say)
RECIPE_ROWS = [
    ("missing checkpoint folder", "ppo", lambda ws: ppo_args(ws, "--sft_model_path", str(ws / "nope")), None,
     "no checkpoint folder '{ws}/nope': train it first (`make sft`) or check the path"),
    ("reward checkpoint where a policy is expected", "ppo", lambda ws: ppo_args(ws, "--sft_model_path",
     str(ws / "reward")), None, "holds the reward classifier (BERT), not a policy (GPT-2)"),
    ("policy checkpoint where the reward is expected", "ppo", lambda ws: ppo_args(ws, "--reward_model_path",
     str(ws / "sft")), None, "holds a policy (GPT-2), not the reward classifier (BERT)"),
    ("classifier with another set of labels", "ppo", ppo_args, lambda ws: relabel(ws / "reward", ["a", "b"]),
     "holds a BERT classifier with 2 labels (a, b), not a reward classifier"),
    ("unknown reward", "ppo", lambda ws: ppo_args(ws, "--reward", "judge"), None,
     "argument --reward: invalid choice: 'judge'"),
    ("truncated model.safetensors", "ppo", ppo_args, lambda ws: truncate(ws / "sft" / "model.safetensors"),
     "{ws}/sft/model.safetensors is truncated or corrupted"),
    ("garbage model.safetensors", "ppo", ppo_args,
     lambda ws: (ws / "reward" / "model.safetensors").write_bytes(b"\x00" * 100),
     "{ws}/reward/model.safetensors is truncated or corrupted"),
    ("only pickled weights", "ppo", ppo_args,
     lambda ws: (ws / "sft" / "model.safetensors").rename(ws / "sft" / "pytorch_model.bin"),
     "has only pickled weights (pytorch_model.bin), which ppo_double never loads"),
    ("unknown YAML key", "sft", lambda ws: ["--config", str(ws / "bad.yaml"), "--output_dir", str(ws / "out")],
     lambda ws: (ws / "bad.yaml").write_text("max_steps: 5\nlerning_rate: 1.0e-3\n"),
     "unknown key(s) in {ws}/bad.yaml: lerning_rate"),
    ("unknown command-line option", "sft", lambda ws: ["--lerning_rate", "1e-3"], None,
     "unknown argument(s): --lerning_rate 1e-3"),
    ("negative learning rate", "sft", lambda ws: ["--learning_rate", "-0.001"], None,
     "learning_rate must be > 0, got -0.001: fix it in the YAML or with --learning_rate"),
    ("learning rate inf", "sft", lambda ws: ["--learning_rate", "inf"], None,
     "learning_rate must be a finite number, got inf: fix it in the YAML or with --learning_rate"),
    ("learning rate nan in the YAML", "reward", lambda ws: config_args(ws, "--output_dir", str(ws / "out")),
     lambda ws: (ws / "bad.yaml").write_text("learning_rate: .nan\n"),
     "learning_rate must be a finite number, got nan"),
    ("kl_coef inf", "ppo", lambda ws: ppo_args(ws, "--kl_coef", "inf"), None,
     "kl_coef must be a finite number, got inf"),
    ("target_exact_match nan", "ppo", lambda ws: ppo_args(ws, "--target_exact_match", "nan"), None,
     "target_exact_match must be a finite number, got nan"),
    *[(f"config that is not valid YAML ({stage})", stage, config_args, bad_yaml,
       "config file {ws}/bad.yaml is not valid YAML (expected ',' or ']', but got '<stream end>', line 3 column 1): "
       "fix its syntax") for stage in ("sft", "reward", "ppo", "evaluate")],
    ("config that is no mapping", "sft", config_args, lambda ws: (ws / "bad.yaml").write_text("- max_steps: 5\n"),
     "Config file {ws}/bad.yaml must contain a YAML mapping."),
    ("value of the wrong type", "reward", lambda ws: ["--max_steps", "many"], None,
     "argument --max_steps/--max-steps: invalid int value: 'many' (--help lists every option)"),
    ("response_length too short for an answer and E", "ppo", lambda ws: ppo_args(ws, "--response_length", "5"),
     None, "response_length must be >= 6 (an answer is up to 5 numerals and E), got 5"),
    ("response_length past the policy's positions", "ppo", lambda ws: ppo_args(ws, "--response_length", "500"),
     None, "response_length=500 with a 11-token prompt runs past the policy's 128 positions (n_positions in "
     "{ws}/sft/config.json): use at most 117"),
    ("RLOO: max_completion_length past the policy's positions", "rloo",
     lambda ws: ppo_args(ws, "--max_completion_length", "118"), None,
     "max_completion_length=118 with a 11-token prompt runs past the policy's 128 positions"),
    ("max_length too short for a sample", "sft", lambda ws: ["--max_length", "16"], None,
     "max_length must be >= 17 (the longest sample, S__:9999x2=19998E), or null, got 16"),
    ("PPO budget below one batch", "ppo", lambda ws: ppo_args(ws, "--total_episodes", "127"), None,
     "total_episodes=127 is less than one PPO batch (per_device_train_batch_size x gradient_accumulation_steps x "
     "processes = 128): raise --total_episodes to >= 128"),
    ("judge never runs", "ppo", lambda ws: ppo_args(ws, "--total_episodes", "512", "--judge_every", "5"), None,
     "judge_every=5 is more than the run's 4 PPO updates"),
    ("batch that does not split into the mini-batches", "ppo", lambda ws: ppo_args(ws, "--num_mini_batches", "3"),
     None, "(per_device_train_batch_size x gradient_accumulation_steps = 128) does not split into num_mini_batches=3"),
    ("output_dir is a file", "sft", lambda ws: ["--output_dir", str(ws / "notes.txt")], None,
     "output_dir '{ws}/notes.txt' is a file, not a folder: pass another --output_dir"),
    ("resume from a folder that is no checkpoint", "sft",
     lambda ws: ["--output_dir", str(ws / "out"), "--resume_from_checkpoint", str(ws / "sft")], None,
     "is no complete checkpoint"),
    ("GRPO: reward checkpoint where a policy is expected", "grpo", lambda ws: ppo_args(ws, "--sft_model_path",
     str(ws / "reward")), None, "holds the reward classifier (BERT), not a policy (GPT-2)"),
    ("GRPO: a batch that does not hold whole groups", "grpo", lambda ws: ppo_args(ws, "--num_generations", "7"),
     None, "generation_batch_size (64) must be divisible by num_generations (7)"),
    ("GRPO: num_generations 0 (GRPOConfig divides by it)", "grpo",
     lambda ws: ppo_args(ws, "--num_generations", "0"), None,
     "num_generations must be >= 2 (GRPO and RLOO compare the completions of one prompt), got 0"),
    ("RLOO: one completion per prompt", "rloo", lambda ws: ppo_args(ws, "--num_generations", "1"), None,
     "num_generations must be >= 2 (GRPO and RLOO compare the completions of one prompt), got 1"),
    ("RLOO: max_completion_length 0", "rloo", lambda ws: ppo_args(ws, "--max_completion_length", "0"), None,
     "max_completion_length must be >= 6 (an answer is up to 5 numerals and E), got 0"),
]  # fmt: skip


@pytest.mark.parametrize(("stage", "argv", "damage", "message"), [r[1:] for r in RECIPE_ROWS],
                         ids=[r[0] for r in RECIPE_ROWS])  # fmt: skip
def test_recipe_rejects_bad_input(workspace, capsys, stage, argv, damage, message):
    if damage:
        damage(workspace)
    before = snapshot(workspace)
    code, err = recipe_error(capsys, stage, argv(workspace))
    assert code == 2
    assert err.endswith("\n") and err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.splitlines()[-1]]
    assert message.format(ws=workspace) in err
    assert snapshot(workspace) == before, "a rejected run changed saved files"


PROMPT_ROWS = [
    ("character outside the vocabulary", "大写:12a4", "character 'a' at position 5 is not in the model's 42-character"),
    ("empty prompt", "", "empty prompt: expected PREFIX:NNNN"),
    ("unknown prefix", "英文:3164", "unknown prefix '英文'"),
    ("3-digit number", "大写:316", "number '316' in '大写:316' must have exactly 4 digits"),
    ("5-digit number", "大写:31640", "number '31640' in '大写:31640' must have exactly 4 digits"),
    ("signed number", "大写:-3164", "number '-3164' in '大写:-3164' must have exactly 4 digits (1000-9999), no sign"),
]


@pytest.mark.parametrize(("prompt", "message"), [r[1:] for r in PROMPT_ROWS], ids=[r[0] for r in PROMPT_ROWS])
def test_cli_rejects_bad_prompt(workspace, capsys, prompt, message):
    before = snapshot(workspace)
    code = cli.main(["generate", str(workspace / "ppo"), "大写:1111", prompt])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: prompt 2: ") and message in err
    assert snapshot(workspace) == before


@pytest.mark.parametrize(
    ("folder", "message"),
    [("nope", "no checkpoint folder"), ("reward", "holds the reward classifier (BERT), not a policy (GPT-2)")],
)
def test_cli_and_evaluate_reject_a_bad_model_folder(workspace, capsys, folder, message):
    assert cli.main(["generate", str(workspace / folder), "大写:1111"]) == 2
    assert message in capsys.readouterr().err
    code, err = recipe_error(capsys, "evaluate", ["--model", str(workspace / folder)])
    assert code == 2 and message in err.splitlines()[-1]


def test_a_real_process_exits_2_with_one_error_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "sft.py"), "--learning_rate", "-1", "--output_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "error: learning_rate must be > 0, got -1.0: fix it in the YAML or with --learning_rate"
    )
