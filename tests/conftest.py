import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_recipe(name: str):
    """Import recipes/<name>.py as a module (recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY_SFT = [
    "--max_steps",
    "8",
    "--per_device_train_batch_size",
    "16",
    "--logging_steps",
    "4",
    "--n_layer",
    "1",
    "--disable_tqdm",
    "true",
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
]


@pytest.fixture(scope="session")
def tiny_reward(tmp_path_factory):
    """A tiny, barely trained reward classifier: for plumbing, not for what it has learned."""
    out = tmp_path_factory.mktemp("reward")
    load_recipe("reward").main([*TINY_REWARD, "--output_dir", str(out)])
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A real SFT policy and reward classifier (minutes on CPU): for the slow learning checks."""
    root = tmp_path_factory.mktemp("trained")
    load_recipe("sft").main(["--output_dir", str(root / "sft"), "--disable_tqdm", "true"])
    load_recipe("reward").main(["--output_dir", str(root / "reward"), "--disable_tqdm", "true"])
    return root
