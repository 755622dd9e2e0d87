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
    """TRL's PPOTrainer, stoppable by a callback, and able to save from a multi-process run.

    TRL's update loop never reads `control.should_training_stop`, so JudgeCallback raises StopTraining from
    `on_step_end` (after the update's optimizer steps, logging and checkpointing) and we finish the run here the way
    TRL's loop would have: `on_train_end`.
    """

    # Read by transformers 5's Trainer._save on every rank; TRL 1.12's PPOTrainer never sets it (an AttributeError on
    # non-main processes of a multi-process run).
    is_distributed_loading_by_transformers = False

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """TRL's save_model saves `model.policy`, which it does not find behind DDP's wrapper: unwrap first."""
        wrapped = self.model
        self.model = self.accelerator.unwrap_model(wrapped)
        try:
            super().save_model(output_dir, _internal_call)
        finally:
            self.model = wrapped

    def train(self):
        try:
            super().train()
        except StopTraining:
            self.control = self.callback_handler.on_train_end(self.args, self.state, self.control)
