"""Stage 3, GRPO instead of PPO: the SFT policy learns to answer in the numeral system the prompt's prefix asks for.

GRPO samples several completions per prompt and scores each against the group's mean reward: no value model.

accelerate launch recipes/grpo.py                   # defaults from recipes/configs/grpo.yaml
accelerate launch recipes/grpo.py --use_peft true   # LoRA
python recipes/grpo.py --max_steps 100              # any field overrides the YAML
"""

from pathlib import Path

from trl import GRPOConfig, GRPOTrainer, ModelConfig

from ppo_double.args import parse_args
from ppo_double.errors import run
from ppo_double.online import GroupArguments, train_group


def main(argv=None):
    script_args, config, model_args = parse_args(
        (GroupArguments, GRPOConfig, ModelConfig), str(Path(__file__).parent / "configs" / "grpo.yaml"), argv
    )
    # parse -> prompts, policy, reward function -> train with the judge -> judge on the test numbers -> save / push
    return train_group(GRPOTrainer, "grpo", script_args, config, model_args)


if __name__ == "__main__":
    run(main)
