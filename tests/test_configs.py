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


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("max_steps: 5\n", True),  # names neither: TRL's default (True), without transformers' deprecation warning
        ("max_steps: 5\nactivation_checkpointing: false\n", False),
        ("max_steps: 5\ngradient_checkpointing: false\n", False),  # the old name still counts (transformers warns)
    ],
)
def test_own_yaml_keeps_trls_checkpointing_default_without_a_warning(yaml_text, expected, tmp_path):
    from trl import SFTConfig

    config = tmp_path / "own.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (args,) = parse_args((SFTConfig,), argv=["--config", str(config), "--output_dir", str(tmp_path / "out")])
    assert args.activation_checkpointing is expected and args.gradient_checkpointing is expected
    deprecated = [w for w in caught if "gradient_checkpointing` is deprecated" in str(w.message)]
    assert len(deprecated) == (1 if "gradient_checkpointing" in yaml_text else 0)
