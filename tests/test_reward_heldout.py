"""docs/reward_heldout.md shows what the store holds: its generated block is what docs/reward_heldout.py writes from
the committed records of bench/studies/reward_heldout.yaml, and the floors it applies are those recipes/reward.py
checks."""

from conftest import load_recipe, load_script


def test_the_page_matches_the_store():
    page = load_script("docs/reward_heldout.py")
    assert page.main(["--check"]) == 0, "rerun `python docs/reward_heldout.py` after the study"


def test_the_page_applies_the_stages_own_floors():
    page = load_script("docs/reward_heldout.py")
    reward = load_recipe("reward")
    defaults = reward.RewardScriptArguments()
    assert page.floors() == {name: getattr(defaults, name) for name in page.floors()}
    assert set(page.floors()) == {"min_clean_accuracy", "min_invalid_caught", "min_kind_caught"}
