"""What a run prints: our short lines, the progress bar and the result tables, not library output a user cannot act on.

Each library message turned off here is named, with why it tells a user of this project nothing; everything else
(a warning of a real problem) still shows. Applied on `import ppo_double`, before any TRL module is imported.
"""

import logging
import os
import warnings

import datasets
import torch
from transformers.utils import logging as hf_logging
from trl.import_utils import TRLExperimentalWarning


class _DropMessage(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


def quiet_library_output() -> None:
    # TRL 1.12 ships PPOTrainer only under `trl.experimental` (the reason for the pin, see README); its notice that
    # experimental APIs may change says what the pin already handles.
    warnings.filterwarnings("ignore", category=TRLExperimentalWarning)
    # TRL 1.12's PPOTrainer reads `model.is_gradient_checkpointing`, renamed in transformers 5; TRL's code, and no TRL
    # release after 1.12 has PPOTrainer to fix it.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    # transformers' generate() drops an all-ones attention mask, then warns when a row that has finished feeds its pad
    # token back in. Prompts here are never padded (ppo_double.evaluate batches them by length; PPO's all have one
    # length), and every other forward pass in this project is given its mask.
    hf_logging.get_logger("transformers.modeling_utils").addFilter(
        _DropMessage("We strongly recommend passing in an `attention_mask`")
    )
    # TRL 1.12's SFTTrainer builds its loss output with `past_key_values=None`, a name transformers 5.24 renamed to
    # `cache`: TRL's code, fixed only in TRL releases without PPOTrainer (the pin, see README).
    hf_logging.get_logger("transformers.utils.generic").addFilter(
        _DropMessage("`past_key_values`/`cache_params` are deprecated")
    )
    # TRL 1.12's PPOTrainer calls generate() with a GenerationConfig and `return_dict_in_generate`/`output_scores`
    # beside it, which transformers 5.24 deprecates: TRL's code, in a TRL module no later release has (the pin).
    hf_logging.get_logger("transformers.generation.utils").addFilter(
        _DropMessage("Passing `generation_config` together with generation-related arguments")
    )
    # Without a GPU DeepSpeed picks its CPU accelerator, with a warning that it could not find one: say which instead.
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    # DeepSpeed's import loads torch's C++ extension builder, which warns that it found no CUDA runtime: DeepSpeed's
    # ops are not built here (its Python engine runs on CPU), so nothing is missing.
    logging.getLogger("torch.utils.cpp_extension").addFilter(_DropMessage("No CUDA runtime is found"))
    # DeepSpeed 0.19's ZeRO calls torch.distributed's all_gather_into_tensor and reduce_scatter_tensor, which torch 2.14
    # deprecates, at every step: DeepSpeed's code, nothing a user of this project can change.
    for collective in ("all_gather_into_tensor", "reduce_scatter_tensor"):
        warnings.filterwarnings(
            "ignore", message=f"`torch.distributed.{collective}` is deprecated", category=FutureWarning
        )
    # Bars for loading, writing and uploading a few-MB model (milliseconds to seconds) and for SFTTrainer's dataset
    # preparation (well under a second): the training bar is the one that tells how far a run is.
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
