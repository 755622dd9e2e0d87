"""What the three RL stages share — PPO, GRPO and RLOO: the judge and its stop rule, the console, the final folder;
and the whole GRPO / RLOO stage, which differ only in TRL's trainer class.

    recipes/ppo.py     PPOTrainer: policy, frozen reference, value model, and the reward model `NumeralReward`
    recipes/grpo.py    train_group(GRPOTrainer, ...): the policy and the same classifier as a reward function
    recipes/rloo.py    train_group(RLOOTrainer, ...)
"""

import logging
from dataclasses import dataclass, field

from transformers import AutoModelForCausalLM, set_seed
from trl import get_peft_config

from .args import fit_to_device
from .callbacks import CompactProgressCallback, JudgeCallback, compact_console
from .checkpoints import check_checkpoint, check_generation_fits, start_run
from .checks import shortfalls
from .data import prompt_text_dataset
from .distributed import cpu_share, torch_threads
from .evaluate import TEST_SAMPLES, evaluate, format_table
from .finish import finish
from .modeling import load_tokenizer, scale_prefix_embeddings
from .reward import RewardFunction, RewardKind, load_scorer
from .signals import train
from .task import PREFIXES, VALIDATION_NUMBERS, heldout_prompts

logger = logging.getLogger(__name__)


@dataclass
class RLArguments:
    """What PPO, GRPO and RLOO share: the reward, the start, the judge during training and its stop rule."""

    reward: RewardKind = field(
        default="classifier",
        metadata={
            "help": "classifier: p(requested system) from reward_model_path; log_classifier: log p(requested system) "
            "(an ablation: docs/implementation-details.md); rule: the judge's exact match"
        },
    )
    scale_prefix_embeddings: bool = field(
        default=True,
        metadata={"help": "start the prefix characters' embeddings (never seen in SFT) at the trained rows' scale"},
    )
    judge_every: int = field(default=8, metadata={"help": "judge held-out validation prompts every N updates"})
    judge_numbers: int = field(
        default=500,
        metadata={"help": "validation numbers judged per prefix (N of 500, evenly spread): fewer is faster, noisier"},
    )
    judge_samples: int = field(
        default=4,
        metadata={
            "help": "sampled answers per validation prompt at each judgement: the sampled correct share that "
            "target_keep_correct compares is then precise to ~0.14 points (0.27 with 1)"
        },
    )
    judge_threads: int | None = field(
        default=None,
        metadata={
            "help": "torch CPU threads while judging (during training and at the end); null: this process's share "
            "of the physical cores. The training keeps its own (accelerate launch gives a CPU process 1), so a lone "
            "process judges on the cores it leaves idle: the same answers, sooner"
        },
    )
    test_samples: int = field(
        default=TEST_SAMPLES,
        metadata={
            "help": "sampled answers per test prompt in the final evaluation, the one of `make eval` (fewer: only "
            "for quick runs that check plumbing, as the tests do)"
        },
    )
    target_exact_match: float | None = field(
        default=0.995, metadata={"help": "stop once every prefix reaches this validation exact match (null: never)"}
    )
    target_sampled_exact_match: float = field(
        default=0.0, metadata={"help": "...and this sampled (T=1) validation exact match"}
    )
    target_keep_correct: bool = field(
        default=True,
        metadata={
            "help": "...and a sampled share of correct doubles (any system) no lower than the starting policy's "
            "(judged before the first update)"
        },
    )
    target_correct_margin: float = field(
        default=0.0,
        metadata={
            "help": "...higher by at least this share (0.001: 0.1 point): PPO's arithmetic dips while the prefixes "
            "separate and recovers slowly; stopping once it is merely back to the start's level, within the "
            "judge's noise, loses it on about half the seeds"
        },
    )
    target_patience: int = field(default=2, metadata={"help": "...on this many judged updates in a row"})
    # Floors on the final policy, judged on the test numbers before its folder is written (0: no check).
    min_exact_match: float = field(default=0.995, metadata={"help": "floor: greedy exact match, each prefix"})
    min_sampled_exact_match: float = field(
        default=0.98, metadata={"help": "floor: sampled (T=1) exact match, each prefix"}
    )


@dataclass
class GroupArguments(RLArguments):
    """GRPO and RLOO: what PPOConfig has and GRPOConfig / RLOOConfig lack."""

    sft_model_path: str = field(default="outputs/sft", metadata={"help": "the SFT policy to start from"})
    reward_model_path: str = field(default="outputs/reward", metadata={"help": "the reward classifier"})
    missing_eos_penalty: float | None = field(
        default=1.0, metadata={"help": "subtracted from the reward of a completion without EOS (as PPO's)"}
    )


def lora_config(model_args):
    """TRL's LoRA config from the ModelConfig fields (None without --use_peft), for the GPT-2 policy. Its attention
    and MLP layers are Conv1D, which stores weights transposed: LoRA must be told (fan_in_fan_out), or peft warns on
    every run and sets it itself."""
    config = get_peft_config(model_args)
    if config is not None:
        config.fan_in_fan_out = True
    return config


def spread(numbers: tuple, n: int) -> tuple:
    """`n` of the sorted `numbers`, evenly spaced: a smaller judge that still spans 1000-9999."""
    return tuple(numbers[i * len(numbers) // n] for i in range(n))


def add_judge(trainer, script_args: RLArguments, seed: int, start_model_path: str) -> JudgeCallback:
    """JudgeCallback on the validation numbers, and the compact console instead of the per-log metrics dict. The
    starting point it judges is the policy in `start_model_path` (the SFT folder), as saved."""
    judge = JudgeCallback(
        trainer,
        every=script_args.judge_every,
        numbers=spread(VALIDATION_NUMBERS, script_args.judge_numbers),
        target=script_args.target_exact_match,
        sampled_target=script_args.target_sampled_exact_match,
        patience=script_args.target_patience,
        keep_correct=script_args.target_keep_correct,
        correct_margin=script_args.target_correct_margin,
        samples=script_args.judge_samples,
        seed=seed,
        start_model_path=start_model_path,
        threads=script_args.judge_threads or cpu_share(),
    )
    compact_console(trainer, CompactProgressCallback)  # before the judge: the bar exists when it logs the start
    trainer.add_callback(judge)
    return judge


def save_final(trainer, run, judge: JudgeCallback, stage: str, script_args: RLArguments, *arg_objects):
    """The final folder (ppo_double.finish): the trained policy (LoRA merged), the rule-based judge's numbers on the
    test numbers with the judge's history during training, and with --push_to_hub a model card. It appears at
    output_dir only once complete, and only when those numbers hold the floors (ppo_double/checks.py)."""

    def judge_final(policy):
        prompts, seed = heldout_prompts(prefixed=True), trainer.args.seed
        with torch_threads(judge.threads):
            results = evaluate(policy, trainer.processing_class, prompts, seed=seed, samples=script_args.test_samples)
        results["judged_during_training"] = judge.history
        print(format_table(results))
        floors, measured = {}, {}
        for prefix in PREFIXES:
            measured[f"{prefix} greedy exact match"] = results["greedy"][prefix]["exact_match"]
            floors[f"{prefix} greedy exact match"] = script_args.min_exact_match
            measured[f"{prefix} sampled exact match"] = results["sampled"][prefix]["exact_match"]
            floors[f"{prefix} sampled exact match"] = script_args.min_sampled_exact_match
        if not shortfalls(measured, floors) and judge.target is not None and not judge.stopped:
            logger.warning(
                "warning: the stop rule never held on the validation numbers (last judgement: %s); the test numbers "
                "hold the floors, so the policy is saved. A larger budget (--%s) may sharpen it",
                judge.summary(),
                "total_episodes" if hasattr(trainer.args, "total_episodes") else "max_steps",
            )
        return results, measured, floors

    finish(trainer, run, stage, judge_final, "a larger budget, or another --seed", script_args, *arg_objects)


def train_group(trainer_class, stage: str, script_args: GroupArguments, config, model_args):
    """The GRPO or RLOO stage: `trainer_class` is TRL's GRPOTrainer or RLOOTrainer, `config` its config."""
    check_checkpoint(script_args.sft_model_path, "policy")
    check_generation_fits(script_args.sft_model_path, config.max_completion_length, "max_completion_length")
    fit_to_device(config)
    set_seed(config.seed)

    # Models: the policy from SFT; the reward classifier (or the rule-based judge) as a reward function (the same
    # score PPO's reward model gives, and PPO's missing-EOS penalty). GRPO and RLOO need no value model, and with
    # beta 0 no reference.
    tokenizer = load_tokenizer(script_args.sft_model_path)
    if script_args.reward == "rule":
        script_args.reward_model_path = None  # unused: the model card names no classifier
    scorer = load_scorer(script_args.reward, script_args.reward_model_path)
    reward = RewardFunction(scorer, tokenizer, missing_eos_penalty=script_args.missing_eos_penalty)
    policy = AutoModelForCausalLM.from_pretrained(script_args.sft_model_path, use_safetensors=True)
    if script_args.scale_prefix_embeddings:
        scale_prefix_embeddings(policy)
    # After every input is checked (a bad reward folder is refused before anything is written, the lock included).
    run = start_run(config)  # checkpoints go to <output_dir>-checkpoints; a rerun resumes from the latest

    # Data: prefixed prompts (`S大写:3164x2=`) over the three prefixes, training numbers only, as text.
    trainer = trainer_class(
        model=policy,
        reward_funcs=reward,
        args=config,
        train_dataset=prompt_text_dataset(),
        processing_class=tokenizer,
        peft_config=lora_config(model_args),
    )
    reward.to(trainer.accelerator.device)
    judge = add_judge(trainer, script_args, config.seed, script_args.sft_model_path)
    train(trainer, run.resume_from())  # the Trainer's own resume; stops cleanly on SIGTERM / Ctrl-C

    # The policy saved, judged on the test numbers (LoRA: merged into the base weights, so it loads with
    # AutoModelForCausalLM).
    save_final(trainer, run, judge, stage, script_args, model_args)
    return trainer
