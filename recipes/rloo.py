"""Stage 3, RLOO instead of PPO: the SFT policy learns to answer in the numeral system the prompt's prefix asks for.

RLOO samples several completions per prompt and scores each against the mean reward of the others (leave one
out): no value model.

accelerate launch recipes/rloo.py                   # defaults from recipes/configs/rloo.yaml
accelerate launch recipes/rloo.py --use_peft true   # LoRA
python recipes/rloo.py --max_steps 100              # any field overrides the YAML
"""

from pathlib import Path

from trl import ModelConfig, RLOOConfig, RLOOTrainer

from ppo_double.args import parse_args
from ppo_double.errors import run
from ppo_double.online import GroupArguments, train_group


def main(argv=None):
    script_args, config, model_args = parse_args(
        (GroupArguments, RLOOConfig, ModelConfig), str(Path(__file__).parent / "configs" / "rloo.yaml"), argv
    )
    # parse -> prompts, policy, reward function -> train with the judge -> judge on the test numbers -> save / push
    return train_group(RLOOTrainer, "rloo", script_args, config, model_args)


if __name__ == "__main__":
    run(main)
