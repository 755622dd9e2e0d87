"""The doubling task: numeral systems, prompts, seeded sample generation, held-out numbers and the rule-based judge.

A sample is `S` + prefix + `:` + q + `x2=` + answer + `E`, with q in [1000, 9999] and the answer 2q written digit by
digit in one of three numeral systems. Unprefixed samples (SFT, reward) use `__` as the prefix.
"""

import random
import re
from dataclasses import asdict, dataclass

SYSTEMS = ("digits", "lower", "upper")  # label 0, 1, 2
NUMERALS = ("0123456789", "〇一二三四五六七八九", "零壹贰叁肆伍陆柒捌玖")
PREFIXES = ("数字", "小写", "大写")
UNPREFIXED = "__"
BOS, EOS, PAD = "S", "E", "P"
LOW, HIGH = 1000, 9999

# Held-out numbers: a fixed seeded draw, documented in docs/glossary.md. TEST numbers are used by every evaluation and
# nothing else; VALIDATION numbers are for decisions made during training (early stopping); training data never
# uses either.
_HELDOUT_SEED = 20240601
_HELDOUT_SIZE = 500
_draw = random.Random(_HELDOUT_SEED).sample(range(LOW, HIGH + 1), 2 * _HELDOUT_SIZE)
TEST_NUMBERS = tuple(sorted(_draw[:_HELDOUT_SIZE]))
VALIDATION_NUMBERS = tuple(sorted(_draw[_HELDOUT_SIZE:]))
TRAIN_NUMBERS = tuple(sorted(set(range(LOW, HIGH + 1)) - set(_draw)))
del _draw

_DIGIT_TO_LABEL = {char: (label, value) for label, chars in enumerate(NUMERALS) for value, char in enumerate(chars)}
_PROMPT_RE = re.compile(rf"^{BOS}?(?P<prefix>[^:]*):(?P<number>[^x=]*)(?P<tail>x2=)?$")


def to_numeral(value: int, label: int) -> str:
    """`to_numeral(6640, 2)` -> `陆陆肆零`: the decimal digits of `value` in numeral system `label`."""
    return "".join(NUMERALS[label][int(d)] for d in str(value))


def prefix_for(label: int | None) -> str:
    return UNPREFIXED if label is None else PREFIXES[label]


def make_prompt(number: int, label: int | None = None) -> str:
    """`make_prompt(3164, 2)` -> `S大写:3164x2=`; `label=None` gives the unprefixed `S__:3164x2=`."""
    return f"{BOS}{prefix_for(label)}:{number}x2="


def make_completion(number: int, label: int) -> str:
    return to_numeral(2 * number, label) + EOS


# The longest answer, 2 x 9999 = 19998 and EOS, and the longest sample, in tokens (one per character).
MAX_ANSWER_TOKENS = len(make_completion(HIGH, 0))
MAX_SAMPLE_TOKENS = len(make_prompt(HIGH)) + MAX_ANSWER_TOKENS


def parse_prompt(text: str) -> tuple[int | None, int]:
    """Return (requested label or None for `__`, number) of a prompt such as `S大写:3164x2=` or `大写:3164`.

    Raises `ValueError` with a one-line message naming what is wrong.
    """
    if not text.strip():
        raise ValueError("empty prompt: expected PREFIX:NNNN, e.g. '大写:3164' or 'S大写:3164x2='")
    match = _PROMPT_RE.match(text.strip())
    if match is None:
        raise ValueError(f"malformed prompt {text!r}: expected PREFIX:NNNN, e.g. '大写:3164' or 'S大写:3164x2='")
    prefix, number = match["prefix"], match["number"]
    if prefix not in PREFIXES and prefix != UNPREFIXED:
        raise ValueError(f"unknown prefix {prefix!r} in {text!r}: use one of {', '.join(PREFIXES)} or {UNPREFIXED}")
    if not re.fullmatch(r"[1-9][0-9]{3}", number):
        raise ValueError(f"number {number!r} in {text!r} must have exactly 4 digits (1000-9999), no sign or spaces")
    return (None if prefix == UNPREFIXED else PREFIXES.index(prefix)), int(number)


def sample_examples(n: int, seed: int, prefixed: bool = False, numbers=TRAIN_NUMBERS) -> list[dict]:
    """`n` prompt/completion examples with uniform numbers from `numbers` and uniform numeral systems."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        number, label = rng.choice(numbers), rng.randrange(len(SYSTEMS))
        examples.append(
            {
                "prompt": make_prompt(number, label if prefixed else None),
                "completion": make_completion(number, label),
                "label": label,
            }
        )
    return examples


def heldout_prompts(prefixed: bool, numbers=TEST_NUMBERS) -> list[str]:
    """Every held-out number once per prefix (prefixed) or once unprefixed."""
    labels = range(len(PREFIXES)) if prefixed else [None]
    return [make_prompt(number, label) for label in labels for number in numbers]


def heldout_selection(which: str) -> list[str]:
    """The held-out test prompts every evaluation uses: `all` (unprefixed first), `prefixed` or `unprefixed`."""
    if which not in ("all", "prefixed", "unprefixed"):
        raise ValueError(f"unknown prompt selection {which!r}: use all, prefixed or unprefixed")
    prompts = []
    if which in ("all", "unprefixed"):
        prompts += heldout_prompts(prefixed=False)
    if which in ("all", "prefixed"):
        prompts += heldout_prompts(prefixed=True)
    return prompts


@dataclass(frozen=True)
class Verdict:
    well_formed: bool  # 4-5 numerals of one system, nothing else before EOS
    system: str | None  # "digits" / "lower" / "upper", "mixed", or None when there is no numeral at all
    value: int | None  # the answer's value when well formed
    correct: bool  # value == 2 * number
    ended_with_eos: bool  # the answer is followed by EOS
    exact_match: bool  # correct, in the requested system (any for `__`), then EOS

    def as_dict(self) -> dict:
        return asdict(self)


def judge(prompt: str, completion: str) -> Verdict:
    """Rule-based verdict on `completion` (the text generated after the prompt; padding after EOS is ignored)."""
    requested, number = parse_prompt(prompt)
    ended_with_eos = EOS in completion
    answer = completion.split(EOS, 1)[0]
    found = [_DIGIT_TO_LABEL.get(char) for char in answer]
    labels = {f[0] for f in found if f is not None}
    if not labels:
        system = None
    elif len(labels) == 1:
        system = SYSTEMS[labels.pop()]
    else:
        system = "mixed"
    well_formed = (
        bool(answer)
        and None not in found
        and system not in (None, "mixed")
        and 4 <= len(answer) <= 5
        and found[0][1] != 0
    )
    value = int("".join(str(f[1]) for f in found)) if well_formed else None
    correct = value == 2 * number
    in_system = requested is None or system == SYSTEMS[requested]
    return Verdict(well_formed, system, value, correct, ended_with_eos, correct and in_system and ended_with_eos)


# --- Negatives for the reward classifier ------------------------------------------------------------------------
# The classifier's 4th class, "invalid", holds answers a policy could drift into while chasing the reward. Without
# it, the classifier only knows three systems, and any string of upper-case numerals would score as "upper".
INVALID = 3
CORRUPTIONS = ("mixed", "digit_off", "swap", "off_by_one", "too_few", "too_many", "trailing", "no_eos", "empty")
# How often each corruption is drawn. A wrong digit or a swap is only visible by redoing the arithmetic, which a
# 64-wide BERT learns last; everything else is visible from the characters alone.
CORRUPTION_WEIGHTS = (1, 3, 3, 1, 1, 1, 1, 1, 1)
_TRAILING = "数字大写小:=_x" + "".join(NUMERALS)


def corrupt_completion(number: int, label: int, kind: str, rng: random.Random) -> str:
    """An invalid completion for `number` of the given kind; never an exact match (see classifier_examples)."""
    answer = list(to_numeral(2 * number, label))
    i = rng.randrange(len(answer))
    if kind == "mixed":  # one numeral from another system
        other = rng.choice([k for k in range(len(NUMERALS)) if k != label])
        answer[i] = NUMERALS[other][NUMERALS[label].index(answer[i])]
    elif kind == "digit_off":  # one digit replaced by another of the same system
        answer[i] = rng.choice([c for c in NUMERALS[label] if c != answer[i]])
    elif kind == "swap":  # two different neighbouring digits swapped (6328 -> 6238)
        pairs = [j for j in range(len(answer) - 1) if answer[j] != answer[j + 1]]
        if not pairs:  # 4444: nothing to swap, change a digit instead
            return corrupt_completion(number, label, "digit_off", rng)
        j = rng.choice(pairs)
        answer[j], answer[j + 1] = answer[j + 1], answer[j]
    elif kind == "off_by_one":
        answer = list(to_numeral(2 * number + rng.choice((-1, 1)), label))
    elif kind == "too_few":
        del answer[i]
    elif kind == "too_many":
        answer.insert(i, rng.choice(NUMERALS[label]))
    elif kind == "trailing":  # the right answer, then more text before EOS
        answer += [rng.choice(_TRAILING) for _ in range(rng.randint(1, 2))]
    elif kind == "no_eos":
        return "".join(answer)
    elif kind == "empty":  # EOS straight away: what a policy punished for missing EOS can fall into
        return EOS
    else:
        raise ValueError(f"unknown corruption {kind!r}: use one of {', '.join(CORRUPTIONS)}")
    return "".join(answer) + EOS


def classifier_examples(n: int, seed: int, numbers=TRAIN_NUMBERS, invalid_fraction: float = 0.4) -> list[dict]:
    """Unprefixed `text` (`S__:3320x2=6640E`) with `label` 0-2 (numeral system) or 3 (invalid answer).

    `kind` names the corruption of an invalid example ("" for a correct one), so accuracy can be reported per kind.
    """
    rng = random.Random(seed)
    examples = []
    while len(examples) < n:
        number, label = rng.choice(numbers), rng.randrange(len(SYSTEMS))
        prompt = make_prompt(number)
        if rng.random() >= invalid_fraction:
            examples.append({"text": prompt + make_completion(number, label), "label": label, "kind": ""})
            continue
        kind = rng.choices(CORRUPTIONS, weights=CORRUPTION_WEIGHTS)[0]
        completion = corrupt_completion(number, label, kind, rng)
        if not judge(prompt, completion).exact_match:  # e.g. swapping two equal digits changes nothing
            examples.append({"text": prompt + completion, "label": INVALID, "kind": kind})
    return examples
