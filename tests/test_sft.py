import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig

from conftest import ROOT, load_recipe
from ppo_double.args import parse_args
from ppo_double.evaluate import generate_answers
from ppo_double.task import heldout_prompts


def test_yaml_defaults_and_cli_override():
    sft = load_recipe("sft")
    config = str(ROOT / "recipes" / "configs" / "sft.yaml")
    script_args, training_args = parse_args((sft.SFTScriptArguments, SFTConfig), config, [])
    assert training_args.max_steps == 2000 and training_args.output_dir == "outputs/sft"
    assert training_args.bf16 is False
    script_args, training_args = parse_args(
        (sft.SFTScriptArguments, SFTConfig), config, ["--max_steps", "7", "--n_layer", "2"]
    )
    assert training_args.max_steps == 7 and script_args.n_layer == 2
    assert training_args.learning_rate == 3e-3  # untouched keys keep the YAML value


def test_tiny_sft_writes_a_checkpoint_that_loads_and_generates(tiny_sft):
    names = {p.name for p in tiny_sft.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer_config.json"} <= names
    model = AutoModelForCausalLM.from_pretrained(tiny_sft)
    tokenizer = AutoTokenizer.from_pretrained(tiny_sft)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == 2
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id == 0
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()  # untied, like fc_out
    prompts = heldout_prompts(prefixed=False)[:4]
    answers = generate_answers(model, tokenizer, prompts)
    assert len(answers) == 4 and all(isinstance(a, str) and 0 < len(a) <= 7 for a in answers)
    results = json.loads((tiny_sft / "eval_results.json").read_text())
    assert results["greedy"]["__"]["n"] == 500


def test_sft_trains_only_on_the_completion():
    from ppo_double.data import sft_dataset
    from ppo_double.modeling import load_tokenizer

    tokenizer = load_tokenizer()
    row = sft_dataset(tokenizer, 1, seed=0)[0]
    text = tokenizer.decode(row["input_ids"])
    completion = tokenizer.decode([label for label in row["labels"] if label != -100])
    assert text.startswith("S__:") and text.endswith(completion) and completion.endswith("E")
    assert text[: len(text) - len(completion)].endswith("x2=")


def test_generation_is_seeded(tiny_sft):
    model = AutoModelForCausalLM.from_pretrained(tiny_sft)
    tokenizer = AutoTokenizer.from_pretrained(tiny_sft)
    prompts = heldout_prompts(prefixed=True)[:50]
    before = torch.random.get_rng_state()
    a = generate_answers(model, tokenizer, prompts, sample=True, seed=3)
    b = generate_answers(model, tokenizer, prompts, sample=True, seed=3)
    assert a == b
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's RNG is left alone
