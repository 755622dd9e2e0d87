"""Phase 3 alone, from a saved phase-2 (detect) checkpoint: variants of the classifier's training."""

import dataclasses, json, sys, time, torch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from safetensors.torch import load_file
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed
from ppo_double.data import classifier_dataset
from ppo_double.evaluate import classifier_accuracy
from ppo_double.modeling import build_classifier, load_tokenizer
from ppo_double.task import TEST_NUMBERS

variant, threads, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
opts = dict(a.split("=") for a in sys.argv[4:])
steps = int(opts.get("steps", 1000))
lr = float(opts.get("lr", 1e-3))
sched = opts.get("sched", "cosine")
warm = int(opts.get("warm", 100))
set_seed(seed)
tok = load_tokenizer()
model = build_classifier(64, 4, 4, 64, 0.0)
state = load_file(
    f"{ROOT}/outputs/reward_seeds/t{threads}/seed{seed}-checkpoints/detect/checkpoint-1000/model.safetensors"
)
missing = model.load_state_dict({k: v for k, v in state.items() if k.startswith("bert.")}, strict=False)
args = TrainingArguments(
    output_dir="/tmp/reward-screen",
    per_device_train_batch_size=64,
    learning_rate=lr,
    lr_scheduler_type=sched,
    warmup_steps=warm,
    weight_decay=0.0,
    logging_steps=100,
    save_strategy="no",
    report_to="none",
    seed=seed,
    data_seed=seed,
    disable_tqdm=True,
    use_cpu=True,
    max_steps=steps,
)
t0 = time.time()
tr = Trainer(
    model=model,
    args=args,
    train_dataset=classifier_dataset(tok, steps * 64, seed, 0.4),
    data_collator=DataCollatorWithPadding(tok),
    processing_class=tok,
)
tr.train()
held = classifier_dataset(tok, 6000, seed=0, invalid_fraction=0.5, numbers=TEST_NUMBERS)
acc = classifier_accuracy(model, held)
losses = [round(e["loss"], 3) for e in tr.state.log_history if "loss" in e]
worst = min((v, k) for k, v in acc.items() if k.startswith("invalid/"))
out = dict(
    variant=variant,
    threads=threads,
    seed=seed,
    invalid=acc["invalid"],
    worst=worst,
    losses=losses,
    s=round(time.time() - t0),
)
open(str(ROOT / "docs/reward_screens/phase3.jsonl"), "a").write(json.dumps(out) + "\n")
print(variant, threads, seed, round(acc["invalid"], 4), worst, losses[-3:])
