"""Judge the policy while PPO trains, and stop once a validation split holds the target."""

import logging

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from .evaluate import evaluate
from .task import PREFIXES, VALIDATION_NUMBERS, heldout_prompts

logger = logging.getLogger(__name__)


class StopTraining(Exception):
    """Raised by JudgeCallback to end PPO early (see ppo_double.ppo.PPOTrainer.train for why an exception)."""


class JudgeCallback(TrainerCallback):
    """Every `every` updates: greedy and sampled (T=1) answers on held-out prefixed prompts, scored by the judge.

    Logs `eval/exact_match` (greedy; overall and per prefix), `eval/sampled_exact_match` (overall and per prefix),
    `eval/correct` (greedy share of correct doubles in any system; overall and per prefix) and
    `eval/sampled_correct` next to TRL's own metrics, through
    `trainer.log`, so they reach the console, `log_history` and every tracker. With `target`, training stops once
    greedy exact match is >= target and sampled exact match >= `sampled_target`, for every prefix, on `patience`
    evaluations in a row. The prompts come from VALIDATION_NUMBERS: the test numbers stay untouched by any training
    decision.
    """

    def __init__(
        self,
        trainer,
        every: int,
        numbers=VALIDATION_NUMBERS,
        target: float | None = None,
        sampled_target: float = 0.0,
        patience: int = 2,
        seed: int = 0,
    ):
        self.trainer = trainer
        self.every = every
        self.prompts = heldout_prompts(prefixed=True, numbers=numbers)
        self.target = target
        self.sampled_target = sampled_target
        self.patience = patience
        self.seed = seed
        self.streak = 0
        self.history = []

    def judge(self, state) -> dict:
        policy = self.trainer.accelerator.unwrap_model(self.trainer.model).policy
        was_training = policy.training
        results = evaluate(policy, self.trainer.processing_class, self.prompts, seed=self.seed)
        policy.train(was_training)
        greedy, sampled = results["greedy"], results["sampled"]
        logs = {"eval/exact_match": greedy["all"]["exact_match"], "eval/correct": greedy["all"]["correct"]}
        logs["eval/sampled_exact_match"] = sampled["all"]["exact_match"]
        logs["eval/sampled_correct"] = sampled["all"]["correct"]
        for prefix in PREFIXES:
            logs[f"eval/exact_match/{prefix}"] = greedy[prefix]["exact_match"]
            logs[f"eval/sampled_exact_match/{prefix}"] = sampled[prefix]["exact_match"]
            logs[f"eval/correct/{prefix}"] = greedy[prefix]["correct"]
        self.history.append({"episode": state.episode, "step": state.global_step, **logs})
        return logs

    def reached_target(self, logs: dict) -> bool:
        return all(
            logs[f"eval/exact_match/{p}"] >= self.target
            and logs[f"eval/sampled_exact_match/{p}"] >= self.sampled_target
            for p in PREFIXES
        )

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run: the judgements so far are in the restored log history; replay them for history and streak.
        self.history, self.streak = [], 0
        for entry in state.log_history:
            if "eval/exact_match" in entry:
                logs = {k: v for k, v in entry.items() if k.startswith("eval/")}
                self.history.append({"episode": entry["step"] * args.batch_size, "step": entry["step"], **logs})
                self.streak = self.streak + 1 if self.target is not None and self.reached_target(logs) else 0

    def on_step_end(self, args, state, control, **kwargs):
        # Every rank judges (the weights, hence the answers for a fixed seed, are identical), so all ranks reach the
        # same stop decision without a collective.
        if state.global_step % self.every != 0:
            return
        logs = self.judge(state)
        self.trainer.log(logs)
        if self.target is None:
            return
        self.streak = self.streak + 1 if self.reached_target(logs) else 0
        if self.streak >= self.patience:
            logger.warning(
                "validation exact match >= %.1f%% greedy and >= %.1f%% sampled for every prefix on %d evaluations in "
                "a row: stopping at episode %d",
                100 * self.target,
                100 * self.sampled_target,
                self.patience,
                state.episode,
            )
            raise StopTraining


class CompactProgressCallback(ProgressCallback):
    """The progress bar, with one short line per log instead of TRL's ~20-metric dict per update.

    Only what tells whether PPO works goes to the console, every `logging_steps` updates: episode, reward, KL, and the
    judge's exact match whenever it runs. Every metric still reaches `log_history` (trainer_state.json, `make plots`)
    and any `report_to` tracker.
    """

    KEYS = {
        "objective/scores": "reward",
        "judge/rollout_exact_match": "exact(rollouts)",
        "objective/kl": "kl",
        "eval/exact_match": "exact(greedy)",
        "eval/sampled_exact_match": "exact(sampled)",
        "eval/correct": "correct",
    }

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None:
            return
        logs = logs or {}
        # TRL logs every update whatever `logging_steps` says; the console shows every logging_steps-th, and the judge.
        if "eval/exact_match" not in logs and state.global_step % max(1, args.logging_steps) != 0:
            return
        shown = [f"{name} {logs[key]:.3f}" for key, name in self.KEYS.items() if key in logs]
        if shown:
            self.training_bar.write(f"episode {state.episode}: " + ", ".join(shown))
