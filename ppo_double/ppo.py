"""Everything PPO needs around TRL's PPOTrainer: the four models, early stopping, resuming from a checkpoint, and the
judge's verdict on the training rollouts."""

import gc
import logging
import os
from contextlib import contextmanager, nullcontext

import torch
from safetensors.torch import load_file
from torch.optim.lr_scheduler import LambdaLR
from transformers import AutoModelForCausalLM, TrainerCallback
from trl.experimental.ppo import PPOConfig
from trl.experimental.ppo import PPOTrainer as TRLPPOTrainer
from trl.experimental.ppo import ppo_trainer as trl_ppo_trainer

from .checkpoints import TRAINER_STATE, WEIGHTS
from .distributed import full_weights
from .errors import UsageError
from .modeling import build_value_model, scale_prefix_embeddings
from .reward import NumeralReward, load_scorer

logger = logging.getLogger(__name__)

__all__ = ["PPOConfig", "PPOTrainer", "build_ppo_models"]  # recipes take TRL's experimental PPO through this module


def build_ppo_models(
    sft_model_path: str,
    reward_model_path: str | None,
    reward: str = "classifier",
    use_peft: bool = False,
    scale_prefixes: bool = False,
) -> dict:
    """policy, ref_model, value_model and reward_model, as PPOTrainer takes them.

    The value model is GPT2ForSequenceClassification on the SFT transformer (its scalar head starts fresh); the
    reference is a frozen second copy of the SFT policy, or None with LoRA (TRL then disables the adapters). The
    reward model adapts the scorer of `reward` (`classifier`, from `reward_model_path`, or `rule`; ppo_double.reward).
    `scale_prefixes`: the policy's and value model's prefix embeddings at the trained rows' scale (modeling.py).
    Call after `check_checkpoint(sft_model_path, "policy")` (recipes/ppo.py checks it before anything else).
    """
    reward_model = NumeralReward(load_scorer(reward, reward_model_path))  # checks the classifier's folder too
    policy = AutoModelForCausalLM.from_pretrained(sft_model_path, use_safetensors=True)
    ref_model = None if use_peft else AutoModelForCausalLM.from_pretrained(sft_model_path, use_safetensors=True)
    value_model = build_value_model(sft_model_path)
    if scale_prefixes:
        scale_prefix_embeddings(policy)
        scale_prefix_embeddings(value_model)
    return {"model": policy, "ref_model": ref_model, "value_model": value_model, "reward_model": reward_model}


VALUE_MODEL = "value_model"  # subfolder of a PPO checkpoint


def _prepare_deepspeed(model, accelerator):
    """TRL's prepare_deepspeed, except for the reward: NumeralReward is a frozen scoring function (the rule has no
    weights at all), not a model DeepSpeed could wrap (it reads `model.config`). TRL calls it on the reward and the
    reference model under DeepSpeed; PPOTrainer moves the reward to the device itself."""
    return model if isinstance(model, NumeralReward) else _trl_prepare_deepspeed(model, accelerator)


_trl_prepare_deepspeed = trl_ppo_trainer.prepare_deepspeed
trl_ppo_trainer.prepare_deepspeed = _prepare_deepspeed


class PPOTrainer(TRLPPOTrainer):
    """TRL's PPOTrainer, stoppable by a callback, able to save from a multi-process run, resumable, and judging the
    rollouts it trains on.

    Every update's metrics get `judge/rollout_exact_match`, the rule-based judge's exact-match share of the rollouts
    the reward model scored in that update, next to TRL's `objective/scores` (their mean reward): the gap between the
    two is what the reward pays for that the judge does not (docs/results.md, "Reward hacking, measured").

    TRL's update loop never reads `control.should_training_stop`, so a last callback turns a stop asked for in
    `on_step_end` (by JudgeCallback, after the update's optimizer steps and logging) into an exception, and we finish
    the run here the way TRL's loop would have: `on_train_end`. A stop that also asks for a checkpoint (a signal,
    ppo_double.signals) is raised only once TRL's loop has saved it, in `on_save`.

    TRL 1.12's PPOTrainer cannot resume (huggingface/trl#2657): its checkpoints hold the policy, optimizer, scheduler,
    RNG states and trainer state (episode counter included) but not the value model, and `train()` always starts at
    update 1. We add the value model to every checkpoint, and `train(resume_from_checkpoint=...)` restores it all and
    lets TRL's own loop run the remaining updates, on the batches an uninterrupted run would have drawn.
    """

    # TRL's loop logs every update (no metrics averaged over updates): ppo_double.signals may stop after any update.
    logs_every_step = True
    # Read by transformers 5's Trainer._save on every rank; TRL 1.12's PPOTrainer never sets it (an AttributeError on
    # non-main processes of a multi-process run).
    is_distributed_loading_by_transformers = False

    def __init__(self, *args, value_warmup_updates: int = 0, **kwargs):
        """`value_warmup_updates`: the first updates train the value model only (see `create_scheduler`)."""
        self.value_warmup_updates = value_warmup_updates
        super().__init__(*args, **kwargs)
        self.reward_model.to(self.accelerator.device)  # TRL does it only without DeepSpeed (see _prepare_deepspeed)
        if isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
            # With LoRA (no reference copy) TRL's loop reads `model.policy` on the DDP-wrapped model for the reference
            # pass, which DDP does not forward (DeepSpeed's engine does): a plain attribute, not a second submodule.
            object.__setattr__(self.model, "policy", self.accelerator.unwrap_model(self.model).policy)

    def create_optimizer(self, model=None):
        """Trainer's optimizer over policy and value model, each parameter group split in a policy and a value part.

        TRL trains both with one optimizer and one scheduler; separate groups let the scheduler hold the policy still
        while the value model warms up. (The optimizer is new, so no state refers to the old groups.)
        """
        optimizer = super().create_optimizer(model)
        value = {id(p) for p in self.model.value_model.parameters()}  # self.model: TRL's PolicyAndValueWrapper
        groups = list(optimizer.param_groups)
        optimizer.param_groups.clear()
        for group in groups:
            for is_value in (False, True):
                params = [p for p in group["params"] if (id(p) in value) == is_value]
                if params:
                    optimizer.add_param_group({**group, "params": params, "value_model": is_value})
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """Trainer's scheduler (stepped once per PPO update by TRL), with the policy's learning rate 0 for the first
        `value_warmup_updates` updates: a critic warm-up.

        The value head starts untrained. While its estimates are noise, GAE spreads the blame for a wrong numeral
        system over every answer token, and the policy learns to switch systems in mid-answer: the greedy answers'
        correct-double share dipped to 96 % on the way (docs/sweep.md). A value model that has first learned what a
        rollout is worth gives the blame to the token that chose the system.
        """
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if not self.value_warmup_updates:
            return scheduler
        if not isinstance(scheduler, LambdaLR):
            raise UsageError(
                f"value_warmup_updates needs a learning-rate schedule of LambdaLR type; lr_scheduler_type "
                f"{self.args.lr_scheduler_type!r} is not: pick linear, cosine or constant, or --value_warmup_updates 0"
            )
        warmup = self.value_warmup_updates
        for i, group in enumerate(scheduler.optimizer.param_groups):
            if not group["value_model"]:
                scheduler.lr_lambdas[i] = lambda update, base=scheduler.lr_lambdas[i]: (
                    base(update) if update >= warmup else 0.0
                )
                group["lr"] = group["initial_lr"] * scheduler.lr_lambdas[i](scheduler.last_epoch)
        return scheduler

    @contextmanager
    def _unwrapped_model(self):
        """`self.model` without DDP's wrapper for the block: TRL's saving code reads `.policy` and `.config` on it."""
        wrapped = self.model
        self.model = self.accelerator.unwrap_model(wrapped)
        try:
            yield self.model
        finally:
            self.model = wrapped

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "objective/scores" in logs:  # one update's metrics, logged by TRL's loop on every process
            exact = self.accelerator.unwrap_model(self.reward_model).pop_rollout_exact_match()
            exact = torch.tensor(exact, device=self.accelerator.device)
            logs["judge/rollout_exact_match"] = self.accelerator.gather_for_metrics(exact).mean().item()
        super().log(logs, start_time)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        # TRL's save_model saves `self.model.policy`. Under DeepSpeed it passes that policy to Trainer.save_model as if
        # it were the engine, which transformers 5 asks for a DeepSpeed config (an AttributeError): the policy's whole
        # weights (gathered under ZeRO-3) are saved instead as a one-process run saves them. The engine still writes
        # its own checkpoint of weights and optimizer state (Trainer._save_optimizer_and_scheduler).
        with self._whole_models(), self._engine_off():
            super().save_model(output_dir, _internal_call)

    def _save_checkpoint(self, model, trial):
        with self._whole_models() as models:
            # Written before the trainer's own files, so trainer_state.json (last) still marks a complete checkpoint.
            if self.args.should_save:
                folder = os.path.join(self.args.output_dir, f"checkpoint-{self.state.global_step}", VALUE_MODEL)
                models.value_model.save_pretrained(folder)
        with self._unwrapped_model():  # TRL's _save_checkpoint writes a model card from `self.model.config`
            super()._save_checkpoint(model, trial)

    @contextmanager
    def _whole_models(self):
        """Policy and value model without DDP's wrapper, with their whole weights (gathered under ZeRO-3): TRL's saving
        code reads `.policy` and `.config` on `self.model`."""
        with full_weights(self) if self.is_deepspeed_enabled else nullcontext(), self._unwrapped_model() as models:
            yield models

    @contextmanager
    def _engine_off(self):
        enabled, self.is_deepspeed_enabled = self.is_deepspeed_enabled, False
        try:
            yield
        finally:
            self.is_deepspeed_enabled = enabled

    def train(self, resume_from_checkpoint: str | None = None):
        total = self.args.num_total_batches
        if resume_from_checkpoint:
            self._restore(resume_from_checkpoint)
        self.add_callback(_StopWhenAsked)  # last: it sees what every other callback decided
        announce = self.accelerator.print
        # TRL's loop announces itself ("===training policy==="): a line that tells the user nothing the bar does not.
        self.accelerator.print = lambda *a, **k: None if a == ("===training policy===",) else announce(*a, **k)
        # TRL's loop runs gc.collect() twice per update; with torch and transformers loaded a full collection walks
        # ~300k objects (0.17 s, a fifth of a CPU update). Frozen, those are skipped: it walks what the loop makes.
        gc.freeze()
        try:
            super().train()
        except _StopTraining:
            self.control = self.callback_handler.on_train_end(self.args, self.state, self.control)
        finally:
            gc.unfreeze()
            self.accelerator.print = announce
            self.remove_callback(_StopWhenAsked)
            self.args.num_total_batches = total

    def _restore(self, checkpoint: str) -> None:
        """Load a checkpoint's weights and optimizer now; its trainer state, data position and RNG during train()."""
        value_weights = os.path.join(checkpoint, VALUE_MODEL, WEIGHTS)
        if not os.path.isfile(value_weights):
            raise UsageError(
                f"{checkpoint} has no {VALUE_MODEL}/ (not a ppo_double PPO checkpoint): pass another one, or "
                "--resume_from_checkpoint false to start over"
            )
        # (weights_only below: tensors and plain containers, no pickled code)
        if self.is_deepspeed_enabled:  # DeepSpeed's own checkpoint: policy, value model and this process's shard of
            self.model.load_checkpoint(checkpoint, load_lr_scheduler_states=False)  # the optimizer state
        else:
            models = self.accelerator.unwrap_model(self.model)
            self._load_from_checkpoint(checkpoint, model=models.policy)  # full weights, or the LoRA adapter
            models.value_model.load_state_dict(load_file(value_weights))
            # Trainer._load_optimizer_and_scheduler needs attributes TRL's PPOTrainer never sets: its load, by hand.
            optimizer = torch.load(os.path.join(checkpoint, "optimizer.pt"), map_location="cpu", weights_only=True)
            self.optimizer.load_state_dict(optimizer)
        scheduler = torch.load(os.path.join(checkpoint, "scheduler.pt"), map_location="cpu", weights_only=True)
        self.lr_scheduler.load_state_dict(scheduler)
        saved = type(self.state).load_from_json(os.path.join(checkpoint, TRAINER_STATE))  # TRL's, with `episode`
        # TRL's loop runs updates 1..num_total_batches and resets the state first: run only the remaining updates,
        # and put the saved state back once it has been reset (on_train_begin, before any other callback).
        self.callback_handler.callbacks.insert(0, _RestoreState(saved, self.args.num_total_batches))
        self.args.num_total_batches -= saved.global_step
        # The data order is drawn when TRL's loop first iterates the dataloader, from the RNG state every run has
        # there (same seed): skip the batches already trained on, then continue from the checkpoint's RNG states.
        self.dataloader = _SkipBatches(self.dataloader, saved.global_step, lambda: self._load_rng_state(checkpoint))


class _StopTraining(Exception):
    pass


class _StopWhenAsked(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        # TRL's loop ends after the last update by itself; with should_save it saves right after on_step_end
        if control.should_training_stop and not control.should_save and state.global_step < state.max_steps:
            raise _StopTraining

    def on_save(self, args, state, control, **kwargs):
        if control.should_training_stop and state.global_step < state.max_steps:
            raise _StopTraining


class _RestoreState(TrainerCallback):
    def __init__(self, saved, max_steps: int):
        self.saved, self.max_steps = saved, max_steps

    def on_train_begin(self, args, state, control, **kwargs):
        for name in ("global_step", "episode", "epoch", "log_history", "total_flos"):
            setattr(state, name, getattr(self.saved, name))
        state.max_steps = self.max_steps


class _SkipBatches:
    """A dataloader whose first pass leaves out its first `skip` batches and then calls `then()`."""

    def __init__(self, dataloader, skip: int, then):
        self.dataloader, self.skip, self.then = dataloader, skip, then

    def __len__(self):
        return len(self.dataloader)

    def __iter__(self):
        if self.then is None:
            yield from self.dataloader
            return
        iterator, skipped = iter(self.dataloader), 0
        while skipped < self.skip:  # more batches than one pass: later passes reshuffle, so order may differ there
            try:
                next(iterator)
                skipped += 1
            except StopIteration:
                iterator = iter(self.dataloader)
        then, self.then = self.then, None
        then()
        yield from iterator
