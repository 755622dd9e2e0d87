"""Judge the policy while PPO trains, and stop once a validation split holds the target."""

import logging

from transformers import TrainerCallback

from .evaluate import generate_answers, score
from .task import VALIDATION_NUMBERS, heldout_prompts

logger = logging.getLogger(__name__)


class StopTraining(Exception):
    """Raised by JudgeCallback to end PPO early (see ppo_double.ppo.PPOTrainer.train for why an exception)."""


class JudgeCallback(TrainerCallback):
    """Every `every` updates: greedy answers on held-out prefixed prompts, scored by the rule-based judge.

    Logs `eval/exact_match` (overall and per prefix) and `eval/correct` (share of correct doubles in any system)
    next to TRL's own metrics, through `trainer.log`, so they reach the console, `log_history` and every tracker.
    With `target`, training stops once exact match is >= target for every prefix on `patience` evaluations in a
    row. The prompts come from VALIDATION_NUMBERS: the test numbers stay untouched by any training decision.
    """

    def __init__(self, trainer, every: int, numbers=VALIDATION_NUMBERS, target: float | None = None, patience: int = 2):
        self.trainer = trainer
        self.every = every
        self.prompts = heldout_prompts(prefixed=True, numbers=numbers)
        self.target = target
        self.patience = patience
        self.streak = 0
        self.history = []

    def judge(self, state) -> dict:
        policy = self.trainer.accelerator.unwrap_model(self.trainer.model).policy
        was_training = policy.training
        answers = generate_answers(policy, self.trainer.processing_class, self.prompts)
        policy.train(was_training)
        metrics = score(self.prompts, answers)
        logs = {"eval/exact_match": metrics["all"]["exact_match"], "eval/correct": metrics["all"]["correct"]}
        for prefix, row in metrics.items():
            if prefix != "all":
                logs[f"eval/exact_match/{prefix}"] = row["exact_match"]
        self.history.append({"episode": state.episode, "step": state.global_step, **logs})
        return logs

    def on_step_end(self, args, state, control, **kwargs):
        # Every rank judges (the weights, hence the greedy answers, are identical), so all ranks reach the same
        # stop decision without a collective.
        if state.global_step % self.every != 0:
            return
        logs = self.judge(state)
        self.trainer.log(logs)
        if self.target is None:
            return
        per_prefix = [v for k, v in logs.items() if k.startswith("eval/exact_match/")]
        self.streak = self.streak + 1 if min(per_prefix) >= self.target else 0
        if self.streak >= self.patience:
            logger.warning(
                "validation exact match >= %.1f%% for every prefix on %d evaluations in a row: stopping at episode %d",
                100 * self.target,
                self.patience,
                state.episode,
            )
            raise StopTraining
