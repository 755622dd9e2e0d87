"""Everything PPO needs around TRL's PPOTrainer: the four models, and early stopping."""

import logging

from transformers import AutoModelForCausalLM
from trl.experimental.ppo import PPOTrainer as TRLPPOTrainer

from .callbacks import StopTraining
from .modeling import build_value_model
from .reward import NumeralReward

logger = logging.getLogger(__name__)


def build_ppo_models(sft_model_path: str, reward_model_path: str, use_peft: bool = False) -> dict:
    """policy, ref_model, value_model and reward_model, as PPOTrainer takes them.

    The value model is GPT2ForSequenceClassification on the SFT transformer (its scalar head starts fresh); the
    reference is a frozen second copy of the SFT policy, or None with LoRA (TRL then disables the adapters).
    """
    policy = AutoModelForCausalLM.from_pretrained(sft_model_path)
    return {
        "model": policy,
        "ref_model": None if use_peft else AutoModelForCausalLM.from_pretrained(sft_model_path),
        "value_model": build_value_model(sft_model_path),
        "reward_model": NumeralReward.from_pretrained(reward_model_path),
    }


class PPOTrainer(TRLPPOTrainer):
    """TRL's PPOTrainer, stoppable by a callback.

    TRL's update loop never reads `control.should_training_stop`, so JudgeCallback raises StopTraining from
    `on_step_end` (after the update's optimizer steps, logging and checkpointing) and we finish the run here the way
    TRL's loop would have: `on_train_end`.
    """

    def train(self):
        try:
            super().train()
        except StopTraining:
            self.control = self.callback_handler.on_train_end(self.args, self.state, self.control)
