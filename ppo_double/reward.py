"""The numeral-system classifier, adapted into the scalar reward model TRL's PPOTrainer calls.

TRL 1.12 scores a batch with `trl.experimental.utils.get_reward(model, query_responses, pad_token_id, ...)`:

    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(input_ids, attention_mask, position_ids, ...).hidden_states[-1]
    reward = model.score(hidden)[i, last non-pad token of row i]

A BERT classifier does not fit that (it classifies the pooled sequence, with its own position ids), so
`NumeralReward` wraps it: its backbone reads the requested system from the prompt prefix, replaces the prefix by
`__` (the classifier was trained on unprefixed text), classifies, and returns the reward broadcast over every
position as a one-feature "hidden state"; `score` is the identity.

The reward is the probability of the requested class, in [0, 1]; for an unprefixed `__` prompt, where any
system is right, it is 1 - p(invalid). Why a probability and not a log-probability: measured outside the project,
reward = p(requested) took PPO to 100 % greedy exact match, while reward = log p(requested) diverged (arithmetic fell
to 39 %): log-probabilities are unbounded below, so a few very wrong samples dominate the advantages. Because
the classifier has an "invalid" class (wrong double, mixed systems, wrong length, trailing text, no EOS), an answer
in the right system but with the wrong value scores low too.
"""

import torch
from torch import nn
from transformers import AutoConfig, BertForSequenceClassification
from transformers.modeling_outputs import BaseModelOutput

from .checkpoints import check_checkpoint
from .errors import UsageError
from .modeling import CLASSIFIER_LABELS
from .task import PREFIXES, UNPREFIXED
from .tokenizer import VOCAB

_PREFIX_IDS = {tuple(VOCAB.index(c) for c in prefix): label for label, prefix in enumerate(PREFIXES)}
_UNPREFIXED_IDS = tuple(VOCAB.index(c) for c in UNPREFIXED)
_INVALID = CLASSIFIER_LABELS.index("invalid")


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


class _RewardBackbone(nn.Module):
    def __init__(self, classifier: BertForSequenceClassification):
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids, attention_mask=None, **ignored):
        # position_ids from PPOTrainer are ignored: BERT uses its own absolute positions, as in training.
        requested = requested_labels(input_ids)
        unprefixed = input_ids.clone()
        unprefixed[:, 1:3] = torch.tensor(_UNPREFIXED_IDS, device=input_ids.device)
        probs = self.classifier(input_ids=unprefixed, attention_mask=attention_mask).logits.softmax(-1)
        p_requested = probs.gather(1, requested.clamp(min=0)[:, None]).squeeze(1)
        reward = torch.where(requested >= 0, p_requested, 1 - probs[:, _INVALID])
        hidden = reward[:, None, None].expand(-1, input_ids.shape[1], 1)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=(hidden,))


class NumeralReward(nn.Module):
    """Scalar reward model for TRL's PPOTrainer; see the module docstring."""

    base_model_prefix = "backbone"

    def __init__(self, classifier: BertForSequenceClassification):
        super().__init__()
        self.backbone = _RewardBackbone(classifier)
        self.score = nn.Identity()
        self.eval()

    @classmethod
    def from_pretrained(cls, path: str) -> "NumeralReward":
        """Rebuild from a `recipes/reward.py` output folder (safetensors weights, no pickled modules)."""
        check_checkpoint(path, "reward")
        config = AutoConfig.from_pretrained(path)
        if config.num_labels != len(CLASSIFIER_LABELS):
            raise UsageError(
                f"{path!r} holds a BERT classifier with {config.num_labels} labels, not the reward classifier "
                f"({len(CLASSIFIER_LABELS)} labels: {', '.join(CLASSIFIER_LABELS)}): pass the `make reward` folder"
            )
        return cls(BertForSequenceClassification.from_pretrained(path, use_safetensors=True))

    def forward(self, input_ids, attention_mask=None, **kwargs) -> torch.Tensor:
        """Reward per sequence, shape [batch]."""
        return self.backbone(input_ids, attention_mask).last_hidden_state[:, 0, 0]


class RewardFunction:
    """A scorer as the reward function GRPOTrainer and RLOOTrainer call: one score per completion.

    `scorer(input_ids, attention_mask) -> FloatTensor[batch]` scores full token rows `S<prefix>:<q>x2=<answer>E`,
    right-padded (PPO's reward model, `NumeralReward`, is such a scorer). TRL passes the prompts as text and the
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
