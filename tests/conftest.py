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
