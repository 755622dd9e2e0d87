"""Stage 3 — PPO: the SFT policy learns to answer in the numeral system the prompt's prefix asks for.

accelerate launch recipes/ppo.py                   # defaults from recipes/configs/ppo.yaml
accelerate launch recipes/ppo.py --use_peft true   # LoRA
accelerate launch recipes/ppo.py --reward rule     # reward = the rule-based judge's verdict instead of the classifier
python recipes/ppo.py --total_episodes 2048        # any field overrides the YAML
"""

from dataclasses import dataclass, field
from pathlib import Path

from transformers import set_seed
from trl import ModelConfig

from ppo_double.args import fit_to_device, parse_args
from ppo_double.checkpoints import check_checkpoint, check_generation_fits, start_run
from ppo_double.data import prompt_dataset
from ppo_double.errors import run as run_main
from ppo_double.modeling import load_tokenizer
from ppo_double.online import RLArguments, add_judge, lora_config, save_final
from ppo_double.ppo import PPOConfig, PPOTrainer, build_ppo_models
from ppo_double.signals import train
from ppo_double.task import VALIDATION_NUMBERS


@dataclass
class PPOScriptArguments(RLArguments):
    value_warmup_updates: int = field(
        default=8, metadata={"help": "critic warm-up: the first N PPO updates train the value model only"}
    )


def main(argv=None):
    script_args, config, model_args = parse_args(
        (PPOScriptArguments, PPOConfig, ModelConfig), str(Path(__file__).parent / "configs" / "ppo.yaml"), argv
    )
    if script_args.reward == "rule":
        config.reward_model_path = None  # unused: the model card and training_args.bin name no classifier
    check_checkpoint(config.sft_model_path, "policy")
    check_generation_fits(config.sft_model_path, config.response_length, "response_length")
    fit_to_device(config)
    set_seed(config.seed)

    # Models: policy and frozen reference from SFT, value model on the SFT backbone, reward from the classifier (or
    # the rule-based judge).
    models = build_ppo_models(
        config.sft_model_path,
        config.reward_model_path,
        reward=script_args.reward,
        use_peft=model_args.use_peft,
        scale_prefixes=script_args.scale_prefix_embeddings,
    )
    # After every input is checked (a bad reward folder is refused before anything is written, the lock included).
    run = start_run(config)  # checkpoints go to <output_dir>-checkpoints; a rerun resumes from the latest

    # Data: prefixed prompts (`S大写:3164x2=`) over the three prefixes, training numbers only.
    tokenizer = load_tokenizer(config.sft_model_path)
    train_dataset = prompt_dataset(tokenizer)
    eval_dataset = prompt_dataset(tokenizer, numbers=VALIDATION_NUMBERS)

    trainer = PPOTrainer(
        args=config,
        processing_class=tokenizer,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        peft_config=lora_config(model_args),
        value_warmup_updates=script_args.value_warmup_updates,
        **models,
    )
    judge = add_judge(trainer, script_args, config.seed, config.sft_model_path)  # validation numbers; stop rule
    train(trainer, run.resume_from())  # policy, value model, optimizer, RNG, episode counter; stops on SIGTERM

    # The policy saved, judged on the test numbers (LoRA: merged into the base weights, so it loads with
    # AutoModelForCausalLM).
    save_final(trainer, run, judge, "ppo", script_args, model_args)
    return trainer


if __name__ == "__main__":
    run_main(main)
