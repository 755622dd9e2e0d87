"""Stage 3 — PPO: the SFT policy learns to answer in the numeral system the prompt's prefix asks for.

accelerate launch recipes/ppo.py                   # defaults from recipes/configs/ppo.yaml
accelerate launch recipes/ppo.py --use_peft true   # LoRA
accelerate launch recipes/ppo.py --reward rule     # reward = the rule-based judge's verdict instead of the classifier
python recipes/ppo.py --total_episodes 2048        # any field overrides the YAML
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from transformers import set_seed
from transformers.trainer_callback import ProgressCallback
from trl import ModelConfig, get_peft_config
from trl.experimental.ppo import PPOConfig

from ppo_double.args import fit_to_device, parse_args
from ppo_double.callbacks import CompactProgressCallback, JudgeCallback
from ppo_double.checkpoints import final_folder, start_run
from ppo_double.data import prompt_dataset
from ppo_double.errors import run as run_main
from ppo_double.evaluate import evaluate, format_table, save_results
from ppo_double.hub import save_and_push
from ppo_double.modeling import load_tokenizer
from ppo_double.ppo import PPOTrainer, build_ppo_models
from ppo_double.task import VALIDATION_NUMBERS, heldout_prompts


@dataclass
class PPOScriptArguments:
    reward: Literal["classifier", "rule"] = field(
        default="classifier",
        metadata={"help": "classifier: p(requested system) from reward_model_path; rule: the judge's exact match"},
    )
    judge_every: int = field(default=8, metadata={"help": "judge held-out validation prompts every N PPO updates"})
    target_exact_match: float | None = field(
        default=0.995, metadata={"help": "stop once every prefix reaches this validation exact match (null: never)"}
    )
    target_sampled_exact_match: float = field(
        default=0.0, metadata={"help": "...and this sampled (T=1) validation exact match"}
    )
    target_patience: int = field(default=2, metadata={"help": "...on this many judged updates in a row"})


def main(argv=None):
    script_args, config, model_args = parse_args(
        (PPOScriptArguments, PPOConfig, ModelConfig), str(Path(__file__).parent / "configs" / "ppo.yaml"), argv
    )
    fit_to_device(config)
    run = start_run(config)  # checkpoints go to <output_dir>-checkpoints; a rerun resumes from the latest
    set_seed(config.seed)

    # Models: policy and frozen reference from SFT, value model on the SFT backbone, reward from the classifier (or
    # the rule-based judge).
    if script_args.reward == "rule":
        config.reward_model_path = None  # unused: the model card and training_args.bin name no classifier
    models = build_ppo_models(
        config.sft_model_path, config.reward_model_path, reward=script_args.reward, use_peft=model_args.use_peft
    )

    # Data: prefixed prompts (`S大写:3164x2=`) over the three prefixes, training numbers only.
    tokenizer = load_tokenizer(config.sft_model_path)
    train_dataset = prompt_dataset(tokenizer)
    eval_dataset = prompt_dataset(tokenizer, numbers=VALIDATION_NUMBERS)

    trainer = PPOTrainer(
        args=config,
        processing_class=tokenizer,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        peft_config=get_peft_config(model_args),
        **models,
    )
    judge = JudgeCallback(
        trainer,
        every=script_args.judge_every,
        target=script_args.target_exact_match,
        sampled_target=script_args.target_sampled_exact_match,
        patience=script_args.target_patience,
        seed=config.seed,
    )
    trainer.add_callback(judge)
    if not config.disable_tqdm:  # a short console line per log instead of TRL's metrics dict
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(CompactProgressCallback)
    trainer.train(resume_from_checkpoint=run.resume_from())  # policy, value model, optimizer, RNG, episode counter

    # The policy to save (LoRA: merged into the base weights, so it loads with AutoModelForCausalLM).
    models = trainer.accelerator.unwrap_model(trainer.model)  # policy + value model, without DDP's wrapper
    if model_args.use_peft:
        models.policy = models.policy.merge_and_unload()

    # The final folder: the rule-based judge's numbers on the test numbers, the policy, and with --push_to_hub a
    # model card. It appears at output_dir only once complete.
    with final_folder(trainer, run) as folder:
        if trainer.accelerator.is_main_process:
            results = evaluate(models.policy, tokenizer, heldout_prompts(prefixed=True), seed=config.seed)
            results["judged_during_training"] = judge.history
            print(format_table({k: results[k] for k in ("greedy", "sampled")}))
            save_results(results, f"{folder}/eval_results.json")
        save_and_push(trainer, "ppo", script_args, model_args)
    return trainer


if __name__ == "__main__":
    run_main(main)
