"""The pipeline's shape, in one place: SFT and reward side by side, then the RL stage, then the before/after eval.

    python -m ppo_double.pipeline                      # what `make all` runs: outputs/{sft,reward,ppo,eval.json}
    python -m ppo_double.pipeline --seed 43 --output_dir outputs/seed43 --algorithm grpo

`make all` and the bench (bench/run.py, per seed and variant) both run it. Every stage is its recipe as its own
process, as the Makefile's targets run them. SFT and reward do not depend on each other, so they train at once, each
on half the cores: these small models use a second thread poorly. A stage that fails ends the pipeline (its exit code
is the pipeline's), so a stage that fails its own check (ppo_double.checks) is never the next one's input.
"""

import argparse
import contextlib
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .summary import ALGORITHMS, SIDE_BY_SIDE, folders, summarize

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("sft", "reward", "rl", "eval")
# What the Makefile passes `accelerate launch` without a config file (else it lists the defaults it assumed). The launch
# is kept for one process too: it runs the recipe on OMP_NUM_THREADS (1 when unset), as `make ppo` does; started as a
# plain script, PPO would train on 2 threads, with other numerics (seed 42's greedy correct share then dipped to 90 %).
LAUNCH_ARGS = ("--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")
LOG_TAIL_LINES = 20


def half_cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) // 2)


def stage_commands(
    paths: dict[str, Path],
    seed: int | None = None,
    algorithm: str = "ppo",
    overrides: dict[str, list[str]] | None = None,
    accelerate_config: str | None = None,
    processes: int = 1,
) -> dict[str, list[str]]:
    """Each stage's command, reading and writing `paths` (see `folders`), with `overrides` appended per stage
    (argparse: the last value wins). `seed` sets every stage's seed and data seed; None keeps the YAMLs'. The RL stage
    runs on `processes` connected processes (DDP; gloo without a GPU)."""
    python, accelerate = sys.executable, str(Path(sys.executable).parent / "accelerate")
    sft, reward, rl, eval_json = (str(paths[stage]) for stage in STAGES)
    seeded = [] if seed is None else ["--seed", str(seed), "--data_seed", str(seed)]
    launch = ["--config_file", accelerate_config] if accelerate_config else list(LAUNCH_ARGS)
    if processes != 1:
        launch = [*launch, "--num_processes", str(processes), *(() if accelerate_config else ("--multi_gpu",))]
    commands = {
        "sft": [python, "recipes/sft.py", *seeded, "--output_dir", sft],
        "reward": [python, "recipes/reward.py", *seeded, "--output_dir", reward],
        "rl": [accelerate, "launch", *launch, f"recipes/{algorithm}.py", *seeded[:2], "--output_dir", rl]
        + ["--sft_model_path", sft, "--reward_model_path", reward],
        "eval": [python, "recipes/evaluate.py", "--model", rl, "--baseline", sft, "--output_json", eval_json],
    }
    return {stage: command + list((overrides or {}).get(stage, [])) for stage, command in commands.items()}


def run_stage(command: list[str], log: Path | None = None, threads: int | None = None) -> dict:
    """Run `command` from the repo root, its output to `log` (None: this console); returns the exit code, wall seconds
    and peak RSS in GiB (`ru_maxrss` of `wait4`: the largest of the child and its waited-for descendants, such as the
    python that `accelerate launch` starts)."""
    env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") if log else contextlib.nullcontext() as sink:  # None: inherit the console
        process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    wall = time.perf_counter() - start
    return {"returncode": process.returncode, "wall_s": wall, "peak_rss_gib": usage.ru_maxrss / 1024**2}


def pinned(commands: dict[str, list[str]], stage: str, threads: int | None) -> list[str]:
    """`stage`'s command; with pinned `threads`, the RL stage's judge is pinned to them too (unpinned, it takes the
    process's share of the machine's cores, as for `make all`)."""
    return [*commands[stage], "--judge_threads", str(threads)] if threads and stage == "rl" else commands[stage]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def run(
    commands: dict[str, list[str]],
    logs: dict[str, Path | None],
    threads: int | None = None,
    skip: tuple[str, ...] = (),
    say=print,
) -> dict[str, dict]:
    """Run the stages of `commands` in the pipeline's order, each stage's output to `logs[stage]` (None: the console);
    stops after the first that fails. `threads`: torch threads for every stage (None: half the cores each for SFT and
    reward, torch's default for the rest). Stages in `skip` are not run (their output is already there). Returns
    {stage: run_stage's numbers} for the stages run."""
    done: dict[str, dict] = {}
    steps = [[s for s in SIDE_BY_SIDE if s in commands and s not in skip]]
    steps += [[s] for s in commands if s not in SIDE_BY_SIDE and s not in skip]
    for names in filter(None, steps):
        width = threads or (half_cores() if len(names) > 1 else None)
        with ThreadPoolExecutor(len(names)) as pool:
            ran = pool.map(lambda s, width=width: run_stage(pinned(commands, s, threads), logs.get(s), width), names)
            done.update(zip(names, ran))
        failed = [s for s in names if done[s]["returncode"] != 0]
        for stage in failed:
            tail = f"; last lines of {logs[stage]}:\n{log_tail(logs[stage])}" if logs.get(stage) else ""
            say(f"error: the {stage} stage failed (exit {done[stage]['returncode']}){tail}")
        if failed:
            break
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs", help="where the stages write (default: outputs)")
    parser.add_argument("--seed", type=int, help="every stage's seed (default: the YAMLs', 42)")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="ppo", help="the RL stage (default: ppo)")
    parser.add_argument("--accelerate_config", help="`accelerate launch --config_file` for the RL stage")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = folders(out, args.algorithm)
    commands = stage_commands(paths, args.seed, args.algorithm, accelerate_config=args.accelerate_config)
    # The reward's output goes to its log (two progress bars on one console garble each other); its table is
    # printed once it is done.
    logs = {"reward": out / "reward.log"}
    print(f"\n==> sft, and reward alongside it ({half_cores()} thread(s) each; reward log: {logs['reward']})")
    side = run({s: commands[s] for s in SIDE_BY_SIDE}, logs)
    times = {stage: result["wall_s"] for stage, result in side.items()}
    code = next((r["returncode"] for r in side.values() if r["returncode"]), 0)
    if not code:
        print("\n==> reward")
        table = log_tail(logs["reward"], lines=10_000).split("\n| class", 1)
        print("| class" + table[1] if len(table) == 2 else log_tail(logs["reward"]))
        for stage in ("rl", "eval"):
            print(f"\n==> {args.algorithm if stage == 'rl' else stage}")
            result = run({stage: commands[stage]}, {})[stage]
            times[stage] = result["wall_s"]
            if code := result["returncode"]:
                break
    names = {"rl": args.algorithm}
    lines = (f"{names.get(stage, stage)}\t{round(seconds)}\n" for stage, seconds in times.items())
    (out / "wall_times.tsv").write_text("".join(lines), encoding="utf-8")  # for `ppo-double summary`
    if code:
        return code
    print("\n==> summary")
    print(summarize(str(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
