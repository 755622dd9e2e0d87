"""Hub checkpoints: each stage's final folder, with a model card that gives the stage, its key config and the judge's
numbers, pushed with the trainer's own `push_to_hub`.

    save_and_push(trainer, "sft", script_args)   # the last line of every recipe

Without `--push_to_hub` that is `trainer.save_model(output_dir)`. With it, `Trainer.push_to_hub` saves the model (on
every process, as sharded setups need), writes README.md through `create_model_card` (on process zero) and uploads
`output_dir` with `HfApi.upload_folder`. transformers' and TRL's `create_model_card` write a generic card ("fine-tuned
version of None on None") over any README.md already there, so for that one call the trainer's `create_model_card`
is replaced by `write_model_card`. The token comes from `HF_TOKEN` / `hf auth login` (or `--hub_token`, which is
kept out of the uploaded `training_args.bin`); it is never written to the card.
"""

import json
import os
from enum import Enum
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .callbacks import episodes

STAGES = {
    "sft": {
        "title": "SFT policy",
        "what": (
            "a tiny GPT-2, trained from scratch with TRL's `SFTTrainer` to double a 4-digit number, answering in a "
            "random numeral system (digits `6640`, chinese lower `六六四〇`, chinese upper `陆陆肆零`)."
        ),
        "pipeline_tag": "text-generation",
        "auto_class": "AutoModelForCausalLM",
        "tags": ["trl", "sft", "gpt2"],
    },
    "reward": {
        "title": "reward classifier",
        "what": (
            "a tiny BERT that tells which numeral system an answer `S__:3320x2=6640E` uses — digits, lower or upper "
            "— or, with this project's 4th class (`make reward`), that it is no valid answer (wrong double, mixed "
            "systems, wrong length, no `E`: class `invalid`); the tutorial's 3-class version (`make reward-tutorial`) "
            "has no such class. The PPO stage turns it into a reward: the probability of the system the prompt asks "
            "for."
        ),
        "pipeline_tag": "text-classification",
        "auto_class": "AutoModelForSequenceClassification",
        "tags": ["trl", "reward-model", "bert"],
    },
    **{
        stage: {
            "title": f"{stage.upper()} policy",
            "what": (
                f"the SFT policy after {stage.upper()} ({trainer}) against the reward classifier: it answers in the "
                "numeral system the prompt's prefix names — `数字` digits, `小写` chinese lower, `大写` chinese "
                "upper — without losing its arithmetic."
            ),
            "pipeline_tag": "text-generation",
            "auto_class": "AutoModelForCausalLM",
            "tags": ["trl", stage, "rlhf", "gpt2"],
        }
        for stage, trainer in (
            ("ppo", "TRL 1.12's `trl.experimental.ppo.PPOTrainer`"),
            ("grpo", "TRL's `GRPOTrainer`"),
            ("rloo", "TRL's `RLOOTrainer`"),
        )
    },
}
RL_STAGES = ("ppo", "grpo", "rloo")  # a policy trained against the reward, from the SFT checkpoint

# Which settings the card lists, per stage, looked up by name on the model config, the script arguments and the
# trainer arguments (in that order); settings a run does not have are left out.
MODEL_KEYS = {
    "sft": ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"),
    "reward": ("num_hidden_layers", "num_attention_heads", "hidden_size", "intermediate_size", "vocab_size"),
    **dict.fromkeys(RL_STAGES, ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size")),
}
# The optimisation settings SFT and reward share, in the card's order.
_OPTIMIZATION_KEYS = (
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
)
# The settings every RL stage's card ends with (PPO, GRPO, RLOO).
_RL_COMMON = (
    "use_peft",
    "lora_r",
    "lora_alpha",
    "lora_target_modules",
    "target_exact_match",
    "target_sampled_exact_match",
    "target_keep_correct",
    "target_correct_margin",
    "seed",
)
TRAINING_KEYS = {
    "sft": (
        *_OPTIMIZATION_KEYS,
        "max_length",
        "completion_only_loss",
        "seed",
        "data_seed",
    ),
    "reward": (
        *_OPTIMIZATION_KEYS,
        "invalid_fraction",
        "encoder_dropout",
        "repair_steps",
        "detect_steps",
        "detect_corrupt_prob",
        "seed",
        "data_seed",
    ),
    "ppo": (
        "sft_model_path",
        "reward",
        "reward_model_path",
        "total_episodes",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "num_mini_batches",
        "num_ppo_epochs",
        "learning_rate",
        "lr_scheduler_type",
        "kl_coef",
        "response_length",
        "temperature",
        "value_warmup_updates",
        "missing_eos_penalty",
        *_RL_COMMON,
    ),
    **dict.fromkeys(
        ("grpo", "rloo"),
        (
            "sft_model_path",
            "reward",
            "reward_model_path",
            "max_steps",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "num_generations",
            "learning_rate",
            "lr_scheduler_type",
            "beta",
            "num_iterations",
            "loss_type",  # GRPO
            "scale_rewards",  # GRPO
            "normalize_advantages",  # RLOO
            "max_completion_length",
            "temperature",
            "missing_eos_penalty",
            "disable_dropout",
            *_RL_COMMON,
        ),
    ),
}
LORA_KEYS = ("lora_r", "lora_alpha", "lora_target_modules")

RESULTS_FILE = "eval_results.json"
CLASSES = ("digits", "lower", "upper", "invalid", "all")  # reward: rows of the accuracy table


def _plain(value):
    """A JSON/markdown-friendly value; a local folder (an input checkpoint) is shown by name only."""
    if isinstance(value, Enum):  # e.g. lr_scheduler_type
        return value.value
    if isinstance(value, str) and os.path.isabs(value):
        return f"(local folder) {Path(value).name}"
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


def config_summary(stage: str, trainer, *arg_objects) -> dict:
    """The stage's key settings: model sizes from the saved model's config, then the run's arguments.

    `arg_objects` are the recipe's dataclasses (script arguments, TRL ModelConfig); `trainer.args` is read last.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    model = getattr(model, "policy", model)  # PPO: the wrapper around policy and value model
    summary = {"model": model.config.model_type}
    for key in MODEL_KEYS[stage]:
        if hasattr(model.config, key):
            summary[key] = getattr(model.config, key)
    summary["parameters"] = sum(p.numel() for p in model.parameters())
    sources = [*arg_objects, trainer.args]
    use_peft = any(getattr(o, "use_peft", False) for o in sources)
    for key in TRAINING_KEYS[stage]:
        if key in LORA_KEYS and not use_peft:
            continue
        for source in sources:
            if hasattr(source, key):
                summary[key] = _plain(getattr(source, key))
                break
    processes = trainer.accelerator.num_processes
    summary["processes"] = processes
    per_device = getattr(trainer.args, "per_device_train_batch_size", None)
    if per_device is not None:
        summary["global_batch"] = per_device * trainer.args.gradient_accumulation_steps * processes
    summary["steps_run"] = trainer.state.global_step
    if stage in RL_STAGES:
        summary["episodes_run"] = episodes(trainer.args, trainer.state.global_step)  # fewer after an early stop
    return summary


def load_results(output_dir) -> dict:
    """The judge's numbers the recipe saved next to the model (`eval_results.json`), or {} when there are none."""
    path = Path(output_dir) / RESULTS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _pct(x) -> str:
    return f"{100 * x:.1f}%"


def _generation_table(results: dict) -> list[str]:
    lines = [
        "| decoding | prefix | n | exact match | correct double | ends with `E` |",
        "|---|---|---|---|---|---|",
    ]
    for mode in ("greedy", "sampled"):
        for prefix, row in results.get(mode, {}).items():
            lines.append(
                f"| {mode} | `{prefix}` | {row['n']} | {_pct(row['exact_match'])} | {_pct(row['correct'])} "
                f"| {_pct(row['eos'])} |"
            )
    return lines


def _accuracy_table(results: dict) -> list[str]:
    accuracy = {k.removeprefix("eval_").removeprefix("accuracy/"): v for k, v in results.items() if "accuracy/" in k}
    order = [*CLASSES, *sorted(set(accuracy) - set(CLASSES))]
    lines = ["| true class | accuracy |", "|---|---|"]
    return lines + [f"| {name} | {_pct(accuracy[name])} |" for name in order if name in accuracy]


def results_markdown(stage: str, results: dict) -> str:
    """The judge's numbers as the card's 'Evaluation' section."""
    if not results:
        return f"No judge results were saved with this checkpoint (no {RESULTS_FILE} in its folder)."
    if stage == "reward":
        intro = (
            "Accuracy per true class on answers built from the **test numbers** (held out from all training): "
            "clean answers in each numeral system, and corrupted ones (class `invalid`)."
        )
        return "\n".join([intro, "", *_accuracy_table(results)])
    prompts = "`S__:NNNNx2=` (no prefix: any system is right)" if stage == "sft" else "`S数字:`, `S小写:`, `S大写:`"
    intro = (
        f"The rule-based judge of `ppo_double.task` (never the reward model) on the 500 **test numbers** (held out "
        f"from all training), prompts {prompts}. *Exact match*: the right double, in the numeral system the prompt "
        "asks for, then `E`. *Correct double*: the right value in any one system. *Sampled*: temperature 1."
    )
    lines = [intro, "", *_generation_table(results)]
    history = results.get("judged_during_training")
    if history:
        lines += ["", f"During training the judge ran {len(history)} times, on the validation numbers."]
    return "\n".join(lines)


def _usage(stage: str, repo_id: str) -> str:
    auto_class = STAGES[stage]["auto_class"]
    if stage in RL_STAGES:
        prompt, answer = "S大写:3164x2=", "陆叁贰捌E"
    else:
        prompt, answer = "S__:3164x2=", "6328E, in some numeral system"
    if stage == "reward":
        body = f"""model = {auto_class}.from_pretrained("{repo_id}")
ids = tokenizer(["S__:3164x2=陆叁贰捌E", "S__:3164x2=陆叁贰E"], padding=True, return_tensors="pt")
labels = model(**ids).logits.argmax(-1).tolist()
print([model.config.id2label[i] for i in labels])  # e.g. ['upper', 'invalid']"""
    else:
        body = f"""model = {auto_class}.from_pretrained("{repo_id}")
ids = tokenizer("{prompt}", return_tensors="pt").input_ids
out = model.generate(ids, max_new_tokens=7, do_sample=False, eos_token_id=2, pad_token_id=0)
print(tokenizer.decode(out[0, ids.shape[1]:]))  # {answer}"""
    return f"""```python
from transformers import {auto_class}, AutoTokenizer

# One token per character over a fixed 42-character vocabulary. trust_remote_code runs the tokenizer.py shipped
# here (a PreTrainedTokenizer that names any character outside the vocabulary); without it, transformers loads
# the same tokenizer from tokenizer.json (same ids; unknown characters are an error there too).
tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True)
{body}
```"""


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("trl", "transformers", "torch", "tokenizers", "accelerate", "peft"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def model_card(
    stage: str, config_summary: dict, results: dict, repo_id: str | None = None, tags=None, base_model=None
) -> ModelCard:
    """The card as a `huggingface_hub.ModelCard` (YAML metadata + markdown)."""
    info = STAGES[stage]
    all_tags = list(dict.fromkeys([*info["tags"], "ppo_double", *(tags or [])]))
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=info["pipeline_tag"],
        tags=all_tags,
        base_model=base_model,
    )
    repo_id = repo_id or "path/to/this/folder"
    config_rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in config_summary.items())
    content = f"""---
{data.to_yaml()}
---

# ppo_double — {info["title"]} (stage: {stage})

Stage **{stage}** of ppo_double, a small end-to-end PPO recipe built on [TRL](https://github.com/huggingface/trl):
{info["what"]}

A sample is `S` + prefix + `:` + number + `x2=` + answer + `E`, e.g. `S大写:3164x2=陆叁贰捌E` (`S` begins, `E` ends,
`P` pads). Stages: **sft** (the policy learns to double) → **reward** (a classifier learns the numeral systems) →
**ppo**, or **grpo** or **rloo** instead (the policy learns to follow the prefix).

## Evaluation

{results_markdown(stage, results)}

## Training configuration

| setting | value |
|---|---|
{config_rows}

## Use

{_usage(stage, repo_id)}

## Framework versions

{_versions()}
"""
    return ModelCard(content)


def write_model_card(output_dir, stage: str, config_summary: dict, results: dict | None = None, **kwargs) -> Path:
    """Write README.md (the model card) into `output_dir`; `results` default to the folder's eval_results.json."""
    results = load_results(output_dir) if results is None else results
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    model_card(stage, config_summary, results, **kwargs).save(path)
    return path


def _base_model(stage: str, sources) -> str | None:
    """The RL stage's SFT checkpoint if it is a Hub id (a local folder is no valid `base_model`), as TRL's cards do."""
    if stage not in RL_STAGES:
        return None
    path = next((s.sft_model_path for s in sources if getattr(s, "sft_model_path", None)), None)
    return path if path and not os.path.isdir(path) and path.count("/") == 1 else None


def save_and_push(trainer, stage: str, *arg_objects) -> None:
    """Save the final model to `output_dir`; with `--push_to_hub`, push that folder with our model card.

    Call it on every process, last in the recipe (after eval_results.json is written).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: use one of {', '.join(STAGES)}")
    args = trainer.args
    os.makedirs(args.output_dir, exist_ok=True)
    trainer.save_state()  # trainer_state.json: the log history `make plots` draws
    if not args.push_to_hub:
        trainer.save_model(args.output_dir)
        return

    summary = config_summary(stage, trainer, *arg_objects)
    base_model = _base_model(stage, [*arg_objects, args])

    def create_model_card(tags=None, **_):
        # Called by push_to_hub on process zero, after the model is saved and before the upload.
        repo_id = trainer.hub_model_id or args.hub_model_id
        write_model_card(args.output_dir, stage, summary, repo_id=repo_id, tags=tags, base_model=base_model)

    # `--hub_token` would otherwise be pickled into training_args.bin, which push_to_hub uploads: pass it to the
    # upload call instead. (A token from HF_TOKEN or `hf auth login` is never in the args.)
    token, args.hub_token = args.hub_token, None
    trainer.create_model_card = create_model_card
    try:
        trainer.push_to_hub(commit_message=f"ppo_double {stage}: final model, model card, judge results", token=token)
    finally:
        del trainer.create_model_card
        args.hub_token = token
