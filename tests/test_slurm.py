"""recipes/slurm/*.sbatch: valid bash, accelerate flags that exist, and, run against stand-ins for srun, scontrol,
scancel and accelerate (no SLURM here), the launch each node gets and the stop -> requeue on SIGTERM."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from accelerate.commands.launch import _validate_launch_command, launch_command_parser

from conftest import ROOT

SCRIPTS = sorted((ROOT / "recipes" / "slurm").glob("*.sbatch"))
ACCELERATE = ROOT / ".venv" / "bin" / "accelerate"

# Stand-ins on PATH. srun runs its command once per node with SLURM_PROCID set; accelerate records its arguments and
# PID, writes the final folder it is given on rank 0, and with SLOW set trains until SIGTERM, then "saves" and exits
# 143; scancel sends SIGTERM to the recorded launchers; scontrol lists two hosts and records a requeue.
STUBS = {
    "srun": """
while [[ $1 == --* ]]; do shift; done
pids=()
for ((rank = 0; rank < SLURM_NNODES; rank++)); do SLURM_PROCID=$rank "$@" & pids+=($!); done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
""",
    "accelerate": """
echo $$ > "$STUB/pid-$SLURM_PROCID"
printf '%s\\n' "${@:2}" > "$STUB/args-$SLURM_PROCID"
if [ -n "${SLOW:-}" ]; then
    trap 'kill $sleeper; sleep 0.2; echo "saved $SLURM_PROCID"; exit 143' TERM
    sleep 60 & sleeper=$!
    touch "$STUB/ready-$SLURM_PROCID"
    wait
fi
for ((i = 2; i <= $#; i++)); do
    if [ "${!i}" = --output_dir ] && [ "$SLURM_PROCID" = 0 ]; then
        j=$((i + 1)); mkdir -p "${!j}"; touch "${!j}/model.safetensors"
    fi
done
""",
    "scancel": 'for f in "$STUB"/pid-*; do kill -TERM "$(cat "$f")"; done; echo "$@" >> "$STUB/scancel"',
    "scontrol": 'case $1 in show) printf "node-a\\nnode-b\\n" ;; requeue) echo "$2" >> "$STUB/requeued" ;; esac',
    "python": 'echo "$@" >> "$STUB/python"',
}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_valid_bash(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def launch_flags(script: Path) -> set[str]:
    """The flags the script gives `accelerate launch` (its single-quoted `bash -c` command)."""
    command = re.search(r"exec accelerate launch(.*?)'", script.read_text(), re.S)[1]
    return set(re.findall(r"--[a-z_]+", command))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_accelerate_knows_every_flag(script):
    helped = subprocess.run([str(ACCELERATE), "launch", "--help"], capture_output=True, text=True, check=True).stdout
    flags = launch_flags(script)
    assert {"--config_file", "--num_machines", "--machine_rank", "--num_processes", "--main_process_ip",
            "--main_process_port"} <= flags  # fmt: skip
    assert {flag for flag in flags if not re.search(rf"{flag}\b", helped)} == set()
    text = script.read_text()
    for directive in ("--ntasks-per-node=1", "--requeue", "--signal=B:TERM@", "--open-mode=append"):
        assert f"#SBATCH {directive}" in text


def sbatch(tmp_path, script, *args, **env) -> subprocess.Popen:
    """Start `script` as SLURM would on a 2-node allocation of job 1234, with the stand-ins on PATH."""
    stub = tmp_path / "stub"
    (stub / "bin").mkdir(parents=True, exist_ok=True)
    for name, body in STUBS.items():
        (stub / "bin" / name).write_text(f"#!/bin/bash\n{body}")
        (stub / "bin" / name).chmod(0o755)
    (tmp_path / "venv" / "bin").mkdir(parents=True, exist_ok=True)
    (tmp_path / "venv" / "bin" / "activate").write_text("")
    slurm = {"SLURM_SUBMIT_DIR": str(ROOT), "SLURM_JOB_ID": "1234", "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "8",
             "SLURM_JOB_NODELIST": "node-[a-b]"}  # fmt: skip
    env = {**os.environ, **slurm, "STUB": str(stub), "VENV": str(tmp_path / "venv"), **env}
    env["PATH"] = f"{stub / 'bin'}:{env['PATH']}"
    return subprocess.Popen(["bash", str(script), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip


def launched(stub: Path, rank: int):
    """The arguments the stand-in accelerate got on node `rank`, as `accelerate launch` itself resolves them."""
    argv = (stub / f"args-{rank}").read_text().splitlines()
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    return args


def test_each_node_launches_its_rank(tmp_path):
    proc = sbatch(tmp_path, ROOT / "recipes/slurm/ppo.sbatch", "--output_dir", str(tmp_path / "ppo"), CONFIG="zero2")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    for rank in (0, 1):
        args = launched(tmp_path / "stub", rank)
        assert (args.num_machines, args.machine_rank, args.num_processes) == (2, rank, 16)
        assert (args.main_process_ip, args.main_process_port) == ("node-a", 20000 + 1234)
        assert args.use_deepspeed and args.deepspeed_multinode_launcher == "standard"
        assert args.training_script == "recipes/ppo.py"
        assert args.training_script_args == ["--output_dir", str(tmp_path / "ppo")]
    assert not (tmp_path / "stub" / "requeued").exists()


def test_sigterm_saves_then_requeues(tmp_path):
    stub = tmp_path / "stub"
    proc = sbatch(tmp_path, ROOT / "recipes/slurm/ppo.sbatch", SLOW="1")
    deadline = time.monotonic() + 30
    while not all((stub / f"ready-{rank}").exists() for rank in (0, 1)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what --signal=B:TERM@120 sends the batch shell before the time limit
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, out
    assert "saved 0" in out and "saved 1" in out, "a launcher was stopped before it saved"
    assert out.index("ppo exited 143") > max(out.index("saved 0"), out.index("saved 1")), "it did not wait for saves"
    assert (stub / "scancel").read_text() == "--signal=TERM 1234\n"
    assert (stub / "requeued").read_text() == "1234\n"


def test_pipeline_runs_each_stage_once(tmp_path):
    out, stub = tmp_path / "out", tmp_path / "stub"
    first = sbatch(tmp_path, ROOT / "recipes/slurm/pipeline.sbatch", "--seed", "43", OUT=str(out))
    log, _ = first.communicate(timeout=60)
    assert first.returncode == 0, log
    ppo = launched(stub, 0)  # the last stage launched
    assert ppo.training_script == "recipes/ppo.py"
    assert ppo.training_script_args == ["--output_dir", f"{out}/ppo", "--sft_model_path", f"{out}/sft",
                                        "--reward_model_path", f"{out}/reward", "--seed", "43"]  # fmt: skip
    assert (stub / "python").read_text() == (
        f"recipes/evaluate.py --model {out}/ppo --baseline {out}/sft --output_json {out}/eval.json\n"
    )
    (stub / "args-0").unlink()
    again = sbatch(tmp_path, ROOT / "recipes/slurm/pipeline.sbatch", OUT=str(out))
    log, _ = again.communicate(timeout=60)
    assert again.returncode == 0 and log.count("exists, skipped") == 3, log
    assert not (stub / "args-0").exists(), "a finished stage was launched again"
