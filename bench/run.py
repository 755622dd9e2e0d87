"""The experiment runner: a study (a YAML file under bench/studies/) runs per variant and seed, each run appends one
record to the store (bench/results/<study>.jsonl), and the tables and pictures are written from the store.

    make bench                                                  # bench/studies/pipeline.yaml: `make all` per seed
    python bench/run.py bench/studies/algorithms.yaml --jobs 2  # two single-thread runs side by side
    python bench/run.py bench/studies/algorithms.yaml --seeds 47 48   # the study grows by seeds
    python bench/run.py bench/studies/algorithms.yaml --report-only --page docs/studies/algorithms.md

A run is the pipeline (ppo_double/pipeline.py) with the variant's settings; each stage's output is cached under
`--work_dir` by what it depends on, so variants that share a seed's SFT and reward train them once. A record holds
the run's metrics, the judge's history, what the trainer logged, wall times, the plain-loop speed, the commit, the
library versions and the machine. A run whose stage failed (e.g. below its floor: a study keeps the floors on unless
it says `measure: true`) is stored as a miss; delete its line to run it again. A run stopped by Ctrl-C or SIGTERM is
not stored: the rerun resumes it. `--jobs N`: N runs at once, each stage on cores / N torch threads.
"""

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render  # noqa: E402
from store import RESULTS, Store, key  # noqa: E402

from ppo_double import pipeline, summary, targets  # noqa: E402
from ppo_double.checks import NO_FLOORS  # noqa: E402
from ppo_double.plots import log_history  # noqa: E402

ROOT = pipeline.ROOT
STUDY_KEYS = {"description", "stages", "seeds", "variants", "defaults", "measure", "baselines", "measured_on"}
# a variant's settings, and two that are not: its own seeds and `signature`, the logged metric its picture shows
VARIANT_KEYS = {"algorithm", "threads", "rl_threads", "processes", *pipeline.STAGES, "seeds", "signature"}
VERSIONS = ("torch", "transformers", "trl", "accelerate", "peft", "datasets")


class StudyError(ValueError):
    """A study file that cannot run: one line naming the problem."""


def int_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(type(s) is int for s in value)


def load_study(path: Path) -> dict:
    """The study in `path`, checked: known keys, known stages, a list of int seeds, variants with known keys."""
    path = Path(path)
    try:
        study = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise StudyError(f"{path}: cannot read the study: {error}") from None
    if not isinstance(study, dict) or not isinstance(study.get("variants"), dict) or not study["variants"]:
        raise StudyError(f"{path}: a study is a mapping with a non-empty `variants:` mapping")
    if unknown := set(study) - STUDY_KEYS:
        raise StudyError(f"{path}: unknown key(s) {sorted(unknown)}; a study has {sorted(STUDY_KEYS)}")
    stages = study.setdefault("stages", list(pipeline.STAGES))
    if not isinstance(stages, list) or set(stages) - set(pipeline.STAGES) or not stages:
        raise StudyError(f"{path}: stages must be a list of {list(pipeline.STAGES)}, got {stages!r}")
    if not int_list(study.get("seeds")):
        raise StudyError(f"{path}: seeds must be a non-empty list of integers, got {study.get('seeds')!r}")
    study["variants"] = {name: variant or {} for name, variant in study["variants"].items()}  # `name:` alone: {}
    for name, variant in {"defaults": study.get("defaults") or {}, **study["variants"]}.items():
        if not isinstance(variant, dict) or set(variant) - VARIANT_KEYS:
            raise StudyError(f"{path}: variant {name!r} has unknown key(s); a variant sets {sorted(VARIANT_KEYS)}")
        if variant.get("algorithm", "ppo") not in pipeline.ALGORITHMS:
            raise StudyError(f"{path}: variant {name!r}: algorithm must be one of {list(pipeline.ALGORITHMS)}")
        if not int_list(own := variant.get("seeds", [0])):
            raise StudyError(f"{path}: variant {name!r}: seeds must be a non-empty list of integers, got {own!r}")
    if not isinstance(study.get("measured_on", {}), dict):
        raise StudyError(f"{path}: measured_on maps an algorithm to the recipe-defaults digest of its records")
    bases = study.setdefault("baselines", [])
    algorithms = [study["variants"][b].get("algorithm", "ppo") for b in bases if b in study["variants"]]
    if not isinstance(bases, list) or len(algorithms) != len(bases) or len(set(algorithms)) != len(bases):
        raise StudyError(f"{path}: baselines must list variants of the study, one per algorithm, got {bases!r}")
    study["name"] = path.stem
    return study


def seeds_of(study: dict, variant: str) -> list[int]:
    return study["variants"][variant].get("seeds") or study["seeds"]


def settings(study: dict, variant: str) -> dict:
    """A variant's settings: its algorithm, torch threads (None: the runner's), each stage's extra arguments (the
    study's defaults, then its own) and a digest of the recipes' YAML defaults."""
    defaults, own = study.get("defaults") or {}, study["variants"][variant]
    merged = {**defaults, **own}
    out = {"algorithm": merged.get("algorithm", "ppo"), "threads": merged.get("threads")}
    if merged.get("processes", 1) != 1:  # (absent at 1: the keys of the runs stored before it existed stay)
        out["processes"] = merged["processes"]
    if merged.get("rl_threads"):  # the RL and eval stages' torch threads, apart from SFT's and reward's (same reason)
        out["rl_threads"] = merged["rl_threads"]
    for stage in pipeline.STAGES:
        out[stage] = list(NO_FLOORS.get(stage, [])) if study.get("measure") else []
        out[stage] += shlex.split(str(defaults.get(stage, ""))) + shlex.split(str(own.get(stage, "")))
    # the YAML defaults of the stages it runs too: a record measured on other defaults is another run (its key differs).
    # A study kept on the defaults it was measured on names their digest per algorithm (`measured_on`; running it is
    # refused)
    texts = [recipe_defaults(stage, out["algorithm"]) for stage in study["stages"]]
    digest = hashlib.sha1("".join(texts).encode()).hexdigest()[:10]
    out["recipe_defaults"] = (study.get("measured_on") or {}).get(out["algorithm"], digest)
    return out


def current_records(study: dict, store: Store, plan: list[tuple[str, int]] | None = None) -> list[dict]:
    """The store's records of `plan`'s (variant, seed) runs (default: every variant on its own seeds) under their keys
    on today's settings, in the study's variant order, then by seed."""
    plan = plan or [(v, s) for v in study["variants"] for s in seeds_of(study, v)]
    current = {key(study["name"], v, s, settings(study, v)) for v, s in plan}
    records = [r for r in store.records() if r["key"] in current]
    return sorted(records, key=lambda r: (list(study["variants"]).index(r["variant"]), r["seed"]))


def recipe_defaults(stage: str, algorithm: str) -> str:
    """The YAML defaults a stage reads, as sorted JSON: a changed value gives the stage's outputs a new cache folder
    and its records a new key; a comment or the layout does not."""
    name = {"rl": algorithm, "eval": None}.get(stage, stage)
    path = ROOT / "recipes" / "configs" / f"{name}.yaml"
    if not (name and path.is_file()):
        return ""
    return json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), sort_keys=True)


def stage_folders(work: Path, seed: int, given: dict) -> dict[str, Path]:
    """Each stage's cache folder: named by a hash of what it depends on (its own settings and every earlier stage's)."""
    upstream = {"sft": ["sft"], "reward": ["reward"], "rl": ["sft", "reward", "rl"], "eval": list(pipeline.STAGES)}
    paths = {}
    for stage, needs in upstream.items():
        parts = [seed, given["algorithm"] if stage in ("rl", "eval") else None, given["threads"]]
        parts += [given[k] for k in ("processes", "rl_threads") if k in given and stage in ("rl", "eval")]
        parts += [(given[s], recipe_defaults(s, given["algorithm"])) for s in needs]
        digest = hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:10]
        name = f"{stage if stage != 'rl' else given['algorithm']}-seed{seed}-{digest}"
        paths[stage] = work / (f"{name}.json" if stage == "eval" else name)
    return paths


# --- what a run reached ---------------------------------------------------------------------------------------------
def logged(log: list[dict], history: list[dict]) -> list[dict]:
    """Every number the RL trainer logged while training (not the judge's, kept in the history), 4 significant
    digits, at `completions` (PPO logs its episode; GRPO and RLOO their step, converted by the judge's history)."""
    per_step = next((h["episode"] / h["step"] for h in history if h.get("step")), None)
    rows = []
    for entry in log:
        if "loss" not in entry and "objective/kl" not in entry:  # the summary line at the end; judge-only lines
            continue
        numbers = {k: float(f"{v:.4g}") for k, v in entry.items() if isinstance(v, (int, float)) and k[:5] != "eval/"}
        rows.append({"completions": entry.get("episode") or (per_step and round(entry["step"] * per_step)), **numbers})
    return rows


def metrics(paths: dict[str, Path], stages: list[str]) -> dict:
    """A finished run's record fields: its `metrics` (ppo_double.targets.reached), the judge's `history`, the
    `rollouts`' reward and judged exact match per update, and everything the trainer `logged`."""
    found = targets.reached(paths, stages)
    history, rollouts, trained = [], [], []
    if "rl" in stages:
        judged = targets.read_json(paths["rl"] / "eval_results.json")["judged_during_training"]
        history, log = targets.history(judged), log_history(paths["rl"] / "trainer_state.json")
        rollouts = [
            {"episode": e["episode"], "reward": e.get("objective/scores", e.get("reward")), "judged": e[exact]}
            for e in log
            if "episode" in e and (exact := "judge/rollout_exact_match") in e
        ]
        trained = logged(log, judged)
        if rollouts:  # the last 8 logged updates: what the reward pays at the end, and the judge
            found["final_reward"] = statistics.fmean(r["reward"] for r in rollouts[-8:])
            found["final_judged"] = statistics.fmean(r["judged"] for r in rollouts[-8:])
    return {"metrics": found, "history": history, "rollouts": rollouts, "logged": trained}


# --- running --------------------------------------------------------------------------------------------------------
def environment() -> dict:
    """What a record was measured with: the commit (+dirty: uncommitted changes), library versions, the machine."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    dirty = git("status", "--porcelain", "--", "ppo_double", "recipes")
    return {
        "git_commit": git("rev-parse", "HEAD") + ("+dirty" if dirty else ""),
        "versions": {name: version(name) for name in VERSIONS},
        "machine": {"cpu_count": os.cpu_count(), "cpu": cpu, "platform": platform.platform()},
        "date": datetime.date.today().isoformat(),
    }


class Runner:
    def __init__(self, study: dict, store: Store, work: Path, jobs: int, speed: dict[str, float]):
        self.study, self.store, self.work = study, store, work
        self.base = {**environment(), "jobs": jobs}
        self.base |= {"plain_loop_s_per_100": speed["plain"], "recipe_sft_s_per_100": speed["recipe"]}
        self.threads = None if jobs == 1 else max(1, len(os.sched_getaffinity(0)) // jobs)
        self.locks: dict[Path, threading.Lock] = {}  # one per stage folder (dict.setdefault is atomic)

    def run(self, variant: str, seed: int) -> dict | None:
        """One run: the stages not already cached (a stage two runs share waits for the first to finish it)."""
        given = settings(self.study, variant)
        paths = stage_folders(self.work, seed, given)
        commands = pipeline.stage_commands(paths, seed, given["algorithm"], given, processes=given.get("processes", 1))
        todo = [s for s in pipeline.STAGES if s in self.study["stages"]]
        threads = given["threads"] or self.threads
        # SFT and reward first, on `threads` (several runs of a seed share them: a second one waits for the first to
        # finish them, then finds them cached), then the run's own stages, on its rl_threads where it sets them
        shared = [s for s in todo if s in pipeline.SIDE_BY_SIDE]
        groups = [(shared, threads), ([s for s in todo if s not in shared], given.get("rl_threads", threads))]
        stages: dict[str, dict] = {}
        for group, group_threads in groups:
            with contextlib.ExitStack() as held:
                for s in group:
                    held.enter_context(self.locks.setdefault(paths[s], threading.Lock()))
                # finished stages: the eval's JSON file written, another stage's eval_results.json (its last file)
                done = {s: paths[s] if s == "eval" else paths[s] / "eval_results.json" for s in group}
                cached = tuple(s for s in group if done[s].is_file())
                logs = {s: Path(f"{paths[s]}.log") for s in group}
                ran = pipeline.run({s: commands[s] for s in group}, logs, group_threads, skip=cached)
            stages |= {s: {"cached": True} for s in cached} | {s: {**r, "cached": False} for s, r in ran.items()}
            if any(result["returncode"] for result in ran.values()):
                break
        codes = [result.get("returncode", 0) for result in stages.values()]
        if any(code in (130, 143) or code < 0 for code in codes):  # Ctrl-C, SIGTERM, killed: no result to store
            print(f"{variant} seed {seed}: interrupted, not stored (a rerun resumes its stage from its checkpoints)")
            return None
        failed = next((s for s in todo if s not in stages or stages[s].get("returncode", 0) != 0), None)
        record = {"key": key(self.study["name"], variant, seed, given), "study": self.study["name"]}
        record |= {"variant": variant, "seed": seed, "settings": given, "stages": stages, "failed_stage": failed}
        record |= {**self.base, "metrics": {}, "history": [], "rollouts": [], "logged": []}
        if failed is None:
            record |= metrics(paths, todo)
            # wall seconds of the pipeline (None when a stage came from the cache), and in plain-loop units: seconds /
            # the plain loop's seconds per 100 SFT steps, measured in the same invocation
            walls = {s: r["wall_s"] for s, r in stages.items() if not r["cached"]}
            total = summary.pipeline_seconds(walls) if len(walls) == len(stages) else None
            to_target, plain = record["metrics"].get("seconds_to_target"), self.base["plain_loop_s_per_100"]
            units = {"total_units": total and total / plain, "units_to_target": to_target and to_target / plain}
            record["metrics"] |= {"total_s": total, **units}
        self.store.append(record)
        print(f"{variant} seed {seed}: {render.outcome(record)}", flush=True)
        return record


# --- main -----------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, help="a study file, e.g. bench/studies/pipeline.yaml")
    parser.add_argument("--seeds", nargs="+", type=int, help="these seeds instead of the study's")
    parser.add_argument("--variants", nargs="+", help="only these variants of the study")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each with cores / jobs torch threads")
    parser.add_argument("--work_dir", type=Path, default=Path("outputs/studies"), help="the stages' cached outputs")
    parser.add_argument("--store", type=Path, help="the store file (default: bench/results/<study>.jsonl)")
    parser.add_argument("--report-only", action="store_true", help="run nothing: the tables from the store")
    parser.add_argument("--page", type=Path, help="also write the study's page here, whole (docs/studies/<study>.md)")
    parser.add_argument("--figure", type=Path, help="also draw the study's picture here (e.g. docs/<study>.png)")
    args = parser.parse_args(argv)
    try:
        study = load_study(args.study)
        if unknown := set(args.variants or []) - set(study["variants"]):
            raise StudyError(f"{args.study}: no variant {sorted(unknown)}; it has {sorted(study['variants'])}")
        if args.jobs < 1:
            raise StudyError(f"--jobs must be 1 or more, got {args.jobs}")
        store = Store(args.store or RESULTS / f"{study['name']}.jsonl")
        plan = [(v, s) for v in args.variants or study["variants"] for s in (args.seeds or seeds_of(study, v))]
        stored = store.keys()
        todo = [(v, s) for v, s in plan if key(study["name"], v, s, settings(study, v)) not in stored]
        if todo and not args.report_only and study.get("measured_on"):
            raise StudyError(
                f"{args.study} is kept on the recipe defaults it was measured on (`measured_on`): runs on today's "
                "defaults would be another study; remove `measured_on` to rerun it whole"
            )
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{study['name']}: {len(plan)} runs, {len(plan) - len(todo)} in {store.path}, {len(todo)} to run", flush=True)
    if todo and not args.report_only:
        from speed import seconds_per_100_steps  # torch: imported only when something runs

        speed = seconds_per_100_steps()
        print(f"plain PyTorch loop {speed['plain']:.2f} s, recipes/sft.py {speed['recipe']:.2f} s per 100 SFT steps")
        args.work_dir.resolve().mkdir(parents=True, exist_ok=True)
        runner = Runner(study, store, args.work_dir.resolve(), args.jobs, speed)
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: runner.run(*job), todo))
    records = current_records(study, store, plan)
    if not records:
        print(f"error: no records of {args.study} in {store.path}: run it first", file=sys.stderr)
        return 1
    folder = args.page.parent if args.page else Path(".")  # the pictures are linked from the page's folder
    document = render.report(study, records, args.figure, folder)
    print(document)
    if args.page:
        args.page.parent.mkdir(parents=True, exist_ok=True)
        args.page.write_text(render.page(study, records, document), encoding="utf-8")
        print(f"wrote {args.page}")
    return 1 if any(r["failed_stage"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
