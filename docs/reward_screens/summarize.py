"""The two screens behind the reward stage's defaults, as tables: `python docs/reward_screens/summarize.py`.

phase2.py: phases 1-2 alone, per seed (one torch thread, two runs side by side), with phase 2 replacing 15 % (the
old default) or 30 % of the answer numerals; `onset` = the first logged step (every 50) with phase 2's loss < 0.03.
phase3.py: phase 3 alone, from the phase-2 checkpoints that recipes/reward.py wrote for the 20 runs of
docs/reward_seeds.md before the classifier's head was trained in phase 2, with the old phase 3 and variants.
"""

import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    rows = [json.loads(line) for line in (HERE / "phase2.jsonl").read_text().splitlines()]
    print("Phase 2: the step at which it learned (loss < 0.03), per seed; `never` within its 2 000 steps\n")
    variants = {"base": "15 % replaced (old default)", "dprob3": "30 % replaced (phase 1's share)"}
    seeds = sorted({r["seed"] for r in rows})
    print("| phase 2 | " + " | ".join(map(str, seeds)) + " |")
    print("|---|" + "---|" * len(seeds))
    for variant, name in variants.items():
        onset = {r["seed"]: r["onset"] for r in rows if r["variant"] == variant}
        print(f"| {name} | " + " | ".join(str(onset.get(s) or "never") for s in seeds) + " |")
    rows = [json.loads(line) for line in (HERE / "phase3.jsonl").read_text().splitlines()]
    print("\nPhase 3 alone, from the same phase-2 encoder per run: invalid answers caught (held-out)\n")
    table = defaultdict(dict)
    for r in rows:
        table[r["variant"]][f"{r['threads']}t/{r['seed']}"] = r["invalid"]
    runs = sorted({run for cells in table.values() for run in cells})
    print("| phase 3 | " + " | ".join(runs) + " |")
    print("|---|" + "---|" * len(runs))
    names = {"base": "1000 steps, lr 1e-3 (old default)", "steps2000": "2000 steps", "lr3e-4": "lr 3e-4",
             "lr2e-3": "lr 2e-3", "lr2e-3s2000": "lr 2e-3, 2000 steps"}  # fmt: skip
    for variant, cells in table.items():
        print(
            f"| {names[variant]} | " + " | ".join(f"{100 * cells[r]:.1f}%" if r in cells else "" for r in runs) + " |"
        )


if __name__ == "__main__":
    main()
