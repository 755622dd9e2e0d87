"""Screen phase-2 variants: run phases 1-2 (as recipes/reward.py does) and record the phase-2 loss curve + onset."""

import dataclasses, json, os, sys, time, torch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from transformers import Trainer, TrainingArguments, TrainerCallback, set_seed
from ppo_double.data import AnswerCorruptionCollator, answer_dataset
from ppo_double.modeling import build_classifier, encoder_heads, load_tokenizer

variant, seed = sys.argv[1], int(sys.argv[2])
opts = dict(a.split("=") for a in sys.argv[3:])
repair_steps = int(opts.get("repair", 500))
detect_steps = int(opts.get("detect", 2000))
detect_prob = float(opts.get("dprob", 0.15))
lr2 = float(opts.get("lr2", 1e-3))
freeze = int(opts.get("freeze", 0))
warm2 = int(opts.get("warm2", 0))
rprob = float(opts.get("rprob", 0.3))
set_seed(seed)
tok = load_tokenizer()
model = build_classifier(64, 4, 4, 64, 0.0)
repair, detect = encoder_heads(model)
losses = []


class Rec(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            losses.append((state.global_step, float(logs["loss"])))


base = TrainingArguments(
    output_dir="/tmp/reward-screen",
    per_device_train_batch_size=64,
    learning_rate=1e-3,
    lr_scheduler_type="constant",
    warmup_steps=0,
    weight_decay=0.0,
    logging_steps=50,
    save_strategy="no",
    report_to="none",
    seed=seed,
    data_seed=seed,
    disable_tqdm=True,
    use_cpu=True,
)
t0 = time.time()
Trainer(
    model=repair,
    args=dataclasses.replace(base, max_steps=repair_steps),
    train_dataset=answer_dataset(tok, repair_steps * 64, seed + 1),
    data_collator=AnswerCorruptionCollator(tok, rprob, "original"),
).train()
if freeze:
    for p in detect.bert.parameters():
        p.requires_grad_(False)
    Trainer(
        model=detect,
        args=dataclasses.replace(base, max_steps=freeze, learning_rate=lr2),
        train_dataset=answer_dataset(tok, freeze * 64, seed + 10),
        data_collator=AnswerCorruptionCollator(tok, detect_prob, "replaced"),
    ).train()
    for p in detect.bert.parameters():
        p.requires_grad_(True)
rec = Rec()
Trainer(
    model=detect,
    args=dataclasses.replace(
        base,
        max_steps=detect_steps,
        learning_rate=lr2,
        warmup_steps=warm2,
        lr_scheduler_type="constant_with_warmup" if warm2 else "constant",
    ),
    train_dataset=answer_dataset(tok, detect_steps * 64, seed + 2),
    data_collator=AnswerCorruptionCollator(tok, detect_prob, "replaced"),
    callbacks=[rec],
).train()
# diagnostics: recall of replaced numerals by position from the end of the answer, and false positives
from ppo_double.task import TEST_NUMBERS

coll = AnswerCorruptionCollator(tok, detect_prob, "replaced")
ds = answer_dataset(tok, 3000, 7, numbers=TEST_NUMBERS)
batch = coll([{"input_ids": r} for r in ds["input_ids"]])
detect.eval()
with torch.no_grad():
    pred = detect(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.argmax(-1)
lab = batch["labels"]
eos = tok.convert_tokens_to_ids("E")
recall = {}
for row in range(len(lab)):
    pos = (lab[row] >= 0).nonzero().flatten().tolist()
    for k, c in enumerate(reversed(pos)):
        if lab[row, c] == 1:
            h, n = recall.get(k, (0, 0))
            recall[k] = (h + int(pred[row, c] == 1), n + 1)
fp = ((pred == 1) & (lab == 0)).sum().item() / (lab == 0).sum().item()
diag = {"recall_from_end": {k: round(h / n, 3) for k, (h, n) in sorted(recall.items())}, "false_pos": round(fp, 4)}
print(diag)
onset = next((s for s, l in losses if l < 0.03), None)
out = dict(
    variant=variant,
    seed=seed,
    threads=torch.get_num_threads(),
    onset=onset,
    final=losses[-1][1],
    curve=losses,
    diag=diag,
    seconds=round(time.time() - t0, 1),
    opts=opts,
)
with open(str(ROOT / "docs/reward_screens/phase2.jsonl"), "a") as f:
    f.write(json.dumps(out) + "\n")
print(variant, seed, "onset", onset, "final", losses[-1][1], out["seconds"], "s")
