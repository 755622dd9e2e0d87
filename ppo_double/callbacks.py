"""Judge the policy while PPO, GRPO or RLOO trains, and stop once a validation split holds the target."""

import logging
import random
import time

import torch
from transformers import GPT2LMHeadModel, Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback

from .distributed import gathered_model, load_plain, on_main, torch_threads
from .evaluate import judged
from .task import PREFIXES, VALIDATION_NUMBERS, heldout_prompts

logger = logging.getLogger(__name__)


def episodes(args, step: int) -> int:
    """Completions sampled in `step` updates (an episode: one prompt and its sampled completion, PPO's word).

    PPO samples one rollout batch per update (`batch_size`, set by PPOTrainer). GRPO and RLOO train each update on a
    global batch of completions and sample a new one every `num_iterations` updates.
    """
    if hasattr(args, "num_iterations"):  # GRPOConfig, RLOOConfig
        global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        return step * global_batch // args.num_iterations
    return step * args.batch_size


def greedy_holds(logs: dict, target: float) -> bool:
    """Every prefix's greedy exact match is at or above `target`: the stop rule's first clause."""
    return all(logs[f"eval/exact_match/{p}"] >= target for p in PREFIXES)


def holds_target(
    logs: dict, start: dict, target: float, sampled_target: float, keep_correct: bool, margin: float = 0.0
) -> bool:
    """The stop rule on one judgement (`logs`; `start`: the judgement of the starting policy). A judgement whose greedy
    answers miss the target holds no sampled shares: JudgeCallback does not draw them there."""
    if not greedy_holds(logs, target):
        return False
    gained = logs["eval/sampled_correct"] >= start["eval/sampled_correct"] + margin
    sampled = all(logs[f"eval/sampled_exact_match/{p}"] >= sampled_target for p in PREFIXES)
    return sampled and (not keep_correct or gained)


def streaks(judgements: list[dict], holds) -> list[int]:
    """After each judgement past the first (the starting policy's, which never counts), how many judgements in a row
    `holds(judgement)` has been true: the stop rule's streak."""
    counts = [0]
    for entry in judgements[1:]:
        counts.append(counts[-1] + 1 if holds(entry) else 0)
    return counts[1:]


def first_stop(judgements: list[dict], patience: int, holds) -> dict | None:
    """The judgement the stop rule stops at (its streak reaches `patience`), or None. JudgeCallback applies the rule
    as a run trains; the bench and docs/stop_margin replay it on a finished run's judgements with this."""
    return next((entry for entry, n in zip(judgements[1:], streaks(judgements, holds)) if n >= patience), None)


class JudgeCallback(TrainerCallback):
    """Every `every` updates: greedy and sampled (T=1; `samples` per prompt) answers on held-out prefixed prompts,
    scored by the judge.

    Logs `eval/exact_match` (greedy; overall and per prefix), `eval/sampled_exact_match` (overall and per prefix),
    `eval/correct` (greedy share of correct doubles in any system; overall and per prefix) and
    `eval/sampled_correct` next to TRL's own metrics, through the Trainer's `log`, so they reach the console,
    `log_history` and every tracker. With a stop rule (`target`), the sampled shares are logged only where greedy holds
    the target (see `_measure`). The starting policy is judged too, before the first update (logged at step 0):
    the one saved in `start_model_path` when given, i.e. the SFT policy before scale_prefix_embeddings changes the
    copy that trains (that change alone lowers the sampled correct share by up to 1.4 points), else the trainer's.

    With `target`, training stops once greedy exact match is >= target and sampled exact match >= `sampled_target`, for
    every prefix, on `patience` evaluations in a row; with `keep_correct`, the sampled share of correct doubles must
    also be higher than the starting policy's by `correct_margin` or more. The callback then sets
    `control.should_training_stop`, which GRPOTrainer and RLOOTrainer honour (and ppo_double.ppo.PPOTrainer, for TRL's
    PPO loop that does not). The prompts come from VALIDATION_NUMBERS: the test numbers stay untouched by any training
    decision. `history` keeps every judgement with its update (`step`), `episode` and `seconds` since training began in
    this process; a resumed run replays it from the log history. One callback for PPOTrainer (whose model wraps `policy`
    and value model), GRPOTrainer and RLOOTrainer (whose model is the policy).
    """

    def __init__(
        self,
        trainer,
        every: int,
        numbers=VALIDATION_NUMBERS,
        target: float | None = None,
        sampled_target: float = 0.0,
        patience: int = 2,
        keep_correct: bool = False,
        correct_margin: float = 0.0,
        samples: int = 1,
        seed: int = 0,
        start_model_path: str | None = None,
        threads: int | None = None,
    ):
        self.trainer = trainer
        self.start_model_path = start_model_path
        self.every = every
        self.prompts = heldout_prompts(prefixed=True, numbers=numbers)
        self.target = target
        self.sampled_target = sampled_target
        self.patience = patience
        self.keep_correct = keep_correct
        self.correct_margin = correct_margin
        self.samples = samples
        self.seed = seed
        self.threads = threads  # torch threads while judging (None: the training's)
        self.streak = 0
        self.stopped = False  # the stop rule held: the run ended at it
        self.history = []
        self.started = time.perf_counter()

    def judge(self, args, state, start: bool = False) -> dict:
        """The policy's verdicts now (`start`: the starting policy's), recorded in `history` and returned as logs."""
        logs = self.measure(start)
        seconds = time.perf_counter() - self.started  # since this process began training, judging included
        self.history.append(
            {"episode": episodes(args, state.global_step), "step": state.global_step, **logs, "seconds": seconds}
        )
        return logs

    def measure(self, start: bool = False) -> dict:
        """The judge's logs, measured once on the main process and the same on every process, so that every process
        takes the same stop decision on the same update. The trained policy is judged as a plain copy of its whole
        weights (distributed.gathered_model: under ZeRO-3 every process takes part in gathering them)."""
        from_folder = start and self.start_model_path is not None
        policy = None if from_folder else gathered_model(self.trainer)
        with torch_threads(self.threads):
            return on_main(self._measure, policy, start)

    def _measure(self, policy, start: bool) -> dict:
        if policy is None:  # the starting policy as its folder holds it: see start_policy
            policy = self.start_policy()
        tokenizer = self.trainer.processing_class
        greedy = judged(policy, tokenizer, self.prompts)
        logs = {"eval/exact_match": greedy["all"]["exact_match"], "eval/correct": greedy["all"]["correct"]}
        for prefix in PREFIXES:
            logs[f"eval/exact_match/{prefix}"] = greedy[prefix]["exact_match"]
            logs[f"eval/correct/{prefix}"] = greedy[prefix]["correct"]
        # With a stop rule, the sampled answers (4/5 of a judgement's time) are drawn only where greedy holds the
        # target: before that the rule cannot hold, so skipping them changes no decision. The starting policy's are
        # always drawn: keep_correct compares with them.
        if start or self.target is None or greedy_holds(logs, self.target):
            sampled = judged(policy, tokenizer, self.prompts, self.samples, self.seed)
            logs["eval/sampled_exact_match"] = sampled["all"]["exact_match"]
            logs["eval/sampled_correct"] = sampled["all"]["correct"]
            for prefix in PREFIXES:
                logs[f"eval/sampled_exact_match/{prefix}"] = sampled[prefix]["exact_match"]
        return logs

    def reached_target(self, logs: dict) -> bool:
        start, margin = self.history[0], self.correct_margin
        return holds_target(logs, start, self.target, self.sampled_target, self.keep_correct, margin)

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run: the judgements so far are in the restored log history; replay them for history and streak.
        self.history, self.streak, self.started = [], 0, time.perf_counter()
        for entry in state.log_history:
            if "eval/exact_match" in entry:
                logs = {k: v for k, v in entry.items() if k.startswith("eval/")}
                self.history.append({"episode": episodes(args, entry["step"]), "step": entry["step"], **logs})
        if self.target is not None and len(self.history) > 1:
            self.streak = streaks(self.history, self.reached_target)[-1]
        self.stopped = self.target is not None and self.streak >= self.patience
        if not self.history:  # a new run: the starting point, for the plots and for keep_correct
            self.log(self.judge(args, state, start=True), control)

    def start_policy(self):
        """The policy as its folder holds it: the trainer's copy may have been changed before the first update
        (scale_prefix_embeddings), and keep_correct compares with the SFT policy itself, as the test does."""
        return load_plain(self.start_model_path, GPT2LMHeadModel).to(self.trainer.accelerator.device)

    def log(self, logs: dict, control) -> None:
        # Trainer.log, not GRPO's and RLOO's override of it: theirs would flush the metrics they average between two
        # logging steps into this entry. Its on_log clears `should_log`: the update's own log entry must still follow.
        should_log = control.should_log
        Trainer.log(self.trainer, logs)
        control.should_log = should_log

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every != 0:
            return
        logs = self.judge(args, state)
        self.log(logs, control)
        if self.target is None:
            return
        self.streak = self.streak + 1 if self.reached_target(logs) else 0
        if self.streak >= self.patience:
            logger.warning(
                "validation exact match >= %.1f%% greedy and >= %.1f%% sampled for every prefix%s on %d evaluations "
                "in a row: stopping at episode %d",
                100 * self.target,
                100 * self.sampled_target,
                self.correct_clause(),
                self.patience,
                episodes(args, state.global_step),
            )
            control.should_training_stop = self.stopped = True

    def correct_clause(self) -> str:
        if not self.keep_correct:
            return ""
        if self.correct_margin == 0:
            return ", sampled answers right doubles as often as at the start"
        return f", sampled answers right doubles {100 * self.correct_margin:.2f} points more often than at the start"

    def summary(self) -> str:
        """The last judgement, in the stop rule's terms: `greedy 99.8 / 100.0 / 99.6 %, sampled ...`."""
        last, start = self.history[-1], self.history[0]
        greedy = " / ".join(f"{100 * last[f'eval/exact_match/{p}']:.1f}" for p in PREFIXES)
        if "eval/sampled_correct" not in last:
            return f"exact match greedy {greedy} % for {' / '.join(PREFIXES)} (below the target: no sampled answers)"
        sampled = " / ".join(f"{100 * last[f'eval/sampled_exact_match/{p}']:.1f}" for p in PREFIXES)
        return (
            f"exact match greedy {greedy} %, sampled {sampled} % for {' / '.join(PREFIXES)}; "
            f"sampled correct {100 * last['eval/sampled_correct']:.2f} % "
            f"(at the start {100 * start['eval/sampled_correct']:.2f} %)"
        )


class CompactProgressCallback(ProgressCallback):
    """The progress bar, with one short line per log instead of TRL's ~20-metric dict per update.

    Only what tells whether the run works goes to the console, every `logging_steps` updates: episodes, reward, KL
    (PPO's names, then GRPO's and RLOO's), and the judge's exact match whenever it runs. Every metric still reaches
    `log_history` (trainer_state.json, `make plots`) and any `report_to` tracker.
    """

    KEYS = {
        "objective/scores": "reward",
        "judge/rollout_exact_match": "exact(rollouts)",
        "reward": "reward",
        "objective/kl": "kl",
        "kl": "kl",
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
        shown = [f"{name} {logs[key]:{self.FORMAT}}" for key, name in self.KEYS.items() if key in logs]
        if shown:
            self.training_bar.write(f"{self.position(args, state)}: " + ", ".join(shown))

    FORMAT = ".3f"

    def position(self, args, state) -> str:
        return f"episode {episodes(args, state.global_step)}"


class StepProgressCallback(CompactProgressCallback):
    """The same console for SFT and the reward classifier: `step 250/2000: loss 0.4121, lr 0.002963` every
    `logging_steps` steps (SFT adds its token accuracy), instead of the Trainer's metrics dict."""

    KEYS = {"loss": "loss", "mean_token_accuracy": "token accuracy", "learning_rate": "lr"}
    FORMAT = ".4g"

    def position(self, args, state) -> str:
        return f"step {state.global_step}/{state.max_steps}"


def compact_console(trainer, callback: type[ProgressCallback] = StepProgressCallback) -> None:
    """Replace the trainer's progress bar by `callback`'s (the same bar, our short lines instead of metric dicts)."""
    if not trainer.args.disable_tqdm:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(callback)


class DetectionProbe(TrainerCallback):
    """How well the reward stage's phase 2 flags replaced numerals on held-out answers, every `every` steps.

    Phase 2 learns abruptly, at a step that depends on the seed and the hardware's numerics (recipes/reward.py), so
    the step at which it has learned is worth recording: `history` holds (step, share of answer numerals flagged
    right) and `learned_at` the first step at which that share reached `threshold` (None: never). The held-out batch
    is corrupted once, up front, without touching the training's random state: measuring changes no weight.
    """

    def __init__(self, model, collator, answers, every: int = 100, threshold: float = 0.999):
        python_state = random.getstate()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            random.seed(0)
            self.batch = collator([{"input_ids": ids} for ids in answers["input_ids"]])
        random.setstate(python_state)
        self.model, self.every, self.threshold = model, every, threshold
        self.history, self.learned_at = [], None

    @torch.no_grad()
    def accuracy(self) -> float:
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        inputs = {k: self.batch[k].to(device) for k in ("input_ids", "attention_mask")}
        logits = self.model(**inputs).logits
        self.model.train(was_training)
        labels = self.batch["labels"].to(device)
        answer = labels >= 0
        return (logits.argmax(-1)[answer] == labels[answer]).float().mean().item()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.history.append((state.global_step, self.accuracy()))
            if self.learned_at is None and self.history[-1][1] >= self.threshold:
                self.learned_at = state.global_step
