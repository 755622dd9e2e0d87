"""The front door stays true: README.md is short, the docs index lists every page, the README's headline is the
store's, and every other number in the README is checked against its source here (a number that is neither in a
generated block nor on the list below fails the test)."""

import os
import re
import statistics
import sys

import yaml

from conftest import ROOT, load_script
from ppo_double import targets
from ppo_double.evaluate import KEEP_MARGIN
from ppo_double.task import INVALID, NUMERALS, SYSTEMS, TEST_NUMBERS, to_numeral

sys.path.insert(0, str(ROOT / "bench"))
import run  # noqa: E402
from store import Store, key  # noqa: E402

README = ROOT / "README.md"
DOCS = ROOT / "docs"
BLOCK = re.compile(r"<!-- ([\w:]+):start -->.*?<!-- \1:end -->", re.S)
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)*")


def readme() -> str:
    return README.read_text(encoding="utf-8")


def study_records(name: str) -> list[dict]:
    """The study's records under its current keys, as `bench/run.py --report-only` reads them."""
    study = run.load_study(ROOT / "bench" / "studies" / f"{name}.yaml")
    return run.current_records(study, Store(ROOT / "bench" / "results" / f"{name}.jsonl"))


def pipeline_records() -> list[dict]:
    """Every record of `make all` on the current defaults in the pipeline study's store: its seeds and held-out ones."""
    study = run.load_study(ROOT / "bench" / "studies" / "pipeline.yaml")
    current = run.settings(study, "defaults")
    store = Store(ROOT / "bench" / "results" / "pipeline.jsonl")
    return [r for r in store.records() if r["key"] == key(study["name"], "defaults", r["seed"], current)]


def pipeline_medians() -> dict[str, float]:
    """Median wall seconds of each stage of `make all` and of the whole, over pipeline_records()."""
    records = pipeline_records()
    medians = {s: statistics.median(r["stages"][s]["wall_s"] for r in records) for s in ("sft", "reward", "rl", "eval")}
    totals = {k: statistics.median(r["metrics"][f"total_{k}"] for r in records) for k in ("s", "units")}
    return medians | {"total": totals["s"], "units": totals["units"]}


def yaml_of(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))


def pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def in_systems(value: int) -> list[str]:
    return [to_numeral(value, label) for label in range(len(NUMERALS))]


def median_units() -> int:
    return round(pipeline_medians()["units"])


def times_ok(text: str) -> bool:
    m = pipeline_medians()
    total = round(m["total"])
    return text == (
        f"{round(m['sft'])} s and {round(m['reward'])} s |\n| PPO until its stop rule holds | `make ppo` | "
        f"{round(m['rl'])} s |\n| eval: SFT against PPO on the held-out test numbers | `make eval` | "
        f"{round(m['eval'])} s |\n| the whole pipeline | `make all` | {total // 60} min {total % 60} s"
    )


def demo_ok(text: str) -> bool:
    """The demo's answers are the doubles of its prompts, in the systems the prefixes name (after PPO)."""
    number = 3164
    digits, lower, upper = in_systems(2 * number)
    return all(
        line in text
        for line in (f"大写:{number} -> {upper}", f"小写:{number} -> {lower}", f"数字:{number} -> {digits}")
    )


# Every number of README.md outside its generated blocks: (a passage that holds it, the check of that passage).
# A number outside every passage below fails test_every_readme_number_is_generated_or_checked.
CHECKED = [
    ("learns to double a 4-digit", lambda t: {len(str(n)) for n in TEST_NUMBERS} == {4}),
    ("GPT-2", lambda t: True),  # a model's name
    ("ZeRO-2/3", lambda t: all((ROOT / "recipes" / "accelerate" / f"zero{n}.yaml").is_file() for n in (2, 3))),
    ("Apache-2.0", lambda t: '\nlicense = "Apache-2.0"' in pyproject()),
    ("Python ≥ 3.10", lambda t: '\nrequires-python = ">=3.10"' in pyproject()),
    ("pinned to 1.12.x", lambda t: '"trl==1.12.*"' in pyproject()),
    ("PPO_DOUBLE_NO_LOCK=1", lambda t: "PPO_DOUBLE_NO_LOCK" in (ROOT / "ppo_double" / "checkpoints.py").read_text()),
    ("exit code 3", lambda t: "BelowFloor: 3" in (ROOT / "ppo_double" / "errors.py").read_text(encoding="utf-8")),
    ("3-class", lambda t: len(SYSTEMS) == 3),
    ("4-class", lambda t: INVALID + 1 == 4),
    ("on 2 CPU cores", lambda t: {r["machine"]["cpu_count"] for r in pipeline_records()} == {2}),
    (re.compile(r"medians over \d+ seeds"), lambda t: t == f"medians over {len(pipeline_records())} seeds"),
    (re.compile(r"a median of \d+ \[plain-loop"), lambda t: t == f"a median of {median_units()} [plain-loop"),
    (re.compile(r"\d+ s and \d+ s \|\n.*?\| `make all` \| \d+ min \d+ s", re.S), times_ok),
    (re.compile(r"```console\n.*?```", re.S), demo_ok),
    (
        "`S__:3320x2=` → `6640E`, `六六四〇E` or `陆陆肆零E`",
        lambda t: all(f"`{a}E`" in t for a in in_systems(2 * 3320)),
    ),
    ("at least 99.5 % of its [greedy]", lambda t: targets.TARGET_GREEDY == 0.995),
    ("answers and 98 % of its [sampled]", lambda t: targets.TARGET_SAMPLED == 0.98),
    ("catches 99 % of invalid answers", lambda t: targets.INVALID_CAUGHT == 0.99),
    ("fell below 97 % while PPO trained", lambda t: targets.FLOOR_CORRECT == 0.97),
    ("at a margin of 0.25 points", lambda t: KEEP_MARGIN == 0.0025),
    ("the test's margin, 0.25 points", lambda t: KEEP_MARGIN == 0.0025),
    ("--max_steps 500", lambda t: 500 < yaml_of("recipes/configs/sft.yaml")["max_steps"]),  # a shorter run: an example
    ("--seed 43 --output_dir outputs/rloo-43", lambda t: 43 in yaml_of("bench/studies/pipeline.yaml")["seeds"]),
]


def prose(text: str) -> str:
    """The README without its generated blocks and link targets (paths and anchors are not claims)."""
    return re.sub(r"\]\([^)]*\)", "]", BLOCK.sub("", text))


def test_readme_is_the_front_door_and_short():
    lines = readme().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"


USER_PAGES = ("results", "stages", "usage", "performance", "glossary", "scale-out", "hub", "logging", "robustness")
USER_PAGES += ("metrics", "device_check", "implementation-details", "profile", "reward_heldout")
HISTORY = re.compile(r"\b(now|today'?s?|no longer|before issue|issue \d+|rounds? \d+)\b", re.I)


def test_the_user_pages_speak_of_the_recipe_as_it_is():
    """History ("now", "today's", "issue 13", "rounds 9-10") belongs in the design record, not in user pages."""
    for page in [README, *(DOCS / f"{name}.md" for name in USER_PAGES)]:
        found = HISTORY.findall(prose(page.read_text(encoding="utf-8")))
        assert not found, f"{page.name}: history voice {found}; move it to docs/design-record.md"


def test_the_docs_index_lists_every_page():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)#]+\.md)\)", index))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")} - {"README.md"}
    assert not pages - linked, f"docs/README.md does not list {sorted(pages - linked)}"
    assert not {p for p in linked if not (DOCS / p).is_file() and p != "../README.md"}, "the index links a missing page"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def dead_links(pages) -> list[str]:
    """`page: target` of every relative link in `pages` (outside code) to a missing file or heading."""
    dead = []
    for page in pages:
        text = re.sub(r"```.*?```|`[^`\n]*`", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto: (not checked offline)
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
                dead.append(f"{os.path.relpath(page, ROOT)}: {target}")
    return dead


def test_every_relative_link_resolves(tmp_path):
    pages = [README, ROOT / "README.zh-CN.md", ROOT / "tests" / "README.md", *sorted(DOCS.rglob("*.md"))]
    dead = dead_links(pages)
    assert not dead, f"links to a missing file or heading: {dead}"
    broken = tmp_path / "page.md"  # the check can fail: a missing file, a missing heading
    broken.write_text(f"# Title\n\n[a](missing.md) [b](#title) [c](#no-such-heading) [d]({README}#the-demo)\n")
    assert [line.split(": ")[1] for line in dead_links([broken])] == ["missing.md", "#no-such-heading"]


def test_the_readme_headline_is_the_stores():
    block = re.search(r"<!-- bench:headline:start -->\n(.*?)\n<!-- bench:headline:end -->", readme(), re.S)
    assert block, "README.md has no bench:headline block"
    headline = load_script("docs/headline.py")
    assert block.group(1).strip() == headline.headline(study_records("pipeline")).strip(), (
        "README's headline differs from the store: python docs/headline.py"
    )


def test_every_readme_number_is_generated_or_checked():
    text = prose(readme())
    covered = []
    for passage, check in CHECKED:
        found = [
            m.span() for m in re.finditer(passage if isinstance(passage, re.Pattern) else re.escape(passage), text)
        ]
        assert found, f"the README no longer has {passage!r}: drop it from CHECKED"
        for start, end in found:
            assert check(text[start:end]), f"README.md: {text[start:end]!r} disagrees with its source"
        covered += found
    loose = [
        (m.group(), text[max(0, m.start() - 40) : m.end() + 20].replace("\n", " "))
        for m in NUMBER.finditer(text)
        if not any(start <= m.start() and m.end() <= end for start, end in covered)
    ]
    assert not loose, f"numbers in README.md neither generated nor checked: {loose}"


def test_the_number_check_can_fail(monkeypatch):
    """A number added to the prose, or a checked one changed, is caught."""
    original = readme()
    for changed in (
        original.replace("## Configuration", "## Configuration\n\nPPO needs 7 minutes."),
        original.replace("below 97 % while", "below 96 % while"),
        original.replace(f"| {round(pipeline_medians()['rl'])} s |", "| 1 s |"),
        original.replace("catches 99 %", "catches 98 %"),
    ):
        monkeypatch.setattr(sys.modules[__name__], "readme", lambda changed=changed: changed)
        try:
            test_every_readme_number_is_generated_or_checked()
        except AssertionError:
            continue
        raise AssertionError("a changed README number passed the check")
