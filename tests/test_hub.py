"""`--push_to_hub` for every stage, without a network: the upload is intercepted at the huggingface_hub API boundary.

transformers' `Trainer.push_to_hub` (which TRL's trainers inherit) calls `HfApi.create_repo` (from `Trainer.__init__`,
through `init_hf_repo`) and `HfApi.upload_folder(folder_path=output_dir, ignore_patterns=[...])` on the shared
`transformers.utils.hub.hf_api()` instance. Both are replaced here: `upload_folder` copies the files it would upload
(filtered with huggingface_hub's own pattern matching) into a folder, which the tests then read like a stranger
downloading the repository would: in a process where `ppo_double` cannot be imported.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard, RepoUrl
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects

from conftest import TINY_REWARD, TINY_SFT, load_recipe
from ppo_double.task import TEST_NUMBERS, make_completion, make_prompt
from ppo_double.tokenizer import CharTokenizer

FAKE_ENV_TOKEN = "hf_fakeEnvTokenPpoDouble0123456789abcdefXYZ"
FAKE_CLI_TOKEN = "hf_fakeCliTokenPpoDouble9876543210zyxwvuQRS"
PROMPTS = [make_prompt(q, label) for q in TEST_NUMBERS[:3] for label in (None, 0, 1, 2)]
ANSWERS = [make_prompt(q) + make_completion(q, label) for q in TEST_NUMBERS[:3] for label in (0, 1, 2)]
ANSWERS += [make_prompt(q) + make_completion(q + 1, 2) for q in TEST_NUMBERS[:2]]  # wrong doubles


class FakeHub:
    """Stands in for the Hub: records repos created and copies each upload_folder call's files."""

    def __init__(self, root: Path):
        self.root = root
        self.repos, self.uploads = [], []

    def create_repo(self, api, repo_id, *args, token=None, **kwargs):
        self.repos.append({"repo_id": repo_id, "token": token})
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, api, *, repo_id, folder_path, ignore_patterns=None, allow_patterns=None, **kwargs):
        folder = Path(folder_path)
        ignore = [*([ignore_patterns] if isinstance(ignore_patterns, str) else ignore_patterns or [])]
        files = [p.relative_to(folder).as_posix() for p in sorted(folder.glob("**/*")) if p.is_file()]
        kept = list(
            filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore + DEFAULT_IGNORE_PATTERNS)
        )
        target = self.root / f"upload{len(self.uploads)}"
        for name in kept:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / name, target / name)
        self.uploads.append({"repo_id": repo_id, "folder": target, "files": set(kept), **kwargs})
        return huggingface_hub.CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/0", commit_message="", commit_description="", oid="0"
        )


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """Run SFT, reward and PPO (tiny) with --push_to_hub; PPO starts from the SFT and reward folders just pushed."""
    from test_online import TINY_GROUP
    from test_ppo import TINY_PPO

    root = tmp_path_factory.mktemp("hub")
    hub = FakeHub(root / "hub")
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", FAKE_ENV_TOKEN)
        mp.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        mp.setattr(huggingface_hub.HfApi, "create_repo", lambda api, *a, **k: hub.create_repo(api, *a, **k))
        mp.setattr(huggingface_hub.HfApi, "upload_folder", lambda api, *a, **k: hub.upload_folder(api, *a, **k))
        push = ["--push_to_hub", "true", "--hub_model_id"]
        start = ["--sft_model_path", str(root / "sft"), "--reward_model_path", str(root / "reward")]
        for stage, args in (
            ("sft", [*TINY_SFT, *push, "someone/ppo-double-sft"]),
            # the token given on the command line (the other runs take it from HF_TOKEN)
            ("reward", [*TINY_REWARD, *push, "someone/ppo-double-reward", "--hub_token", FAKE_CLI_TOKEN]),
            ("ppo", [*TINY_PPO, *push, "someone/ppo-double-ppo", *start]),
            ("grpo", [*TINY_GROUP, *push, "someone/ppo-double-grpo", *start]),
        ):
            start = len(hub.uploads)
            trainer = load_recipe(stage).main([*args, "--output_dir", str(root / stage)])
            runs[stage] = {"trainer": trainer, "uploads": hub.uploads[start:], "output_dir": root / stage}
    runs["repos"] = hub.repos
    return runs


@torch.no_grad()
def greedy_answers(model, prompts):
    tok = CharTokenizer()
    model.eval()
    answers = []
    for prompt in prompts:
        ids = torch.tensor([tok(prompt).input_ids])
        out = model.generate(ids, max_new_tokens=7, do_sample=False, eos_token_id=2, pad_token_id=0)
        answers.append(tok.decode(out[0, ids.shape[1] :].tolist()))
    return answers


@torch.no_grad()
def classify(model, texts):
    tok = CharTokenizer()
    model.eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    return model(**batch).logits.argmax(-1).tolist()


# Run where `ppo_double` cannot be imported, in an empty folder: what a stranger gets from the Hub.
STRANGER = r"""
import json, sys
sys.modules["ppo_double"] = None
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

spec = json.loads(sys.argv[1])
report = {}
for name, folder in spec["folders"].items():
    remote = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    plain = AutoTokenizer.from_pretrained(folder)  # no remote code: tokenizer.json
    texts = spec["answers"] if name == "reward" else spec["prompts"]
    entry = {
        "remote_class": type(remote).__name__,
        "plain_class": type(plain).__name__,
        "remote_ids": [remote(t).input_ids for t in texts],
        "plain_ids": [plain(t).input_ids for t in texts],
        "plain_decoded": [plain.decode(plain(t).input_ids) for t in texts],
    }
    try:
        plain("S__:12a4x2=")
        entry["plain_unknown_char"] = "accepted"
    except Exception as e:
        entry["plain_unknown_char"] = str(e)
    with torch.no_grad():
        if name == "reward":
            model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
            batch = remote(texts, padding=True, return_tensors="pt")
            entry["labels"] = model(**batch).logits.argmax(-1).tolist()
        else:
            model = AutoModelForCausalLM.from_pretrained(folder).eval()
            answers = []
            for prompt in texts:
                ids = remote(prompt, return_tensors="pt").input_ids
                out = model.generate(ids, max_new_tokens=7, do_sample=False, eos_token_id=2, pad_token_id=0)
                answers.append(remote.decode(out[0, ids.shape[1]:]))
            entry["answers"] = answers
    report[name] = entry
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def stranger(pushed, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("stranger")
    spec = {
        "folders": {stage: str(pushed[stage]["uploads"][-1]["folder"]) for stage in ("sft", "reward", "ppo", "grpo")},
        "prompts": PROMPTS,
        "answers": ANSWERS,
    }
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_TOKEN")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(cwd / "modules"), HF_HUB_DISABLE_TELEMETRY="1")
    out = subprocess.run(
        [sys.executable, "-c", STRANGER, json.dumps(spec)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


STAGE_MODELS = {"sft": "policy", "reward": "classifier", "ppo": "policy", "grpo": "policy"}


@pytest.mark.parametrize("stage", ["sft", "reward", "ppo", "grpo"])
def test_one_push_of_the_final_folder_with_what_a_stranger_needs(pushed, stage):
    uploads = pushed[stage]["uploads"]
    assert len(uploads) == 1, "the folder must be pushed once, at the end (not also by save_model)"
    upload = uploads[0]
    assert upload["repo_id"] == f"someone/ppo-double-{stage}"
    needed = {"model.safetensors", "config.json", "README.md", "eval_results.json"}
    needed |= {"tokenizer_config.json", "vocab.json", "tokenizer.py", "tokenizer.json"}
    if STAGE_MODELS[stage] == "policy":
        needed.add("generation_config.json")
    assert needed <= upload["files"]
    assert not any(name.startswith(("checkpoint-", "_")) for name in upload["files"])
    # what was uploaded is what the recipe left in output_dir
    for name in upload["files"] - {"training_args.bin"}:
        assert (upload["folder"] / name).read_bytes() == (pushed[stage]["output_dir"] / name).read_bytes(), name


def test_repos_are_created_with_the_token_from_the_environment_or_the_command_line(pushed):
    # token None: huggingface_hub reads HF_TOKEN itself; --hub_token is passed on, to create_repo and to the upload
    # (a stage may build more than one Trainer from its arguments: each creates the repo, exist_ok)
    assert {(r["repo_id"], r["token"]) for r in pushed["repos"]} == {
        ("someone/ppo-double-sft", None),
        ("someone/ppo-double-reward", FAKE_CLI_TOKEN),
        ("someone/ppo-double-ppo", None),
        ("someone/ppo-double-grpo", None),
    }
    tokens = [pushed[s]["uploads"][0]["token"] for s in ("sft", "reward", "ppo", "grpo")]
    assert tokens == [None, FAKE_CLI_TOKEN, None, None]


@pytest.mark.parametrize("stage", ["sft", "reward", "ppo", "grpo"])
def test_no_token_in_any_uploaded_file(pushed, stage):
    upload = pushed[stage]["uploads"][0]
    for name in upload["files"]:
        data = (upload["folder"] / name).read_bytes()
        for secret in (FAKE_ENV_TOKEN, FAKE_CLI_TOKEN):
            assert secret.encode() not in data, f"{secret[:8]}... found in {name}"
    assert pushed["reward"]["trainer"].args.hub_token == FAKE_CLI_TOKEN  # restored after the push


def _card(pushed, stage):
    return ModelCard.load(pushed[stage]["uploads"][0]["folder"] / "README.md")


@pytest.mark.parametrize("stage", ["sft", "ppo", "grpo"])
def test_policy_card_gives_stage_config_and_judge_numbers(pushed, stage):
    card = _card(pushed, stage)
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-generation"
    assert {"trl", stage, "ppo_double"} <= set(card.data.tags)
    assert f"(stage: {stage})" in card.text
    results = json.loads((pushed[stage]["uploads"][0]["folder"] / "eval_results.json").read_text())
    for mode in ("greedy", "sampled"):
        for prefix, row in results[mode].items():
            assert f"| {mode} | `{prefix}` | {row['n']} | {100 * row['exact_match']:.1f}% |" in card.text
    for key in ("n_layer", "n_embd", "learning_rate", "per_device_train_batch_size", "seed", "parameters"):
        assert f"| `{key}` |" in card.text
    if stage == "ppo":
        assert set(results["greedy"]) == {"数字", "小写", "大写", "all"}
        for key, value in (("kl_coef", 0.1), ("total_episodes", 64), ("response_length", 7), ("use_peft", False)):
            assert f"| `{key}` | `{value}` |" in card.text
        assert "`episodes_run` | `64`" in card.text
    elif stage == "grpo":
        for key, value in (("num_generations", 4), ("beta", 0.04), ("max_completion_length", 7), ("max_steps", 4)):
            assert f"| `{key}` | `{value}` |" in card.text
        assert "`episodes_run` | `64`" in card.text  # 4 updates of 16 completions
    else:
        assert "| `max_steps` | `8` |" in card.text
    assert f'from_pretrained("someone/ppo-double-{stage}"' in card.text
    assert "hub_token" not in card.text


def test_reward_card_gives_accuracy_per_class(pushed):
    card = _card(pushed, "reward")
    assert card.data.pipeline_tag == "text-classification"
    assert "(stage: reward)" in card.text
    results = json.loads((pushed["reward"]["uploads"][0]["folder"] / "eval_results.json").read_text())
    for cls in ("digits", "lower", "upper", "invalid", "all"):
        assert f"| {cls} | {100 * results[f'accuracy/{cls}']:.1f}% |" in card.text
    assert "| `num_hidden_layers` | `1` |" in card.text and "| `invalid_fraction` | `0.4` |" in card.text


@pytest.mark.parametrize("stage", ["sft", "ppo", "grpo"])
def test_stranger_gets_the_same_greedy_answers(pushed, stranger, stage):
    model = pushed[stage]["trainer"].model
    model = getattr(model, "policy", model)
    assert stranger[stage]["answers"] == greedy_answers(model, PROMPTS)


def test_stranger_gets_the_same_reward_classes(pushed, stranger):
    assert stranger["reward"]["labels"] == classify(pushed["reward"]["trainer"].model, ANSWERS)


@pytest.mark.parametrize("stage", ["sft", "reward", "ppo"])
def test_stranger_tokenizers_with_and_without_remote_code_agree(stranger, stage):
    tok, report = CharTokenizer(), stranger[stage]
    texts = ANSWERS if stage == "reward" else PROMPTS
    assert report["remote_class"] == "CharTokenizer"
    assert report["plain_class"] == "TokenizersBackend"
    assert report["remote_ids"] == report["plain_ids"] == [tok(t).input_ids for t in texts]
    assert report["plain_decoded"] == texts
    # no unknown token to fall back on: the fast tokenizer refuses the character too (without naming it)
    assert "Missing [UNK] token" in report["plain_unknown_char"]
