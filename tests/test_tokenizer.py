import subprocess
import sys

import pytest
from transformers import AutoTokenizer

import ppo_double  # noqa: F401  (registers CharTokenizer with AutoTokenizer)
from ppo_double.tokenizer import VOCAB, CharTokenizer


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer()


def test_vocabulary_order_is_the_tutorials():
    assert len(VOCAB) == 42
    assert VOCAB[:3] == ["P", "S", "E"]
    assert "".join(VOCAB[3:13]) == "0123456789"
    assert "".join(VOCAB[13:23]) == "〇一二三四五六七八九"
    assert "".join(VOCAB[23:33]) == "零壹贰叁肆伍陆柒捌玖"
    assert "".join(VOCAB[33:]) == "数字大写小:=_x"


def test_special_tokens(tok):
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.vocab_size == len(tok) == 42


@pytest.mark.parametrize(
    "text, ids",
    [
        # the tutorial's own examples, ids computed from its DataGenerator.encoder
        ("S小写:5487x2=一〇九七四E", [1, 37, 36, 38, 8, 7, 11, 10, 41, 5, 39, 14, 13, 22, 20, 17, 2]),
        ("S数字:3320x2=6640EP", [1, 33, 34, 38, 6, 6, 5, 3, 41, 5, 39, 9, 9, 7, 3, 2, 0]),
        ("S大写:3164x2=陆叁贰捌EP", [1, 35, 36, 38, 6, 4, 9, 7, 41, 5, 39, 29, 26, 25, 31, 2, 0]),
        ("S__:4474x2=八九四八EP", [1, 40, 40, 38, 7, 7, 10, 7, 41, 5, 39, 21, 22, 17, 21, 2, 0]),
    ],
)
def test_tutorial_examples_encode_and_decode(tok, text, ids):
    assert tok(text).input_ids == ids
    assert tok.decode(ids) == text


def test_no_special_tokens_are_added(tok):
    assert tok("12").input_ids == [4, 5]


@pytest.mark.parametrize(
    "text, char, position", [("S__:12a4", "a", 6), ("S__: 1234", " ", 4), ("大写:一二三四五陸", "陸", 8)]
)
def test_unknown_character_names_it_and_its_position(tok, text, char, position):
    with pytest.raises(ValueError, match=rf"character '{char}' at position {position}"):
        tok(text)


def test_batch_padding_is_right_padded_with_P(tok):
    batch = tok(["S__:1x2=2E", "S__:1000x2=2000E"], padding=True)
    assert batch.input_ids[0][-6:] == [0] * 6
    assert batch.attention_mask[0][-6:] == [0] * 6


def test_save_and_reload(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "vocab.json").exists() and (tmp_path / "tokenizer.py").exists()
    for loaded in (CharTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert isinstance(loaded, CharTokenizer)
        assert loaded.get_vocab() == tok.get_vocab()
        assert loaded("S大写:3164x2=").input_ids == tok("S大写:3164x2=").input_ids


def test_corrupted_vocab_is_rejected(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text('{"a": 0, "b": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="42-character vocabulary"):
        CharTokenizer.from_pretrained(tmp_path)


def test_saved_folder_loads_with_remote_code_where_ppo_double_is_not_importable(tok, tmp_path):
    folder = tmp_path / "tok"
    tok.save_pretrained(folder)
    code = (
        "import sys; sys.modules['ppo_double'] = None\n"  # importing ppo_double now fails
        "from transformers import AutoTokenizer\n"
        f"t = AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True)\n"
        "print(type(t).__name__, t('S大写:3164x2=陆叁贰捌E').input_ids)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "CharTokenizer " + str(tok("S大写:3164x2=陆叁贰捌E").input_ids)


TEXTS = ["S小写:5487x2=一〇九七四E", "S大写:3164x2=陆叁贰捌EP", "".join(VOCAB)]


def test_saved_tokenizer_json_is_the_same_tokenizer(tok, tmp_path):
    # For loaders without tokenizer.py: plain AutoTokenizer on a checkpoint folder falls back to TokenizersBackend.
    from tokenizers import Tokenizer
    from transformers import TokenizersBackend

    tok.save_pretrained(tmp_path)
    raw = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    backend = TokenizersBackend.from_pretrained(tmp_path)
    assert (backend.pad_token_id, backend.bos_token_id, backend.eos_token_id) == (0, 1, 2)
    assert backend.get_vocab() == tok.get_vocab()
    for text in TEXTS:
        ids = tok(text).input_ids
        assert raw.encode(text).ids == backend(text).input_ids == ids
        assert raw.decode(ids, skip_special_tokens=False) == backend.decode(ids) == text
    assert backend(TEXTS[:2], padding=True).input_ids == tok(TEXTS[:2], padding=True).input_ids
    # no unknown token: a character outside the vocabulary is an error there too (one that does not name it)
    for text in ("S__:12a4", "S__: 1234", "S__:12\n34"):
        with pytest.raises(Exception, match=r"Missing \[UNK\] token"):
            raw.encode(text)
        with pytest.raises(Exception, match=r"Missing \[UNK\] token"):
            backend(text)
