"""Rewards: one scoring function per kind of reward, behind each trainer's reward interface.

A **scorer** is a callable `scorer(input_ids, attention_mask) -> FloatTensor[batch]` on full, right-padded token rows
`S<prefix>:<q>x2=<answer>E` (`P` after the end). There are two:

- `ClassifierScorer`: the BERT numeral-system classifier of `recipes/reward.py`. It reads the requested system from
  the prompt prefix, replaces the prefix by `__` (the classifier was trained on unprefixed text), classifies, and
  returns the probability of the requested class, in [0, 1]. For an unprefixed `__` prompt, where any system is
  right, it returns 1 - p(invalid) with this project's 4-class classifier (`make reward`: digits, lower, upper,
  invalid) and 1 with the tutorial's 3-class one (`make reward-tutorial`: digits, lower, upper), which has no notion
  of a wrong answer. That is also why the 3-class classifier can be fooled: a wrong double written in the requested
  system scores as well as the right one (docs/results.md, "Reward hacking, measured").
- `RuleScorer`: the rule-based judge's verdict (`ppo_double.task.judge`): 1 for an exact match (the right double, in
  the requested system, then `E`), else 0. It cannot be fooled; it is the ceiling a classifier is measured against.

Why a probability and not a log-probability (`--reward log_classifier`, log p(requested)): log-probabilities are
unbounded below, so a few very wrong samples dominate the advantages; measured, in
docs/implementation-details.md.

`load_scorer(kind, path)` builds either; `RewardFunction(scorer, ...)` adapts it to the reward-function contract of
GRPOTrainer and RLOOTrainer, and `NumeralReward(scorer)` to the reward model TRL 1.12's PPOTrainer calls,
`trl.experimental.utils.get_reward(model, query_responses, pad_token_id, ...)`:

    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(input_ids, attention_mask, position_ids, ...).hidden_states[-1]
    reward = model.score(hidden)[i, last non-pad token of row i]

`NumeralReward.backbone` returns the scorer's reward broadcast over every position as a one-feature "hidden state",
and `score` is the identity. It also judges every row it scores, so the PPO trainer can log what the judge says about
the very rollouts the reward paid for (`judge/rollout_exact_match` next to TRL's `objective/scores`).
"""

from typing import Literal, get_args

import torch
from torch import nn
from transformers import AutoConfig, BertForSequenceClassification
from transformers.modeling_outputs import BaseModelOutput

from .checkpoints import check_checkpoint
from .distributed import load_plain
from .errors import UsageError
from .modeling import CLASSIFIER_LABELS, load_tokenizer
from .task import PREFIXES, SYSTEMS, UNPREFIXED, judge
from .tokenizer import VOCAB

RewardKind = Literal["classifier", "log_classifier", "rule"]  # the recipes' --reward
# The label sets a reward classifier may have: the tutorial's three systems, or this project's four classes.
CLASSIFIER_LABEL_SETS = (SYSTEMS, CLASSIFIER_LABELS)

_PREFIX_IDS = {tuple(VOCAB.index(c) for c in prefix): label for label, prefix in enumerate(PREFIXES)}
_UNPREFIXED_IDS = tuple(VOCAB.index(c) for c in UNPREFIXED)
_EQUALS_ID = VOCAB.index("=")


def requested_labels(input_ids: torch.Tensor) -> torch.Tensor:
    """Label asked for by each row's prefix (tokens 1-2, after `S`): 0-2, or -1 for `__`."""
    labels = []
    for pair in map(tuple, input_ids[:, 1:3].tolist()):
        if pair in _PREFIX_IDS:
            labels.append(_PREFIX_IDS[pair])
        elif pair == _UNPREFIXED_IDS:
            labels.append(-1)
        else:
            chars = "".join(VOCAB[i] for i in pair)
            raise ValueError(f"prompt prefix {chars!r} is none of {', '.join(PREFIXES)}, {UNPREFIXED}")
    return torch.tensor(labels, device=input_ids.device)


def classifier_labels(config) -> tuple[str, ...]:
    """The classes of a reward classifier (its config): SYSTEMS or CLASSIFIER_LABELS; any other set is a UsageError."""
    labels = tuple(config.id2label[i] for i in range(config.num_labels))
    if labels not in CLASSIFIER_LABEL_SETS:
        raise UsageError(
            f"{config.name_or_path!r} holds a BERT classifier with {len(labels)} labels ({', '.join(labels)}), not a "
            f"reward classifier ({', '.join(SYSTEMS)} from `make reward-tutorial`, or {', '.join(CLASSIFIER_LABELS)} "
            "from `make reward`): pass a folder one of them wrote"
        )
    return labels


class ClassifierScorer(nn.Module):
    """p(requested system) from a 3-class (tutorial) or 4-class (this project) BERT classifier; see the module doc."""

    def __init__(self, classifier: BertForSequenceClassification, log: bool = False):
        super().__init__()
        labels = classifier_labels(classifier.config)
        self.classifier = classifier
        self.log = log  # log p(requested) instead of p(requested): an ablation (docs/implementation-details.md)
        self.invalid = labels.index("invalid") if "invalid" in labels else None
        self.eval()  # a reward: dropout off, whichever trainer calls it

    @classmethod
    def from_pretrained(cls, path: str, log: bool = False) -> "ClassifierScorer":
        """Rebuild from a `recipes/reward.py` output folder (safetensors weights, no pickled modules)."""
        check_checkpoint(path, "reward")
        config = AutoConfig.from_pretrained(path)
        classifier_labels(config)  # before the weights, whose head has one row per label
        # whole on every process, never partitioned by ZeRO-3: a frozen scorer that no engine wraps (ppo_double.ppo)
        return cls(load_plain(path, BertForSequenceClassification, config), log)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        requested = requested_labels(input_ids)
        unprefixed = input_ids.clone()
        unprefixed[:, 1:3] = torch.tensor(_UNPREFIXED_IDS, device=input_ids.device)
        probs = self.classifier(input_ids=unprefixed, attention_mask=attention_mask).logits.softmax(-1)
        p_requested = probs.gather(1, requested.clamp(min=0)[:, None]).squeeze(1)
        any_system = torch.ones_like(p_requested) if self.invalid is None else 1 - probs[:, self.invalid]
        reward = torch.where(requested >= 0, p_requested, any_system)
        return reward.clamp(min=torch.finfo(reward.dtype).tiny).log() if self.log else reward


class RuleScorer(nn.Module):
    """The judge's verdict as a reward: 1.0 for an exact match, else 0.0 (`ppo_double.task.judge`)."""

    def __init__(self, tokenizer=None):
        super().__init__()
        self.tokenizer = tokenizer or load_tokenizer()

    def verdicts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list:
        """The judge's Verdict for each row: the prompt ends at the first `=`, the row at its last unmasked token."""
        if attention_mask is None:
            attention_mask = input_ids != self.tokenizer.pad_token_id
        verdicts = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            end = max((i for i, m in enumerate(mask) if m), default=-1) + 1  # right padding only
            answer_start = ids.index(_EQUALS_ID) + 1
            prompt, completion = (self.tokenizer.decode(part) for part in (ids[:answer_start], ids[answer_start:end]))
            verdicts.append(judge(prompt, completion))
        return verdicts

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        exact = [verdict.exact_match for verdict in self.verdicts(input_ids, attention_mask)]
        return torch.tensor(exact, dtype=torch.float, device=input_ids.device)


def load_scorer(kind: str, path: str | None = None) -> nn.Module:
    """The scorer of reward `kind`: `classifier` (from the reward folder `path`) or `rule` (the judge; no folder)."""
    if kind in ("classifier", "log_classifier"):
        return ClassifierScorer.from_pretrained(path, log=kind == "log_classifier")
    if kind == "rule":
        return RuleScorer()
    raise UsageError(f"unknown reward {kind!r}: use one of {', '.join(get_args(RewardKind))}")


class NumeralReward(nn.Module):
    """Any scorer as the scalar reward model of TRL's PPOTrainer, judging what it scores; see the module docstring.

    `rollout_exact_matches` collects the judge's exact-match verdicts (0/1) on every row scored through `get_reward`
    since the last `pop_rollout_exact_match()`.
    """

    base_model_prefix = "backbone"

    def __init__(self, scorer: nn.Module):
        super().__init__()
        self.scorer = scorer
        # the judge, on every row scored (with --reward rule the scorer already is the judge: judged once)
        self.rule = scorer if isinstance(scorer, RuleScorer) else RuleScorer()
        self.score = nn.Identity()
        self.rollout_exact_matches = []
        self.eval()

    @classmethod
    def from_pretrained(cls, path: str) -> "NumeralReward":
        """The classifier reward from a `recipes/reward.py` output folder."""
        return cls(ClassifierScorer.from_pretrained(path))

    def backbone(self, input_ids, attention_mask=None, **ignored) -> BaseModelOutput:
        # position_ids from PPOTrainer are ignored: BERT uses its own absolute positions, as in training.
        reward = self.scorer(input_ids, attention_mask)
        exact = reward if self.scorer is self.rule else self.rule(input_ids, attention_mask)
        self.rollout_exact_matches += exact.tolist()
        hidden = reward[:, None, None].expand(-1, input_ids.shape[1], 1)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=(hidden,))

    def pop_rollout_exact_match(self) -> float | None:
        """The judge's exact-match share of the rows scored since the last call (None if none were)."""
        judged, self.rollout_exact_matches = self.rollout_exact_matches, []
        return sum(judged) / len(judged) if judged else None

    def forward(self, input_ids, attention_mask=None, **kwargs) -> torch.Tensor:
        """Reward per sequence, shape [batch]: the scorer's."""
        return self.scorer(input_ids, attention_mask)


class RewardFunction:
    """A scorer as the reward function GRPOTrainer and RLOOTrainer call: one score per completion.

    `scorer(input_ids, attention_mask) -> FloatTensor[batch]` scores full token rows `S<prefix>:<q>x2=<answer>E`,
    right-padded (`ClassifierScorer`, `RuleScorer`; see the module docstring). TRL passes the prompts as text and the
    completions both as text (special tokens stripped, so without `E`) and as ids (cut after the first EOS, EOS kept):
    the rows are built from the ids. A completion without EOS loses `missing_eos_penalty`, as in PPOTrainer.
    """

    __name__ = "numeral_reward"  # TRL logs the mean under rewards/<__name__>/mean

    def __init__(self, scorer, tokenizer, missing_eos_penalty: float | None = None):
        self.scorer = scorer
        self.tokenizer = tokenizer
        self.missing_eos_penalty = missing_eos_penalty
        self.device = torch.device("cpu")

    def to(self, device) -> "RewardFunction":
        """Score on `device` (the trainer's): moves the scorer there when it is a module."""
        if isinstance(self.scorer, nn.Module):
            self.scorer.to(device)
        self.device = torch.device(device)
        return self

    @torch.no_grad()
    def __call__(self, prompts: list[str], completions: list[str], completion_ids: list[list[int]], **kwargs):
        rows = [self.tokenizer(prompt).input_ids + list(ids) for prompt, ids in zip(prompts, completion_ids)]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows], device=self.device)
        lengths = torch.tensor([len(row) for row in rows], device=self.device)
        attention_mask = (torch.arange(width, device=self.device)[None, :] < lengths[:, None]).long()
        scores = self.scorer(input_ids, attention_mask).float().cpu()
        if self.missing_eos_penalty is not None:
            no_eos = torch.tensor([self.tokenizer.eos_token_id not in ids for ids in completion_ids])
            scores[no_eos] -= self.missing_eos_penalty
        return scores.tolist()
