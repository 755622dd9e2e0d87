#!/usr/bin/env bash
# GPU checks in one command, for a machine with one GPU (3 minutes on an H200, docs/device_check.md; BUDGET, 540 s,
# caps it):
#
#   bash scripts/device_check.sh OUTDIR
#
# 1. the pipeline under recipes/accelerate/single_gpu.yaml: sft and reward side by side, then ppo (OUTDIR/ppo-single);
# 2. PPO with one process under zero2.yaml and zero3.yaml (OUTDIR/ppo-CONFIG), side by side with 1.'s ppo and with
#    SFT under fsdp.yaml (OUTDIR/sft-fsdp; PPO refuses FSDP: ppo_double/distributed.py);
# 3. each final folder loaded with transformers' Auto class, and each policy judged by recipes/evaluate.py.
# PPO runs 4096 episodes, and every floor is off: this checks that each config trains and saves a loadable model,
# and the table shows what each reached. OUTDIR/device_check.md gets one row per step (exit code, wall seconds,
# greedy exact match per prefix) and the end of the log of each failed step; OUTDIR/logs/ has every log. Each step
# runs under `timeout`, a failed step does not stop the others, and the script exits 1 if any step failed.
#
# Python: .venv (created by `make install` if missing), or PYTHON=python3 with the packages already on its path (a
# machine with no package registry). DeepSpeed is installed into it if missing.
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: bash scripts/device_check.sh OUTDIR" >&2; exit 2; }
mkdir -p "$1/logs" || exit
OUT=$(cd "$1" && pwd)
cd "$(dirname "$0")/.." || exit
BUDGET=${BUDGET:-540}  # seconds for all steps: a step that would start later is skipped, one running is cut short
START=$(date +%s)
ROWS=$OUT/logs/rows.tsv
: > "$ROWS"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # ppo_double without an install too

if [ -z "${PYTHON:-}" ]; then
    [ -x .venv/bin/python ] || make install || exit
    PYTHON=.venv/bin/python
fi
"$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("deepspeed") is None)' ||
    "$PYTHON" -m pip install -q deepspeed==0.19.8 ||
    echo "deepspeed could not be installed: the zero2 and zero3 rows will fail" >&2

ACCELERATE=("$PYTHON" -m accelerate.commands.launch)
SINGLE_GPU=(--config_file recipes/accelerate/single_gpu.yaml)
NO_FLOORS_SFT=(--min_sampled_correct 0)
NO_FLOORS_REWARD=(--min_clean_accuracy 0 --min_invalid_caught 0 --min_kind_caught 0)
NO_FLOORS_RL=(--min_exact_match 0 --min_sampled_exact_match 0)
# shellcheck disable=SC2016  # expanded by python, not here
LOAD='import sys, transformers
model = getattr(transformers, sys.argv[1]).from_pretrained(sys.argv[2], use_safetensors=True)
print(type(model).__name__, sum(p.numel() for p in model.parameters()), "parameters", model.dtype)'

row() {  # row ORDER CONFIG STAGE EXIT SECONDS RESULT_JSON LOG
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$ROWS"
}

step() {  # step ORDER CONFIG STAGE CAP RESULT_JSON COMMAND...: run it under a timeout, log it, add its row
    local order=$1 config=$2 stage=$3 cap=$4 json=$5 log="$OUT/logs/$1-$2-$3.log" left begin rc
    shift 5
    left=$((BUDGET - ($(date +%s) - START)))
    if [ "$left" -lt 30 ]; then
        row "$order" "$config" "$stage" "skipped: out of time" 0 "" ""
        return 1
    fi
    [ "$cap" -le "$left" ] || cap=$left
    echo "$(date +%T) $config $stage: start (timeout ${cap} s)"
    begin=$(date +%s)
    timeout -k 30 "$cap" "$@" > "$log" 2>&1
    rc=$?
    row "$order" "$config" "$stage" "$rc" "$(($(date +%s) - begin))" "$json" "$log"
    echo "$(date +%T) $config $stage: exit $rc"
    return "$rc"
}

check() {  # check ORDER CONFIG FOLDER AUTO_CLASS: load the final folder; judge it if it is a policy
    local order=$1 config=$2 folder=$3 auto=$4
    if [ ! -d "$folder" ]; then
        row "$order" "$config" load "skipped: no final folder" 0 "" ""
        return 1
    fi
    step "$order" "$config" load 120 "" "$PYTHON" -c "$LOAD" "$auto" "$folder"
    [ "$auto" = AutoModelForCausalLM ] || return
    step "$((order + 1))" "$config" evaluate 180 "$folder-eval.json" \
        "$PYTHON" recipes/evaluate.py --model "$folder" --samples 1 --output_json "$folder-eval.json"
}

ppo() {  # ppo ORDER CONFIG PORT: PPO from OUTDIR/sft with OUTDIR/reward into OUTDIR/ppo-CONFIG, then check it
    local order=$1 config=$2 port=$3 launch=("${SINGLE_GPU[@]}")
    # one process under the config; each its own port, since they run side by side
    [ "$config" = single ] || launch=(--config_file "recipes/accelerate/$config.yaml" --num_processes 1
        --main_process_port "$port")
    step "$order" "$config" ppo 300 "$OUT/ppo-$config/eval_results.json" "${ACCELERATE[@]}" "${launch[@]}" \
        recipes/ppo.py --sft_model_path "$OUT/sft" --reward_model_path "$OUT/reward" --output_dir "$OUT/ppo-$config" \
        --total_episodes 4096 "${NO_FLOORS_RL[@]}" --bf16 true
    check "$((order + 1))" "$config" "$OUT/ppo-$config" AutoModelForCausalLM
}

# 1. sft and reward side by side, each then loaded (and the SFT judged)
{
    step 10 single sft 240 "$OUT/sft/eval_results.json" "${ACCELERATE[@]}" "${SINGLE_GPU[@]}" recipes/sft.py \
        --output_dir "$OUT/sft" "${NO_FLOORS_SFT[@]}" --bf16 true
    check 11 single "$OUT/sft" AutoModelForCausalLM
} &
{
    step 20 single reward 240 "$OUT/reward/eval_results.json" "${ACCELERATE[@]}" "${SINGLE_GPU[@]}" recipes/reward.py \
        --output_dir "$OUT/reward" "${NO_FLOORS_REWARD[@]}" --bf16 true
    check 21 single "$OUT/reward" AutoModelForSequenceClassification
} &
wait
# 2. PPO under each config and SFT under FSDP, side by side (each its own port), each then loaded and judged
ppo 30 single 0 &
ppo 40 zero2 29511 &
ppo 50 zero3 29512 &
{
    step 60 fsdp sft 240 "$OUT/sft-fsdp/eval_results.json" "${ACCELERATE[@]}" \
        --config_file recipes/accelerate/fsdp.yaml --num_processes 1 --main_process_port 29513 \
        recipes/sft.py --output_dir "$OUT/sft-fsdp" "${NO_FLOORS_SFT[@]}" --bf16 true
    check 61 fsdp "$OUT/sft-fsdp" AutoModelForCausalLM
} &
wait

# OUTDIR/device_check.md: the table, sorted by step, and the end of each failed step's log
rm -f "$OUT/device_check.md"
"$PYTHON" - "$ROWS" "$OUT/device_check.md" "$BUDGET" "$(($(date +%s) - START))" <<'PY'
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

rows_file, md_file, budget, elapsed = sys.argv[1:]


def result(path: str) -> str:
    """Greedy exact match per prefix (a policy), or accuracy per class (the reward), from a results file."""
    if not path or not Path(path).is_file():
        return "—"
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if "greedy" not in data and len(data) == 1:  # recipes/evaluate.py: {model folder: results}
        data = next(iter(data.values()))
    if "greedy" in data:
        return " / ".join(f"{p} {100 * m['exact_match']:.1f}" for p, m in data["greedy"].items() if p != "all")
    names = ("digits", "lower", "upper", "invalid")
    return "accuracy " + " / ".join(f"{n} {100 * data[f'accuracy/{n}']:.1f}" for n in names if f"accuracy/{n}" in data)


def version(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"no {name}"


def run(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


rows = sorted((line.split("\t") for line in Path(rows_file).read_text().splitlines()), key=lambda r: int(r[0]))
versions = ", ".join(map(version, ("torch", "transformers", "trl", "accelerate", "deepspeed")))
lines = [
    "# Device check", "",
    f"GPU: {run('nvidia-smi', '--query-gpu=name,memory.total', '--format=csv,noheader') or 'none seen'}; "
    f"commit {run('git', 'rev-parse', '--short', 'HEAD')}; {versions}. "
    f"`bash scripts/device_check.sh`, {elapsed} s of a {budget} s budget. sft and reward ran side by side, then the "
    "three PPO runs and the FSDP SFT side by side (one process each), so the wall times are not one run's alone. "
    "PPO: 4096 episodes, floors off. Exact match in %, greedy, per prefix (the stage's own eval_results.json; "
    "`evaluate`: recipes/evaluate.py on the held-out test numbers).", "",
    "| config | stage | exit code | wall seconds | greedy exact match per prefix |",
    "|---|---|---|---|---|",
]
failed = []
for _, config, stage, code, seconds, path, log in rows:
    note = {"124": " (timeout)", "137": " (killed)", "143": " (SIGTERM)"}.get(code, "")
    loaded = stage == "load" and code == "0"  # the load check prints the class, its parameters and dtype
    shown = Path(log).read_text().strip().splitlines()[-1] if loaded else result(path)
    lines.append(f"| {config} | {stage} | {code}{note} | {seconds} | {shown} |")
    if code != "0":
        failed.append((config, stage, log))
for config, stage, log in failed:
    tail = Path(log).read_text(errors="replace").splitlines()[-15:] if log and Path(log).is_file() else ["(no log)"]
    lines += ["", f"## {config} {stage} failed", "", "```", *tail, "```"]
Path(md_file).write_text("\n".join(lines) + "\n", encoding="utf-8")
print("\n".join(lines))
sys.exit(1 if failed else 0)
PY
status=$?
[ -f "$OUT/device_check.md" ] || { echo "no table written; the steps were:" >&2; cat "$ROWS" >&2; exit 1; }
exit "$status"
