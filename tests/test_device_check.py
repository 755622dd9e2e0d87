"""scripts/device_check.sh, run here with a stand-in for Python (no GPU, no training): every step gets a row in
device_check.md with what it reached, and a failed step is reported while the others go on."""

import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "device_check.sh"

# The stand-in: `-m accelerate...` writes the final folder a stage would (none for a config named in FAIL),
# `recipes/evaluate.py` its results file, `-c` (a load check, the deepspeed look-up) succeeds, and `-` (the table)
# runs in the real Python.
STAND_IN = """#!/bin/bash
case $1 in
-) exec "$REAL_PYTHON" "$@" ;;
-c) [[ $2 == *find_spec* ]] || echo "$3 214016 parameters torch.float32" ;;
recipes/evaluate.py)
    echo '{"m": {"greedy": {"数字": {"exact_match": 0.5}, "all": {"exact_match": 0.5}}}}' > "${@: -1}" ;;
-m)
    echo "$@" >> "$CALLS"
    [[ -n $FAIL && $* == *"/$FAIL.yaml"* ]] && { echo "CUDA error: broken" >&2; exit 1; }
    args=("$@")
    for ((i = 0; i < $#; i++)); do [ "${args[i]}" = --output_dir ] && out=${args[i + 1]}; done
    mkdir -p "$out"
    if [[ $* == *reward.py* ]]; then
        echo '{"accuracy/digits": 1.0, "accuracy/invalid": 0.796}' > "$out/eval_results.json"
    else
        echo '{"greedy": {"数字": {"exact_match": 1.0}, "小写": {"exact_match": 0.998}}}' > "$out/eval_results.json"
    fi ;;
esac
"""


def test_script_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_step_gets_a_row_and_a_failure_does_not_stop_the_rest(tmp_path):
    python = tmp_path / "python"
    python.write_text(STAND_IN)
    python.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(python), "REAL_PYTHON": sys.executable, "FAIL": "zero3",
           "CALLS": str(tmp_path / "calls")}  # fmt: skip
    out = tmp_path / "check"
    result = subprocess.run(["bash", str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr  # the zero3 run failed
    table = (out / "device_check.md").read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [tuple(cell.strip() for cell in row.split("|")[1:3]) for row in rows] == [
        ("single", "sft"), ("single", "load"), ("single", "evaluate"), ("single", "reward"), ("single", "load"),
        ("single", "ppo"), ("single", "load"), ("single", "evaluate"),
        ("zero2", "ppo"), ("zero2", "load"), ("zero2", "evaluate"),
        ("zero3", "ppo"), ("zero3", "load"),
        ("fsdp", "sft"), ("fsdp", "load"), ("fsdp", "evaluate"),
    ]  # fmt: skip
    assert "| single | sft | 0 |" in table and "数字 100.0 / 小写 99.8 |" in rows[0]
    assert rows[3].endswith("accuracy digits 100.0 / invalid 79.6 |")
    assert rows[1].endswith("| AutoModelForCausalLM 214016 parameters torch.float32 |")  # the load check's line
    assert rows[4].endswith("| AutoModelForSequenceClassification 214016 parameters torch.float32 |")  # its own
    assert rows[2].endswith("| 数字 50.0 |")  # recipes/evaluate.py's results
    assert "| zero3 | ppo | 1 |" in table and "| zero3 | load | skipped: no final folder |" in table
    assert "## zero3 ppo failed" in table and "CUDA error: broken" in table
    calls = (tmp_path / "calls").read_text().splitlines()
    zero2 = next(call for call in calls if "zero2.yaml" in call)
    for flags in (
        "--num_processes 1",
        "--total_episodes 4096",
        "--min_exact_match 0 --min_sampled_exact_match 0",
        f"--sft_model_path {out}/sft --reward_model_path {out}/reward --output_dir {out}/ppo-zero2",
    ):
        assert flags in zero2  # fmt: skip
    assert all(call.endswith("--bf16 true") for call in calls)
    fsdp = next(call for call in calls if "fsdp.yaml" in call)
    assert "recipes/sft.py" in fsdp and f"--output_dir {out}/sft-fsdp" in fsdp
