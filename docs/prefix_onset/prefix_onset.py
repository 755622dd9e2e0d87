"""What decides when PPO separates the three prefixes (the onset)? One change from the defaults per variant.

The onset: the first judgement (every 4 updates = 512 episodes, validation numbers) at which every prefix's greedy
exact match is >= 0.9. For each variant and seed, PPO from `make all`'s SFT and reward folders of that seed
(`<bench>/seed<S>/sft`, `.../reward`, as `make bench` leaves them), no early stop, one torch thread, two runs side by
side, judged up to 6 144 episodes (48 updates).

The runs keep the default 16 384-episode budget, so that the linear learning-rate decay is today's (a run stopped by
the judge decays over 16 384 episodes too; `--total_episodes 6144` would decay the learning rate 2.7 times faster, a
second change on every row), and are ended by this script once the checkpoint of update 48 (`--save_steps 48`) is
written: the judgements up to it are those of an uninterrupted run. Reruns skip finished runs.

`default`: seed 42 is run and its judgements compared with `--reference`'s no-stop run of that seed
(docs/stop_margin/); where they are equal (the runs are deterministic at one thread), the other seeds' default rows are
that record's judgements up to update 48, and are run otherwise.

    python docs/prefix_onset/prefix_onset.py --bench outputs/bench10 --runs outputs/prefix_onset \
        --reference outputs/stop_margin --run
    python docs/prefix_onset/prefix_onset.py ... --systems   # + the numeral system of the default runs' greedy
                                                             #   answers per prefix at each judgement (checkpoints
                                                             #   of --reference, saved every 4 updates)

Writes docs/prefix_onset/prefix_onset.md (and .json). Heavy: run it alone (../shared/tools/one-at-a-time).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIXES = ("数字", "小写", "大写")
ONSET, BATCH, UPDATES, WARMUP = 0.9, 128, 48, 8  # judged up to 48 updates x 128 = 6144 episodes; ppo.yaml's warm-up
VARIANTS = {  # name: (the one change, the policy's warm-up in updates)
    "default": ([], WARMUP),
    "no-prefix-scaling": (["--scale_prefix_embeddings", "false"], WARMUP),
    "no-warmup": (["--value_warmup_updates", "0"], 0),
    "temperature-1.0": (["--temperature", "1.0"], WARMUP),
    "lr-1e-4": (["--learning_rate", "1e-4"], WARMUP),
    "lr-3e-4": (["--learning_rate", "3e-4"], WARMUP),
}
SEEDS = list(range(42, 50))
BIN = Path(sys.executable).parent
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_ppo(variant: str, seed: int, bench: Path, runs: Path) -> None:
    """One run, ended once update 48's checkpoint is complete; its judgements go to `<run>.judgements.json`."""
    src, out = bench / f"seed{seed}", runs / variant / f"seed{seed}"
    record = out.with_suffix(".judgements.json")
    if record.is_file():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [str(BIN / "accelerate"), "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision",
               "no", "--dynamo_backend", "no", "recipes/ppo.py", "--seed", str(seed), "--sft_model_path",
               str(src / "sft"), "--reward_model_path", str(src / "reward"), "--output_dir", str(out),
               "--target_exact_match", "null", "--min_exact_match", "0", "--min_sampled_exact_match", "0",
               "--resume_from_checkpoint", "false", "--save_steps", str(UPDATES), *VARIANTS[variant][0]]  # fmt: skip
    state = Path(f"{out}-checkpoints") / f"checkpoint-{UPDATES}" / "trainer_state.json"
    with open(f"{out}.log", "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=ONE_THREAD,
                                   start_new_session=True)  # fmt: skip
        while process.poll() is None and not done(state):
            time.sleep(2)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # past the record: the rest of the budget is not needed
        process.wait()
    if not done(state):
        raise RuntimeError(f"{variant} seed {seed}: no judgement of update {UPDATES} (see {out}.log)")
    record.write_text(json.dumps(judgements(state)) + "\n")


def judgements(state: Path) -> list[dict]:
    history = json.loads(state.read_text())["log_history"]
    return [e for e in history if "eval/sampled_correct" in e and e["step"] <= UPDATES]


def done(state: Path) -> bool:
    try:
        return any(e["step"] == UPDATES for e in judgements(state))
    except (OSError, ValueError, KeyError):  # not there yet, or half written
        return False


def history(variant: str, seed: int, runs: Path, reference: Path, reuse: bool) -> list[dict]:
    if variant == "default" and reuse:
        return judgements(reference / f"seed{seed}" / "trainer_state.json")
    return json.loads((runs / variant / f"seed{seed}.judgements.json").read_text())


def same(a: list[dict], b: list[dict]) -> bool:
    keys = lambda e: {k: v for k, v in e.items() if k.startswith("eval/") or k == "step"}  # noqa: E731
    return [keys(e) for e in a] == [keys(e) for e in b]


def onset(entries: list[dict]) -> int | None:
    for e in entries:
        if all(e[f"eval/exact_match/{p}"] >= ONSET for p in PREFIXES):
            return e["step"] * BATCH
    return None


def summarize(variant: str, entries: list[dict]) -> dict:
    first = onset(entries)
    last = entries[-1]
    return {
        "onset": first,
        "after_warmup": None if first is None else first - VARIANTS[variant][1] * BATCH,
        "lowest_correct": min(e["eval/correct"] for e in entries),
        "final_exact_match": {p: last[f"eval/exact_match/{p}"] for p in PREFIXES},
        "exact_match": {e["step"] * BATCH: [e[f"eval/exact_match/{p}"] for p in PREFIXES] for e in entries},
    }


def systems(seed: int, bench: Path, reference: Path, upto: int) -> dict:
    """The numeral system of the greedy answers to the validation prompts, per prefix: the starting policy's (the SFT
    with its prefix rows scaled, as PPO starts) and at each judgement up to update `upto`, from `reference`'s
    checkpoints (saved every 4 updates). {episodes: {prefix: {system: share}}}"""
    import torch
    from transformers import AutoModelForCausalLM

    from ppo_double.evaluate import generate_answers
    from ppo_double.modeling import load_tokenizer, scale_prefix_embeddings
    from ppo_double.task import VALIDATION_NUMBERS, judge, make_prompt

    torch.set_num_threads(1)
    folders = {0: bench / f"seed{seed}" / "sft"}
    folders |= {s * BATCH: reference / f"seed{seed}-checkpoints" / f"checkpoint-{s}" for s in range(4, upto + 1, 4)}
    tokenizer = load_tokenizer(str(folders[0]))
    found = {}
    for episodes, folder in folders.items():
        model = AutoModelForCausalLM.from_pretrained(folder)
        if episodes == 0:
            scale_prefix_embeddings(model)
        found[episodes] = {}
        for label, prefix in enumerate(PREFIXES):
            prompts = [make_prompt(n, label) for n in VALIDATION_NUMBERS]
            answers = generate_answers(model, tokenizer, prompts)
            counts = Counter(judge(p, a).system or "none" for p, a in zip(prompts, answers))
            found[episodes][prefix] = {k: v / len(prompts) for k, v in counts.most_common()}
    return found


def systems_table(found: dict) -> str:
    """Per default seed, from the start to the onset: each prefix's greedy answers' main system and its share (%),
    in the order 数字 小写 大写 (d digits, l lower, u upper, m mixed)."""
    short = {"digits": "d", "lower": "l", "upper": "u", "mixed": "m", "none": "-"}
    width = max(len(steps) for steps in found.values())
    lines = ["| seed | " + " | ".join("start" if i == 0 else str(4 * i * BATCH) for i in range(width)) + " |",
             "| --- |" + " --- |" * width]  # fmt: skip
    for seed, steps in found.items():
        cells = []
        for prefixes in steps.values():
            main = [max(shares.items(), key=lambda kv: kv[1]) for shares in prefixes.values()]
            cells.append(" ".join(f"{short[k]}{100 * v:.0f}" for k, v in main))
        lines.append(f"| {seed} | " + " | ".join(cells + [""] * (width - len(cells))) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=Path("outputs/bench10"))
    parser.add_argument("--runs", type=Path, default=Path("outputs/prefix_onset"))
    parser.add_argument("--reference", type=Path, default=Path("outputs/stop_margin"))
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS, help="seeds to train (with --run)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--run", action="store_true", help="train these variants and seeds (finished runs are skipped)")
    parser.add_argument("--systems", action="store_true", help="the default runs' greedy numeral systems per prefix")
    args = parser.parse_args()
    args.bench, args.runs, args.reference = args.bench.resolve(), args.runs.resolve(), args.reference.resolve()
    check = SEEDS[0]
    jobs = [(v, s) for v in args.variants if v != "default" for s in args.seeds]
    with ThreadPoolExecutor(2) as pool:
        if args.run:
            list(pool.map(lambda job: run_ppo(*job, args.bench, args.runs), [("default", check)] * (
                "default" in args.variants) + jobs))  # fmt: skip
        mine = history("default", check, args.runs, args.reference, reuse=False)
        reuse = same(mine, history("default", check, args.runs, args.reference, reuse=True))
        print(f"default seed {check}: judgements {'equal' if reuse else 'NOT equal'} to {args.reference.name}'s")
        if not reuse and args.run and "default" in args.variants:
            list(pool.map(lambda s: run_ppo("default", s, args.bench, args.runs), args.seeds))
    # the report: every variant and seed with a record (reruns of a subset add to it)
    found = {(v, s): summarize(v, history(v, s, args.runs, args.reference, reuse)) for v in VARIANTS for s in SEEDS
             if (v == "default" and reuse) or (args.runs / v / f"seed{s}.judgements.json").is_file()}  # fmt: skip
    args.seeds = SEEDS
    args.variants = [v for v in VARIANTS if any(key[0] == v for key in found)]

    show = lambda x: "never" if x is None else str(x)  # noqa: E731
    lines = [
        "| variant (one change) | onset, median [min, max] (episodes) | never by 6 144 | episodes after the warm-up, "
        "median | lowest greedy correct, min / median (%) | per seed: onset (lowest correct %) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    record = []
    for v in args.variants:
        seeds = [s for s in SEEDS if (v, s) in found]
        results = [found[(v, s)] for s in seeds]
        onsets = [r["onset"] for r in results if r["onset"] is not None]
        after = [r["after_warmup"] for r in results if r["after_warmup"] is not None]
        lows = [100 * r["lowest_correct"] for r in results]
        never = len(results) - len(onsets)
        # a median over all seeds, counting "never" as later than any onset
        ranked = sorted(results, key=lambda r: (r["onset"] is None, r["onset"] or 0))
        mid = ranked[(len(ranked) - 1) // 2 : len(ranked) // 2 + 1]
        median = (
            "never" if any(r["onset"] is None for r in mid) else f"{statistics.median(r['onset'] for r in mid):.0f}"
        )
        span = f"[{min(onsets)}, {max(onsets)}]" if onsets else ""
        cells = " ".join(f"{s}: {show(r['onset'])} ({100 * r['lowest_correct']:.1f})" for s, r in zip(seeds, results))
        lines.append(
            f"| `{v}` {' '.join(VARIANTS[v][0]) or '(ppo.yaml)'} | {median} {span} | {never}/{len(results)} | "
            f"{f'{statistics.median(after):.0f}' if after else '—'} | {min(lows):.1f} / "
            f"{statistics.median(lows):.1f} | {cells} |"
        )
        record += [{"variant": v, "seed": s, **found[(v, s)]} for s in seeds]
    table = "\n".join(lines)
    print(table)
    here = Path(__file__).parent
    old = json.loads((here / "prefix_onset.json").read_text()) if (here / "prefix_onset.json").is_file() else {}
    out = {"runs": record, "default_greedy_systems": old.get("default_greedy_systems")}
    if args.systems:
        upto = {s: (found[("default", s)]["onset"] or UPDATES * BATCH) // BATCH for s in SEEDS}
        with ThreadPoolExecutor(2) as pool:
            got = pool.map(lambda s: systems(s, args.bench, args.reference, upto[s]), args.seeds)
            out["default_greedy_systems"] = {str(s): x for s, x in zip(args.seeds, got)}
    text = (
        "# What decides when PPO separates the three prefixes (the onset)\n\n"
        f"Written by `python docs/prefix_onset/prefix_onset.py` (its docstring says how). Seeds {args.seeds[0]}–"
        f"{args.seeds[-1]}: PPO from each seed's `make all` SFT and reward folders, recipes/configs/ppo.yaml with one "
        "change per variant, no early stop, one torch thread per run, judged every 4 updates (512 episodes) on the "
        "validation numbers up to 6 144 episodes. The runs keep the 16 384-episode budget of ppo.yaml (the linear "
        "learning-rate decay is today's) and the script ends them after the judgement at 6 144 episodes. *Onset*: the "
        "first judgement at which every prefix's greedy exact match is ≥ 90 %. *After the warm-up*: onset minus the "
        "episodes the policy waits (`value_warmup_updates` × 128). *Lowest greedy correct*: the lowest greedy "
        "correct-double share (`eval/correct`, all prefixes) at any judgement up to 6 144 episodes. "
        + (
            "The `default` row: seed 42 was rerun and its judgements are equal to docs/stop_margin's no-stop run of "
            "that seed up to 6 144 episodes; the other seeds' rows are those runs' judgements up to 6 144 episodes."
            if reuse
            else ""
        )
        + "\n\n"
        "    ../shared/tools/one-at-a-time python docs/prefix_onset/prefix_onset.py --bench outputs/bench10 "
        "--runs outputs/prefix_onset --reference outputs/stop_margin --run --systems\n\n" + table + "\n"
    )
    if out["default_greedy_systems"]:
        text += (
            "\n## The default runs' greedy answers before the onset\n\nPer judgement (episodes), each prefix's greedy "
            "answers' most frequent numeral system and its share (%), in the order 数字 小写 大写 (d digits, l lower, "
            "u upper, m mixed; validation numbers; from docs/stop_margin's checkpoints, saved every 4 updates;"
            " *start*: the SFT with its prefix rows scaled, the policy PPO starts from).\n\n"
            + systems_table(out["default_greedy_systems"])
            + "\n"
        )
    marker = "\n## What decides the onset"
    md = here / "prefix_onset.md"
    if md.is_file() and marker in md.read_text(encoding="utf-8"):  # the hand-written reading stays
        text += marker + md.read_text(encoding="utf-8").split(marker, 1)[1]
    md.write_text(text, encoding="utf-8")
    (here / "prefix_onset.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
