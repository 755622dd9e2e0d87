"""The measured versions are the installed ones: `make install` installs requirements.lock exactly, the study runner
records the same packages, and the newest records in the store ran on the lock's versions."""

import json
import re
import sys
from importlib.metadata import version

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from run import VERSIONS  # noqa: E402  (bench/ is a folder of scripts, not a package)

# What decides the numbers: the training stack, its tokenizers and numerics, and the scale-out engine.
KEY = (*VERSIONS, "deepspeed", "tokenizers", "safetensors", "huggingface_hub", "numpy", "pytest")


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, pinned = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name.lower())] = pinned
    return pins


def test_the_key_packages_installed_are_the_locked_versions():
    pins = locked()
    installed = {name: version(name) for name in KEY}
    assert installed == {name: pins[re.sub(r"[-_.]+", "-", name.lower())] for name in KEY}, (
        "this environment is not the lock's: run `make install` (or `make lock` after testing new versions on purpose)"
    )


def test_the_newest_records_in_the_store_ran_on_the_locked_versions():
    records = [json.loads(line) for path in (ROOT / "bench/results").glob("*.jsonl") for line in path.open()]
    newest = max(record["date"] for record in records)
    pins = locked()
    for record in records:
        if record["date"] == newest:
            assert record["versions"] == {name: pins[name] for name in VERSIONS}, record["key"]
