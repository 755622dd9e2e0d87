"""Run one recipe under torchrun and write what this rank saw to REPORT_DIR/rank<N>.json (used by test_distributed)."""

import hashlib
import json
import os
import sys

import torch

from conftest import load_recipe

stage, report_dir, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
trainer = load_recipe(stage).main(argv)
model = trainer.accelerator.unwrap_model(trainer.model)
model = getattr(model, "policy", model)  # PPO wraps policy and value model together
digest = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    digest.update(name.encode() + tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
report = {
    "rank": trainer.accelerator.process_index,
    "world_size": trainer.accelerator.num_processes,
    "distributed_type": str(trainer.accelerator.distributed_type),
    "is_main_process": trainer.accelerator.is_main_process,
    "global_step": trainer.state.global_step,
    "episode": getattr(trainer.state, "episode", None),
    "weights_sha256": digest.hexdigest(),
}
with open(os.path.join(report_dir, f"rank{report['rank']}.json"), "w") as f:
    json.dump(report, f)
