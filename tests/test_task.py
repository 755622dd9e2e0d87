import pytest

from ppo_double.task import (
    PREFIXES,
    TEST_NUMBERS,
    TRAIN_NUMBERS,
    VALIDATION_NUMBERS,
    heldout_prompts,
    judge,
    make_completion,
    make_prompt,
    parse_prompt,
    sample_examples,
    to_numeral,
)


def test_numerals():
    assert to_numeral(6640, 0) == "6640"
    assert to_numeral(10974, 1) == "一〇九七四"
    assert to_numeral(6328, 2) == "陆叁贰捌"


def test_prompt_and_completion_format():
    assert make_prompt(3164, 2) + make_completion(3164, 2) == "S大写:3164x2=陆叁贰捌E"
    assert make_prompt(3320) == "S__:3320x2="


@pytest.mark.parametrize(
    "text, expected",
    [("S大写:3164x2=", (2, 3164)), ("大写:3164", (2, 3164)), ("数字:1000", (0, 1000)), ("S__:9999x2=", (None, 9999))],
)
def test_parse_prompt(text, expected):
    assert parse_prompt(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty prompt"),
        ("3164", "malformed prompt"),
        ("中文:3164", "unknown prefix '中文'"),
        ("大写:316", "exactly 4 digits"),
        ("大写:31645", "exactly 4 digits"),
        ("大写:-316", "exactly 4 digits"),
        ("大写:0316", "exactly 4 digits"),
    ],
)
def test_parse_prompt_rejects_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        parse_prompt(text)


def test_heldout_splits_are_disjoint_and_cover_everything():
    test, val, train = set(TEST_NUMBERS), set(VALIDATION_NUMBERS), set(TRAIN_NUMBERS)
    assert len(test) == len(val) == 500
    assert not test & val and not test & train and not val & train
    assert test | val | train == set(range(1000, 10000))


def test_examples_are_seeded_and_never_heldout():
    a, b, c = sample_examples(3000, seed=1), sample_examples(3000, seed=1), sample_examples(3000, seed=2)
    assert a == b and a != c
    heldout = set(TEST_NUMBERS) | set(VALIDATION_NUMBERS)
    for example in a:
        assert parse_prompt(example["prompt"])[1] not in heldout
        assert example["prompt"].startswith("S__:")
        assert judge(example["prompt"], example["completion"]).exact_match
    shares = [sum(e["label"] == k for e in a) / len(a) for k in range(3)]
    assert all(0.3 < s < 0.37 for s in shares)


def test_prefixed_examples_carry_their_label():
    for example in sample_examples(100, seed=0, prefixed=True):
        assert example["prompt"][1:3] == PREFIXES[example["label"]]


def test_heldout_prompts():
    assert heldout_prompts(prefixed=False) == [make_prompt(q) for q in TEST_NUMBERS]
    prefixed = heldout_prompts(prefixed=True)
    assert len(prefixed) == 3 * len(TEST_NUMBERS)
    assert {p[1:3] for p in prefixed} == set(PREFIXES)


@pytest.mark.parametrize(
    "prompt, completion, fields",
    [
        # exact matches, one per system
        ("S数字:3320x2=", "6640E", dict(system="digits", value=6640, correct=True, exact_match=True)),
        ("S小写:5487x2=", "一〇九七四E", dict(system="lower", value=10974, correct=True, exact_match=True)),
        ("S大写:3164x2=", "陆叁贰捌E", dict(system="upper", value=6328, correct=True, exact_match=True)),
        # unprefixed: any system counts
        ("S__:3164x2=", "六三二八E", dict(system="lower", correct=True, exact_match=True)),
        # right value, wrong system
        ("S大写:3164x2=", "6328E", dict(system="digits", correct=True, exact_match=False)),
        # wrong value
        ("S数字:3320x2=", "6641E", dict(well_formed=True, correct=False, exact_match=False)),
        # no EOS
        ("S数字:3320x2=", "6640", dict(correct=True, ended_with_eos=False, exact_match=False)),
        # padding after EOS is ignored
        ("S数字:3320x2=", "6640EPP", dict(correct=True, exact_match=True)),
        # mixed systems
        ("S数字:3320x2=", "66肆0E", dict(system="mixed", well_formed=False, exact_match=False)),
        # malformed: junk, too short, too long, leading zero, empty
        ("S数字:3320x2=", "66:0E", dict(well_formed=False, exact_match=False)),
        ("S数字:3320x2=", "664E", dict(well_formed=False, correct=False)),
        ("S数字:3320x2=", "066400E", dict(well_formed=False, correct=False)),
        ("S数字:3320x2=", "06640E", dict(well_formed=False, correct=False)),
        ("S数字:3320x2=", "E", dict(system=None, well_formed=False, exact_match=False)),
        ("S数字:3320x2=", "", dict(system=None, ended_with_eos=False, exact_match=False)),
    ],
)
def test_judge(prompt, completion, fields):
    verdict = judge(prompt, completion)
    for name, value in fields.items():
        assert getattr(verdict, name) == value, (name, verdict)
