import importlib.util
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ppo_double.checks import NO_FLOORS

ROOT = Path(__file__).resolve().parent.parent


def load_script(path: str):
    """Import the script at `path` (from the repo root) as a module: recipes are no package."""
    name = path.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_recipe(name: str):
    """Import recipes/<name>.py as a module."""
    return load_script(f"recipes/{name}.py")


def weights(folder) -> dict:
    """The tensors of a saved model folder (its model.safetensors)."""
    return load_file(str(Path(folder) / "model.safetensors"))


# Tiny runs test plumbing, not learning: their results are far below each stage's floors, which they turn off.

TINY_SFT = [
    "--max_steps",
    "8",
    "--per_device_train_batch_size",
    "16",
    "--logging_steps",
    "4",
    "--n_layer",
    "1",
    "--test_samples",
    "1",  # of 16 sampled answers per test prompt in the final evaluation: tiny runs test its plumbing
    "--disable_tqdm",
    "true",
    *NO_FLOORS["sft"],
]


@pytest.fixture(scope="session")
def tiny_sft(tmp_path_factory):
    """A tiny, barely trained SFT checkpoint: enough to test plumbing, not learning."""
    out = tmp_path_factory.mktemp("sft")
    load_recipe("sft").main([*TINY_SFT, "--output_dir", str(out)])
    return out


TINY_REWARD = [
    "--max_steps",
    "8",
    "--per_device_train_batch_size",
    "16",
    "--num_hidden_layers",
    "1",
    "--repair_steps",
    "2",
    "--detect_steps",
    "2",
    "--logging_steps",
    "4",
    "--disable_tqdm",
    "true",
    *NO_FLOORS["reward"],
]


@pytest.fixture(scope="session")
def tiny_reward(tmp_path_factory):
    """A tiny, barely trained reward classifier: for plumbing, not for what it has learned."""
    out = tmp_path_factory.mktemp("reward")
    load_recipe("reward").main([*TINY_REWARD, "--output_dir", str(out)])
    return out


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """reference(stage, args): the final folder of one uninterrupted, in-process run of recipes/<stage>.py on `args`
    (their --output_dir replaced), run once per session: the resume and fault tests each end where it ends."""
    done = {}

    def get(stage: str, args: list[str]) -> Path:
        at = args.index("--output_dir")
        args = [*args[:at], *args[at + 2 :]]
        key = (stage, tuple(args))
        if key not in done:
            done[key] = tmp_path_factory.mktemp(f"reference-{stage}") / "out"
            load_recipe(stage).main([*args, "--output_dir", str(done[key])])
        return done[key]

    return get


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A real SFT policy and reward classifier (minutes on CPU): for the slow learning checks. Trained one after the
    other in this process on all its threads: trained side by side on one thread each (as `make all` does), the PPO
    check's greedy correct share dipped to 90.3 % on one 2-thread run, under its 95 % bound."""
    root = tmp_path_factory.mktemp("trained")
    load_recipe("sft").main(["--output_dir", str(root / "sft"), "--disable_tqdm", "true"])
    load_recipe("reward").main(["--output_dir", str(root / "reward"), "--disable_tqdm", "true"])
    return root


# --- docs/metrics.md: a row for every logged key ------------------------------------------------------------------


def documented(section: str) -> set[str]:
    """The metric keys in docs/metrics.md's section whose heading starts with `section` (its rows' backticked
    first cells)."""
    keys, inside = set(), False
    for line in (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            inside = line[3:].startswith(section)
        elif inside and line.startswith("| `"):
            keys.add(line.split("`")[1])
    return keys


def undocumented(keys, *sections: str) -> set[str]:
    """The keys (a per-prefix key as `.../<prefix>`) with no row in any of docs/metrics.md's `sections`."""
    from ppo_double.task import PREFIXES

    known = set().union(*(documented(s) for s in sections))
    normal = {k.rsplit("/", 1)[0] + "/<prefix>" if k.rsplit("/", 1)[-1] in PREFIXES else k for k in keys}
    return normal - known


def finished_run(folder, reward_accuracy: dict | None = None, lost: int | None = 0) -> dict:
    """The stage folders of a run whose policy met every target (judged perfect throughout; the first judgement without
    its seconds, as a run resumed from a checkpoint rebuilds it from the log); with `reward_accuracy`,
    a reward stage whose eval_results.json holds it, and an eval stage (the SFT's sampled correct share just below; the
    run's sampled answers `lost` correct answers of 16 on every prompt; None: no per-prompt counts to pair)."""
    from ppo_double.task import PREFIXES

    judged = {f"eval/{k}": 1.0 for k in ("exact_match", "sampled_exact_match", "correct", "sampled_correct")}
    judged |= {f"eval/{k}/{p}": 1.0 for k in ("exact_match", "sampled_exact_match") for p in PREFIXES}
    history = [{"episode": 0, "step": 0, **judged}, {"episode": 512, "step": 8, **judged, "seconds": 9.0}]
    results = {m: {p: {"exact_match": 1.0, "correct": 1.0} for p in PREFIXES} for m in ("greedy", "sampled")}
    paths = {stage: folder / stage for stage in ("reward", "rl", "eval")}
    paths["rl"].mkdir(parents=True)
    (paths["rl"] / "eval_results.json").write_text(json.dumps({**results, "judged_during_training": history}))
    (paths["rl"] / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 0.1, "step": 8}]}))
    if reward_accuracy is not None:
        paths["reward"].mkdir()
        (paths["reward"] / "eval_results.json").write_text(json.dumps(reward_accuracy))
        sft = {m: {p: {"exact_match": 0.3, "correct": 0.99} for p in PREFIXES} for m in ("greedy", "sampled")}
        sft |= {"samples": 16, "correct_per_prompt": {p: [16] * 500 for p in PREFIXES}}
        rl = results | {"samples": 16}
        if lost is not None:
            rl["correct_per_prompt"] = {p: [16 - lost] * 500 for p in PREFIXES}
        paths["eval"].write_text(json.dumps({"sft": sft, "rl": rl}))
    return paths
