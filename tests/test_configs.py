"""recipes/configs/*.yaml: each parses with its recipe's own dataclasses, and without a warning (a deprecated key
in a shipped YAML prints a FutureWarning on every run of that stage)."""

import warnings

import pytest

from conftest import ROOT, load_recipe
from ppo_double.args import parse_args

CONFIGS = {
    "sft.yaml": "sft",
    "reward.yaml": "reward",
    "reward_tutorial.yaml": "reward",
    "ppo.yaml": "ppo",
    "grpo.yaml": "grpo",
    "rloo.yaml": "rloo",
}


def test_every_config_is_listed():
    assert sorted(p.name for p in (ROOT / "recipes" / "configs").glob("*.yaml")) == sorted(CONFIGS)


class Parsed(Exception):
    """Raised in place of the stage's work once its arguments are parsed."""


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_config_parses_without_a_warning(config, monkeypatch):
    recipe = load_recipe(CONFIGS[config])

    def parse_only(*args, **kwargs):
        parse_args(*args, **kwargs)
        raise Parsed

    monkeypatch.setattr(recipe, "parse_args", parse_only)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the parse, with its message
        with pytest.raises(Parsed):
            recipe.main(["--config", str(ROOT / "recipes" / "configs" / config)])
