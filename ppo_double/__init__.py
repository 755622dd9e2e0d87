"""ppo_double: PPO fine-tuning of a tiny GPT-2 that doubles numbers, as a TRL recipe."""

from transformers import AutoTokenizer, PretrainedConfig

from .console import quiet_library_output
from .tokenizer import CharTokenizer

quiet_library_output()


class _CharTokenizerConfig(PretrainedConfig):
    # AutoTokenizer.register needs a config class to key on; this one exists only for that, so that after
    # `import ppo_double` a saved folder loads with plain AutoTokenizer, without trust_remote_code.
    model_type = "ppo_double_char"


AutoTokenizer.register(_CharTokenizerConfig, tokenizer_class=CharTokenizer, exist_ok=True)

__all__ = ["CharTokenizer"]
