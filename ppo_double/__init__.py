"""ppo_double: PPO fine-tuning of a tiny GPT-2 that doubles numbers, as a TRL recipe."""

import os

# transformers 5 swaps layers for kernels downloaded from the Hub by default (`use_kernels`), but only where a model
# is built on a GPU: under ZeRO-3 (zero.Init) and not on one GPU, where the model is built on the CPU first. Off by
# default, the layers are the same under every engine and a GPU machine without network runs ZeRO-3 (it crashed
# there: docs/device_check.md). USE_HUB_KERNELS=YES turns them back on.
os.environ.setdefault("USE_HUB_KERNELS", "NO")

from transformers import AutoTokenizer, PretrainedConfig  # noqa: E402  (after the environment default above)

from .console import quiet_library_output
from .tokenizer import CharTokenizer

quiet_library_output()


class _CharTokenizerConfig(PretrainedConfig):
    # AutoTokenizer.register needs a config class to key on; this one exists only for that, so that after
    # `import ppo_double` a saved folder loads with plain AutoTokenizer, without trust_remote_code.
    model_type = "ppo_double_char"


AutoTokenizer.register(_CharTokenizerConfig, tokenizer_class=CharTokenizer, exist_ok=True)

__all__ = ["CharTokenizer"]
