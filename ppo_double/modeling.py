"""Model builders: the tutorial's GPT-2 policy, its value model, and the BERT numeral-system classifier."""

import copy

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    BertPreTrainedModel,
    GenerationConfig,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
)
from transformers.modeling_outputs import TokenClassifierOutput

from .distributed import editable
from .task import PREFIXES, SYSTEMS
from .tokenizer import VOCAB, CharTokenizer

BOS_ID, EOS_ID, PAD_ID = VOCAB.index("S"), VOCAB.index("E"), VOCAB.index("P")
CLASSIFIER_LABELS = (*SYSTEMS, "invalid")  # the reward classifier's 4 classes (the tutorial's: SYSTEMS); see reward.py


def _special_ids() -> dict:
    return {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}


def build_policy(n_embd: int = 64, n_head: int = 4, n_layer: int = 4, n_positions: int = 128) -> GPT2LMHeadModel:
    """The tutorial's GPT-2 from scratch: its output head `fc_out` is separate from the input embedding.

    GELU as torch's fused tanh approximation: the same function as GPT-2's default `gelu_new` (the same answers from
    the same weights), one kernel instead of seven; at this size the activation was ~11 % of PPO's time.
    """
    config = GPT2Config(
        vocab_size=len(VOCAB),
        activation_function="gelu_pytorch_tanh",
        n_embd=n_embd,
        n_head=n_head,
        n_layer=n_layer,
        n_positions=n_positions,
        tie_word_embeddings=False,
        **_special_ids(),
    )
    model = GPT2LMHeadModel(config)
    model.generation_config = default_generation_config()
    return model


def default_generation_config(max_new_tokens: int = 7) -> GenerationConfig:
    """Answers are at most 5 numerals + EOS, so 7 new tokens leave room to see a missing EOS."""
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, **_special_ids())


@torch.no_grad()
def scale_prefix_embeddings(model) -> None:
    """Scale the input embeddings of the prefix characters (数字大写小) to the other rows' mean norm, directions kept.

    SFT's prompts are unprefixed, so these rows never got a gradient: they keep their random initial scale (norm
    ~0.16, against ~0.6 for the trained rows), and PPO at its learning rate first spends thousands of episodes growing
    them before the model can tell the prefixes apart. New tokens' embeddings are usually initialised at the scale of
    the trained ones; these are new to the model in the same way. (The output head is separate: untouched.)
    """
    weight = model.get_input_embeddings().weight
    with editable(weight):
        prefix = torch.zeros(len(weight), dtype=torch.bool)
        prefix[sorted({VOCAB.index(c) for c in "".join(PREFIXES)})] = True
        weight[prefix] *= weight[~prefix].norm(dim=1).mean() / weight[prefix].norm(dim=1, keepdim=True)


class GPT2ValueModel(GPT2ForSequenceClassification):
    """GPT2ForSequenceClassification loaded from a policy folder: the policy's `lm_head` is left out and the scalar
    `score` head starts fresh, by design. Declared, so transformers' load report (which lists both) stays quiet while
    any other missing or unexpected weight is still reported."""

    _keys_to_ignore_on_load_unexpected = [r"^lm_head\.weight$"]
    _keys_to_ignore_on_load_missing = [r"^score\.weight$"]


def build_value_model(policy_path: str) -> GPT2ForSequenceClassification:
    """A scalar head on the SFT transformer: PPO's critic starts from the policy's own features."""
    return GPT2ValueModel.from_pretrained(policy_path, num_labels=1, use_safetensors=True, **_special_ids())


def build_classifier(
    hidden_size: int = 64,
    num_hidden_layers: int = 4,
    num_attention_heads: int = 4,
    intermediate_size: int = 64,
    encoder_dropout: float = 0.1,
    labels: tuple[str, ...] = CLASSIFIER_LABELS,
) -> BertForSequenceClassification:
    """The tutorial's reward BERT: dropout 0.1 then a linear head on the pooled output, one logit per class.

    `encoder_dropout` is BERT's dropout inside the encoder (the tutorial kept BertConfig's 0.1). `labels`: this
    project's four classes, or the tutorial's three numeral systems (SYSTEMS).
    """
    config = BertConfig(
        hidden_dropout_prob=encoder_dropout,
        attention_probs_dropout_prob=encoder_dropout,
        vocab_size=len(VOCAB),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=128,
        classifier_dropout=0.1,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        **_special_ids(),
    )
    return BertForSequenceClassification(config)


class NumeralFlagger(BertPreTrainedModel):
    """Phase 2 of the reward stage: on one encoder pass, a token head flags the replaced answer numerals and the
    classifier's own pooler and head classify the answer (its system, or invalid once a numeral was replaced).

    The flags are the dense signal that teaches the encoder to compare; the class is what the classifier must read
    off its first token. Trained apart (flags in phase 2, classes only in phase 3), the classifier learned to read
    the flags at a step that varied with the seed: with 1000 phase-3 steps, 7 of 20 runs caught 88-99 % of invalid
    answers instead of >= 99 % (docs/reward_screens). `logits` are the flags' (DetectionProbe reads them).
    """

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config)  # replaced by the classifier's (shared modules): see encoder_heads
        self.dropout = torch.nn.Dropout(config.classifier_dropout or 0.0)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)  # likewise
        self.flags = torch.nn.Linear(config.hidden_size, 2)  # replaced / not replaced
        self.post_init()

    def forward(self, input_ids, attention_mask=None, labels=None, class_labels=None):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
        flags = self.flags(out.last_hidden_state)
        losses = []
        if labels is not None:
            losses.append(torch.nn.functional.cross_entropy(flags.view(-1, 2), labels.view(-1), ignore_index=-100))
        if class_labels is not None:
            classes = self.classifier(self.dropout(out.pooler_output))
            losses.append(torch.nn.functional.cross_entropy(classes, class_labels))
        return TokenClassifierOutput(loss=sum(losses) if losses else None, logits=flags)


def encoder_heads(classifier: BertForSequenceClassification) -> tuple[BertForMaskedLM, NumeralFlagger]:
    """A masked-LM head on the classifier's own encoder, and a NumeralFlagger on the whole classifier (shared modules).

    They exist only to pre-train it with a label per token (recipes/reward.py); only the classifier is saved. Their
    configs are copies, so the classifier's saved config is untouched.
    """
    config = copy.deepcopy(classifier.config)
    config.tie_word_embeddings = False  # the masked-LM head gets its own output layer, not the shared embeddings
    repair = BertForMaskedLM(config)
    repair.bert.embeddings, repair.bert.encoder = classifier.bert.embeddings, classifier.bert.encoder
    detect = NumeralFlagger(copy.deepcopy(classifier.config))
    detect.bert, detect.classifier = classifier.bert, classifier.classifier
    return repair, detect


def load_tokenizer(path: str | None = None) -> CharTokenizer:
    return CharTokenizer() if path is None else CharTokenizer.from_pretrained(path)
