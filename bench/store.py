"""The result store: one JSON line per finished run, in `bench/results/<study>.jsonl`, committed with the repo.

A record's key is its study, variant, seed and a digest of its settings: a rerun of a study skips every key already
stored (a study grows by seeds), and a changed variant runs again under a new key. Appends are whole lines under an
exclusive lock, so that the runs of `--jobs N` can finish at once.
"""

import fcntl
import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def key(study: str, variant: str, seed: int, settings: dict) -> str:
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return f"{study}/{variant}/{seed}/{digest}"


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)

    def records(self) -> list[dict]:
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.is_file() else []
        return [json.loads(line) for line in lines if line.strip()]

    def keys(self) -> set[str]:
        return {record["key"] for record in self.records()}

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(line)
            f.flush()
