"""PPO, GRPO or RLOO? Each from the same SFT and reward checkpoints, judged by the same rule, per seed; and the
sweep behind GRPO's and RLOO's defaults.

    make bench ARGS="--algorithms"                                  # ppo, grpo, rloo x seeds 42 43 44
    make bench ARGS="--algorithms --readme README.md"               # also write the table into the README
    python bench/algorithms.py --seeds 42 --algorithms grpo rloo    # a subset
    python bench/algorithms.py --sweep --seeds 42                   # the settings tried for GRPO's and RLOO's defaults

Per seed, SFT and reward run once (bench.py's stage commands) into `<output_dir>/seed<S>/`, unless complete ones are
already there; then each algorithm runs on its recipe's defaults as its own process (`accelerate launch
recipes/<algorithm>.py`) from them. PPO stops at its stop rule (TARGET, ppo.yaml's): greedy >= 99.5 % and sampled
(T=1) >= 98.5 % exact match for every prefix on the validation numbers and sampled answers right doubles as often
as at the start, on two judgements in a row; GRPO and RLOO run their whole lr decay (their YAML's reason), and the
table gives when the same rule first held in their judge's history. Per run, from the run's `eval_results.json`
(test numbers; `judged_during_training` for the validation history): completions and seconds to the target,
completions per second (training and judging), greedy and sampled exact match per prefix, the sampled share of
correct doubles (any system; PRECISE_SAMPLES answers per test prompt, for the run and for its SFT start), the lowest
greedy share of correct doubles while training, and peak RSS.
Writes `algorithms.md` / `algorithms.json` under `--output_dir`, and a figure (`--figure`). `--sweep` writes
`sweep.md` / `sweep.json` instead. Runs of earlier invocations into the same `--output_dir` that were not run again
(other seeds, algorithms or `--rows`) stay in the tables. Wall times measured on a busy machine are not comparable
across runs: say so.
"""

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import bench
from ppo_double.callbacks import holds_target
from ppo_double.checkpoints import load_policy
from ppo_double.checks import NO_FLOORS
from ppo_double.evaluate import evaluate
from ppo_double.plots import plot_algorithms
from ppo_double.task import PREFIXES, heldout_prompts

ALGORITHMS = ("ppo", "grpo", "rloo")
README_MARKERS = ("<!-- algorithms:start -->", "<!-- algorithms:end -->")
PRECISE_SAMPLES = 16  # sampled answers per test prompt for the correct-double shares: 24 000 per policy, SE ~0.05 pt
TARGET = {
    "target_exact_match": 0.995,
    "target_sampled_exact_match": 0.985,
    "target_keep_correct": True,
    "target_correct_margin": 0.002,
    "target_patience": 2,
}


def sweep_args(changes: str) -> list[str]:
    """`changes` (flag value ...) over the YAML's values when the sweep ran: a constant lr, no KL anchor, and the
    run stopped by TARGET's rule."""
    words = changes.split()
    merged = {"--lr_scheduler_type": "constant", "--beta": "0", **{f"--{k}": str(v) for k, v in TARGET.items()}}
    merged |= dict(zip(words[::2], words[1::2]))
    return [word for pair in merged.items() for word in pair]


# The settings tried for GRPO's and RLOO's defaults: (algorithm, label, extra args). Each row names its schedule and
# beta, so that it reruns the same under today's YAML (the YAML's values for everything else).
SWEEP = tuple(
    (algorithm, label, sweep_args(changes))
    for algorithm, label, changes in (
        ("grpo", "lr 3e-4, 8 per prompt, scale_rewards group", "--scale_rewards group"),
        ("grpo", "lr 3e-4, 8 per prompt, scale_rewards none", "--scale_rewards none"),
        ("grpo", "lr 3e-4, 16 per prompt, scale_rewards group", "--scale_rewards group --num_generations 16"),
        ("grpo", "lr 1e-4, 8 per prompt, scale_rewards group", "--scale_rewards group --learning_rate 1e-4"),
        ("rloo", "lr 3e-4, 8 per prompt", ""),
        ("rloo", "lr 1e-4, 8 per prompt", "--learning_rate 1e-4"),
        # After issue 13's stop rule (sampled >= 98.5 %, keep the SFT's correct share), whose tail GRPO and RLOO
        # reach after arithmetic dips to 72-95 % greedy correct: a KL anchor to the SFT policy, PPO's decaying lr.
        ("grpo", "lr 3e-4, 8 per prompt, beta 0.04", "--beta 0.04"),
        ("grpo", "lr 3e-4 linear decay, 8 per prompt", "--lr_scheduler_type linear"),
        ("rloo", "lr 3e-4, 8 per prompt, beta 0.04", "--beta 0.04"),
        ("grpo", "lr 3e-4 linear decay, 8 per prompt, beta 0.04", "--beta 0.04 --lr_scheduler_type linear"),
        ("rloo", "lr 3e-4 linear decay, 8 per prompt, beta 0.04", "--beta 0.04 --lr_scheduler_type linear"),
        # PPO takes 4 clipped steps on each batch (a reused batch is off-policy, and the clip bounds how far rare
        # tokens can rise, which may sharpen the policy); GRPO and RLOO take 1, where the clip never acts. 4
        # iterations per batch at a third of the lr, judging as often per completion, a 32 000-completion budget.
        *(
            (
                algorithm,
                "lr 1e-4, 8 per prompt, beta 0.04, 4 iterations per batch (cap 32 000)",
                "--beta 0.04 --learning_rate 1e-4 --num_iterations 4 --max_steps 2000 --judge_every 32 "
                "--logging_steps 32 --save_steps 64",
            )
            for algorithm in ("grpo", "rloo")
        ),
        # The linear decay ends with the budget (max_steps): half the budget decays twice as fast.
        (
            "grpo",
            "lr 3e-4 linear decay over 32 000 completions, 8 per prompt, beta 0.04",
            "--beta 0.04 --lr_scheduler_type linear --max_steps 500",
        ),
    )
)


def stop_rule() -> str:
    return (
        f"greedy ≥ {bench.pct(TARGET['target_exact_match'])} and sampled ≥ "
        f"{bench.pct(TARGET['target_sampled_exact_match'])} exact match for every prefix on the validation numbers"
        + (
            f", sampled answers right doubles {100 * TARGET['target_correct_margin']:.1f} points more often than "
            "at the start"
            if TARGET["target_keep_correct"]
            else ""
        )
        + f", {TARGET['target_patience']} judgements in a row"
    )


# --- running --------------------------------------------------------------------------------------------------------


def start_checkpoints(seed: int, seed_dir: Path) -> dict[str, Path]:
    """The seed's SFT and reward folders, trained with bench.py's commands unless already complete (with the threads
    `make all` gives them, so that they are its checkpoints: thread count changes the numerics)."""
    commands = bench.stage_commands(seed, seed_dir, {})
    env = {**os.environ, "OMP_NUM_THREADS": str(bench.HALF_CORES)}
    folders = {}
    for stage in ("sft", "reward"):
        folders[stage] = seed_dir / stage
        if (folders[stage] / "model.safetensors").is_file():
            continue
        print(f"seed {seed}: {stage}: {shlex.join(commands[stage])}", flush=True)
        result = bench.run_stage(commands[stage], seed_dir / f"{stage}.log", env=env)
        if result["returncode"]:
            raise SystemExit(f"seed {seed}: {stage} failed:\n{bench.log_tail(result['log'])}")
    return folders


def rl_command(algorithm: str, seed: int, start: dict[str, Path], out: Path, extra: list[str]) -> list[str]:
    accelerate = str(Path(sys.executable).parent / "accelerate")
    command = [accelerate, "launch", f"recipes/{algorithm}.py", "--seed", str(seed), "--output_dir", str(out)]
    command += ["--sft_model_path", str(start["sft"]), "--reward_model_path", str(start["reward"])]
    return command + ["--resume_from_checkpoint", "false", *NO_FLOORS["rl"], *extra]


def run_algorithm(algorithm: str, seed: int, start: dict[str, Path], out: Path, extra: list[str]) -> dict:
    command = rl_command(algorithm, seed, start, out, extra)
    print(f"seed {seed}: {algorithm}: {shlex.join(command)}", flush=True)
    stage = bench.run_stage(command, out.parent / f"{out.name}.log")
    print(f"seed {seed}: {algorithm}: exit {stage['returncode']}, {stage['wall_s']:.1f} s", flush=True)
    if stage["returncode"]:
        print(bench.log_tail(stage["log"]), flush=True)
        return {"algorithm": algorithm, "seed": seed, "stage": stage, "failed": True}
    results = json.loads((out / "eval_results.json").read_text(encoding="utf-8"))
    run = {"algorithm": algorithm, "seed": seed, "stage": stage, "failed": False, **outcome(results)}
    return {**run, "sampled_correct": sampled_correct(out, seed)}


def outcome(results: dict) -> dict:
    """What the table shows of one run, from its eval_results.json."""
    history = results["judged_during_training"]
    keys = ("target_exact_match", "target_sampled_exact_match", "target_keep_correct", "target_correct_margin")
    rule = [TARGET[k] for k in keys]
    streak, at_target = 0, None
    for entry in history[1:]:  # the judgement at which the stop rule first held (history[0]: the starting policy)
        streak = streak + 1 if holds_target(entry, history[0], *rule) else 0
        if streak == TARGET["target_patience"]:
            at_target = entry
            break
    last = history[-1] if history else None
    return {
        "completions_to_target": at_target and at_target["episode"],
        "seconds_to_target": at_target and at_target["seconds"],
        "completions": last and last["episode"],
        "completions_per_s": last and last["episode"] / last["seconds"],
        "greedy": {p: results["greedy"][p]["exact_match"] for p in PREFIXES},
        "sampled": {p: results["sampled"][p]["exact_match"] for p in PREFIXES},
        "min_greedy_correct_in_training": min((h["eval/correct"] for h in history), default=None),
        "history": history,
    }


def sampled_correct(policy: Path, seed: int) -> float:
    """The policy's sampled share of correct doubles (any system) on the prefixed test prompts, PRECISE_SAMPLES
    answers per prompt. The recipe's own test samples 4: a standard error of ~0.1 point per share, as large as the
    differences the table compares between a run and its SFT start."""
    model, tokenizer = load_policy(str(policy))
    results = evaluate(model, tokenizer, heldout_prompts(prefixed=True), seed=seed, samples=PRECISE_SAMPLES)
    return results["sampled"]["all"]["correct"]


def sft_baseline(sft: Path, seed: int) -> dict:
    """The SFT policy on the same prefixed test prompts: the starting point's sampled share of correct doubles."""
    return {"sampled_correct": sampled_correct(sft, seed)}


# --- tables ---------------------------------------------------------------------------------------------------------

HEADER = [
    "completions to target",
    "s to target",
    "completions/s",
    f"greedy exact {' / '.join(PREFIXES)}",
    f"sampled exact {' / '.join(PREFIXES)}",
    f"sampled correct SFT → run ({PRECISE_SAMPLES} per prompt)",
    "min greedy correct in training",
    "stage wall s",
    "peak RSS GiB",
]


def cells(run: dict, sft: dict) -> list[str]:
    if run["failed"]:
        return ["failed"] + [bench.MISSING] * (len(HEADER) - 1)
    return [
        bench.fmt(run["completions_to_target"], ".0f") if run["completions_to_target"] else "not reached",
        bench.fmt(run["seconds_to_target"]),
        bench.fmt(run["completions_per_s"], ".0f"),
        bench.prefix_cell(run["greedy"]),
        bench.prefix_cell(run["sampled"]),
        f"{bench.pct(sft['sampled_correct'], 2)} → {bench.pct(run['sampled_correct'], 2)}",
        bench.pct(run["min_greedy_correct_in_training"]),
        bench.fmt(run["stage"]["wall_s"]),
        bench.fmt(run["stage"]["peak_rss_gib"], ".2f"),
    ]


def median_per_prefix(runs: list[dict], mode: str) -> dict | None:
    return {p: statistics.median(r[mode][p] for r in runs) for p in PREFIXES} if runs else None


def median_cells(runs: list[dict], sft: dict[int, dict]) -> list[str]:
    done = [r for r in runs if not r["failed"]]
    kept = sum(r["sampled_correct"] >= sft[r["seed"]]["sampled_correct"] for r in done)
    reached = [r for r in done if r["completions_to_target"]]

    def med(key, spec=".1f"):
        return bench.fmt(bench.median(r[key] for r in reached), spec)

    return [
        f"{med('completions_to_target', '.0f')} ({len(reached)}/{len(runs)} reached)",
        med("seconds_to_target"),
        bench.fmt(bench.median(r["completions_per_s"] for r in done), ".0f"),
        *(bench.prefix_cell(median_per_prefix(done, mode)) for mode in ("greedy", "sampled")),
        f"{bench.pct(bench.median(r['sampled_correct'] for r in done), 2)} ({kept}/{len(runs)} ≥ SFT)",
        bench.pct(bench.median(r["min_greedy_correct_in_training"] for r in done)),
        bench.fmt(bench.median(r["stage"]["wall_s"] for r in done)),
        bench.fmt(bench.median(r["stage"]["peak_rss_gib"] for r in done), ".2f"),
    ]


def extra_args(run: dict) -> list[str]:
    """What a run's command added to the recipe's YAML besides seed, folders and the stop rule."""
    command = run["stage"]["command"]
    return command[command.index("--resume_from_checkpoint") + 2 :]


def comparison_table(runs: list[dict], sft: dict[int, dict], host: dict) -> str:
    extra = {f"{r['algorithm']} {r['seed']}": extra_args(r) for r in runs}
    extras = "; ".join(f"{name} `{shlex.join(args)}`" for name, args in extra.items() if args)
    lines = [
        "Same SFT and reward checkpoints per seed, each algorithm on its recipe defaults"
        + (f" (extra args: {extras})" if extras else "")
        + f". One target: {stop_rule()}. PPO stops there; GRPO and RLOO run their whole lr decay, and their "
        "target columns give when the rule first held. Exact match and correct shares on the held-out test numbers "
        "(prefixed prompts), of the final policy; a completion = an episode. Seconds are training + judging, in the "
        "run's own process.",
        "",
        bench.row(["algorithm", "seed", *HEADER]),
        bench.row(["---"] * (len(HEADER) + 2)),
    ]
    for algorithm in dict.fromkeys(r["algorithm"] for r in runs):
        mine = [r for r in runs if r["algorithm"] == algorithm]
        lines += [bench.row([algorithm, str(r["seed"]), *cells(r, sft[r["seed"]])]) for r in mine]
        if len(mine) > 1:
            lines.append(bench.row([f"**{algorithm}**", "median", *median_cells(mine, sft)]))
    lines += ["", machine_line(host)]
    return "\n".join(lines)


def sweep_table(runs: list[dict], sft: dict[int, dict], host: dict) -> str:
    lines = [
        "Settings tried for GRPO's and RLOO's defaults (`python bench/algorithms.py --sweep`): each row is the "
        "recipe's YAML with the named change, from the same SFT and reward checkpoints, with the comparison's stop "
        f"rule ({stop_rule()}; capped at the YAML's max_steps). Exact match and correct shares on the held-out test "
        "numbers.",
        "",
        bench.row(["algorithm", "settings", "seed", *HEADER]),
        bench.row(["---"] * (len(HEADER) + 3)),
    ]
    lines += [bench.row([r["algorithm"], r["label"], str(r["seed"]), *cells(r, sft[r["seed"]])]) for r in runs]
    lines += ["", machine_line(host)]
    return "\n".join(lines)


def machine_line(host: dict) -> str:
    return (
        f"Machine: {host['cpu_count']} CPU cores (os.cpu_count()), torch {host['torch']} with {host['torch_threads']} "
        f"threads, {host['platform']}; {host['date']}."
    )


# --- main -----------------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    parser.add_argument("--sweep", action="store_true", help="run the SWEEP settings instead of the comparison")
    parser.add_argument("--rows", nargs="+", type=int, help="--sweep: only these rows of SWEEP (0-based)")
    parser.add_argument("--output_dir", default="outputs/bench")
    parser.add_argument("--figure", default="outputs/bench/algorithms.png", help="the comparison's figure")
    parser.add_argument("--readme", help="also write the comparison between the algorithms markers of this file")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: tabulate again what <output_dir>/algorithms.json (--sweep: sweep.json) holds",
    )
    for algorithm in ALGORITHMS:
        parser.add_argument(f"--{algorithm}-args", default="", help=f"extra arguments for recipes/{algorithm}.py")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.readme:
        bench.check_readme(args.readme, README_MARKERS)
    out = Path(args.output_dir).resolve()
    host = {**bench.machine(), "date": time.strftime("%Y-%m-%d")}
    extra = {a: shlex.split(getattr(args, f"{a}_args")) for a in ALGORITHMS}
    plan = [(a, "", []) for a in args.algorithms] if not args.sweep else SWEEP
    rows = range(len(plan)) if args.rows is None else args.rows
    runs, sft = [], {}
    for seed in [] if args.report_only else args.seeds:
        start = start_checkpoints(seed, out / f"seed{seed}")
        sft[seed] = sft_baseline(start["sft"], seed)
        for i in rows:
            algorithm, label, changes = plan[i]
            name = f"sweep{i}-{algorithm}" if args.sweep else algorithm
            run = run_algorithm(algorithm, seed, start, out / f"seed{seed}" / name, [*changes, *extra[algorithm]])
            runs.append({**run, "label": label})

    name = "sweep" if args.sweep else "algorithms"
    saved = out / f"{name}.json"
    if args.report_only and not saved.exists():
        raise SystemExit(f"error: --report-only: no {saved} to tabulate (run the bench first)")
    if saved.exists():  # runs of earlier invocations (other seeds, algorithms, rows) stay in
        before = json.loads(saved.read_text(encoding="utf-8"))
        ran = {(r["algorithm"], r["label"], r["seed"]) for r in runs}
        runs = [r for r in before["runs"] if (r["algorithm"], r["label"], r["seed"]) not in ran] + runs
        sft = {**{int(seed): v for seed, v in before["sft"].items()}, **sft}
        host = before["machine"] if args.report_only else host
    order = [(a, label) for a, label, _ in (SWEEP if args.sweep else [(a, "", []) for a in ALGORITHMS])]
    runs.sort(key=lambda r: (order.index((r["algorithm"], r["label"])), r["seed"]))
    document = sweep_table(runs, sft, host) if args.sweep else comparison_table(runs, sft, host)
    print(document)
    (out / f"{name}.md").write_text(document + "\n", encoding="utf-8")
    raw = {"machine": host, "target": TARGET, "sft": sft, "runs": runs}
    saved.write_text(json.dumps(raw, indent=2, ensure_ascii=False), encoding="utf-8")
    if not args.sweep:
        done = [r for r in runs if not r["failed"]]
        histories = {a: [r["history"] for r in done if r["algorithm"] == a] for a in ALGORITHMS}
        print(f"wrote {plot_algorithms(histories, Path(args.figure))}")
        if args.readme:
            bench.update_readme(args.readme, document, README_MARKERS)
            print(f"wrote the comparison into {args.readme}")
    return 1 if any(r["failed"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
