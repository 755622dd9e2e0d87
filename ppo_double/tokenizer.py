"""Character tokenizer over the tutorial's fixed 42-symbol vocabulary.

This file is self-contained (it imports only transformers and tokenizers) on purpose: `save_pretrained` copies it
into every checkpoint folder and writes an `auto_map`, so
`AutoTokenizer.from_pretrained(folder, trust_remote_code=True)` works on a machine where `ppo_double` is not installed.

`save_pretrained` also writes a `tokenizer.json` (the same tokenizer for the `tokenizers` library), so a checkpoint
folder loads with plain `AutoTokenizer.from_pretrained(folder)` too, without remote code: transformers then finds no
class named `CharTokenizer` and falls back to `TokenizersBackend`, which reads `tokenizer.json` and gives the same ids.
"""

import json
import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizer

# Order matters: ids 0..41 are fixed by the tutorial, and checkpoints and outside evaluations rely on them.
VOCAB = list("PSE0123456789〇一二三四五六七八九零壹贰叁肆伍陆柒捌玖数字大写小:=_x")
PAD, BOS, EOS = "P", "S", "E"
VOCAB_FILE = "vocab.json"
TOKENIZER_FILE = "tokenizer.json"


def backend_tokenizer(vocab: list[str] = VOCAB) -> Tokenizer:
    """The same tokenizer for the `tokenizers` library: one token per character, nothing added, nothing normalized.

    There is no unknown token: a character outside the vocabulary makes `encode` raise ("WordLevel error: Missing
    [UNK] token from the vocabulary"), it is never mapped to some id. That error does not name the character.
    """
    tokenizer = Tokenizer(WordLevel({c: i for i, c in enumerate(vocab)}, unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character alone
    tokenizer.decoder = decoders.Fuse()  # ids back to characters, joined without spaces
    tokenizer.add_special_tokens([AddedToken(c, special=True, normalized=False) for c in (PAD, BOS, EOS)])
    return tokenizer


class CharTokenizer(PreTrainedTokenizer):
    """One token per character; `P`=0 is padding, `S`=1 begins and `E`=2 ends a sequence.

    The tokenizer never adds special tokens by itself: the task's strings carry `S` and `E` explicitly, exactly as
    the tutorial writes them (`S大写:3164x2=陆叁贰捌E`). A character outside the vocabulary raises `ValueError`
    naming it and its position; there is no unknown token to silently map it to.
    """

    vocab_files_names = {"vocab_file": VOCAB_FILE}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file=None, **kwargs):
        vocab = VOCAB
        if vocab_file is not None:
            with open(vocab_file, encoding="utf-8") as f:
                vocab = [tok for tok, _ in sorted(json.load(f).items(), key=lambda kv: kv[1])]
            if vocab != VOCAB:
                raise ValueError(f"{vocab_file} does not hold the 42-character vocabulary this tokenizer expects")
        self._id_to_char = list(vocab)
        self._char_to_id = {c: i for i, c in enumerate(vocab)}
        kwargs.setdefault("pad_token", PAD)
        kwargs.setdefault("bos_token", BOS)
        kwargs.setdefault("eos_token", EOS)
        kwargs.setdefault("padding_side", "right")
        kwargs.setdefault("model_max_length", 128)
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_char)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._char_to_id)

    def tokenize(self, text: str, **kwargs) -> list[str]:
        # Checked here, on the whole text, so the error can give the position in what the user typed.
        for position, char in enumerate(text):
            if char not in self._char_to_id:
                raise ValueError(
                    f"character {char!r} at position {position} of {text!r} is not in the vocabulary "
                    f"(allowed: {''.join(self._id_to_char)})"
                )
        return list(text)

    def _tokenize(self, text, **kwargs):
        return list(text)

    def _convert_token_to_id(self, token: str) -> int:
        if token not in self._char_to_id:
            raise ValueError(f"token {token!r} is not in the vocabulary")
        return self._char_to_id[token]

    def _convert_id_to_token(self, index: int) -> str:
        if not 0 <= index < len(self._id_to_char):
            raise ValueError(f"token id {index} is outside the vocabulary (0..{len(self._id_to_char) - 1})")
        return self._id_to_char[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        prefix = filename_prefix + "-" if filename_prefix else ""
        path = os.path.join(save_directory, prefix + VOCAB_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self._char_to_id, f, ensure_ascii=False, indent=0)
        # For loaders without this file's code (plain AutoTokenizer, other languages' `tokenizers` bindings).
        fast_path = os.path.join(save_directory, prefix + TOKENIZER_FILE)
        backend_tokenizer(self._id_to_char).save(fast_path)
        return path, fast_path


# `save_pretrained` then copies this file next to the vocabulary and writes `auto_map` into tokenizer_config.json.
CharTokenizer.register_for_auto_class("AutoTokenizer")
