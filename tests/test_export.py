"""Using the tuned model: the export laid out as its hub repo (the merged model at the root, for plain transformers;
the adapter alone in adapter/), its two model cards, the upload (refused without a token; through the real hub client
to a hub on this machine, then loaded from it as a user loads it), and `ask`."""

import json
import shutil
import subprocess
import sys

import pytest

from medical_r1 import config, files, runtime
from medical_r1.data import prompts
from medical_r1.generation import inference
from medical_r1.model.base_model import BaseModel
from medical_r1.generation.streaming import DIM, RESET, ThinkingPrinter
from stages.ask import answer
from tests.conftest import NETWORK_REFUSED, copy_of, stage_env
from tests.fake_hub import FakeHub

pytestmark = pytest.mark.slow

MERGE_TOLERANCE = 1e-4
"""Merging adds the low-rank product into the weights: the loss, or a logit, may move by rounding only."""
EXPORTED = ["README.md", "adapter/README.md", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
            "adapter/tokenizer.json", "adapter/tokenizer_config.json", "config.json", "generation_config.json",
            "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
MERGED = [name for name in EXPORTED if "/" not in name and name != "README.md"]
"""The merged model's files: the root's, but its card."""
PLACEHOLDER = "you/tiny-medical-lora"
"""The repo the cards load from when the export was not pushed."""
REPO, BASE_REPO = "you/medical-r1", "medical/tiny"
"""Where the test pushes the export, and where it publishes the tiny base (a user loads the adapter onto it)."""
TOKEN = "hf_FAKEtoken1234567890abcdefSECRET"
USER = "import sys; from tests.test_export import load_as_a_user; load_as_a_user(*sys.argv[1:])"


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    workdir = copy_of(trained, tmp_path_factory.mktemp("export") / "run")
    workdir.reproduce("evaluate_base", "evaluate")
    out = export(workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir


def export(workdir, *args, env=None):
    return subprocess.run([sys.executable, "-m", "stages.export", *args], cwd=workdir.path, capture_output=True,
                          text=True, env=env or stage_env(), timeout=600)


def greedy(model, tokenizer, prompt: str) -> list[int]:
    import torch

    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits


def load_as_a_user(repo: str, base_repo: str, prompt: str, out: str) -> None:
    """What a user of the pushed repo runs (in a process of its own, HF_ENDPOINT naming the hub): the merged model,
    and the adapter from the repo's subfolder on its base; the prompt's ids and both models' logits go to `out`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(repo)(prompt, return_tensors="pt")["input_ids"]
    merged = AutoModelForCausalLM.from_pretrained(repo)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_repo), repo, subfolder="adapter")
    torch.save({"ids": ids, "merged": logits(merged, ids), "adapter": logits(tuned, ids)}, out)


def test_the_export_is_the_merged_model_for_plain_transformers_and_answers_as_the_adapter_does(exported, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = exported / "models/export"
    merged = AutoModelForCausalLM.from_pretrained(root).eval()
    tokenizer = AutoTokenizer.from_pretrained(root)
    assert "peft" not in (root / "config.json").read_text() and not (root / "adapter_config.json").exists()
    monkeypatch.chdir(exported.path)
    with_adapter, _ = inference.load(BaseModel.read("models/base"), exported / "models/adapter", False, merge=False)
    rows = files.read_jsonl(exported / "data/prepared/eval.jsonl")
    for row in rows[:3]:
        assert greedy(merged, tokenizer, row["prompt"]) == greedy(with_adapter, tokenizer, row["prompt"])
    check = json.loads((exported / "reports/export/metrics.json").read_text())
    assert check["loss_difference"] <= MERGE_TOLERANCE
    assert check["merged_bytes"] == sum((root / name).stat().st_size for name in MERGED)
    adapter = root / "adapter/adapter_model.safetensors"
    assert adapter.read_bytes() == (exported / "models/adapter/adapter_model.safetensors").read_bytes()


def test_both_model_cards_parse_carry_the_evaluation_and_show_how_to_load_from_the_repo(exported):
    from huggingface_hub import ModelCard

    merged, adapter = (ModelCard.load(exported / "models/export" / name) for name in ("README.md", "adapter/README.md"))
    for card in (merged, adapter):
        results = {r.metric_name: r.metric_value for r in card.data.eval_results}
        for model in ("base", "tuned"):
            scores = json.loads((exported / f"reports/eval/{model}/metrics.json").read_text())[model]
            assert {key: results[f"{model} {key}"] for key in scores} == scores
        assert "Warning: `weights: random`" in card.text and "random-weights" in card.data.tags
        assert card.data.base_model is None  # random weights: no hub repo holds the base
        assert prompts.THINK_OPEN in card.text and "r=16, alpha=16" in card.text
        assert f'PeftModel.from_pretrained(base, "{PLACEHOLDER}", subfolder="adapter")' in card.text
    assert (merged.data.library_name, adapter.data.library_name) == ("transformers", "peft")
    assert f'model = AutoModelForCausalLM.from_pretrained("{PLACEHOLDER}")' in merged.text
    assert "| merged weights | float32;" in merged.text and "merged weights" not in adapter.text


def test_pushing_without_a_token_is_refused_and_names_every_file(exported, tmp_path):
    workdir = copy_of(exported, tmp_path / "run")
    env = {k: v for k, v in stage_env().items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    out = export(workdir, "--push-to-hub", "someone/medical-r1", env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last == (f"error: --push-to-hub someone/medical-r1: no token in HF_TOKEN, so the {len(EXPORTED)} files of "
                    f"models/export ({', '.join(EXPORTED)}) stay here; set HF_TOKEN to a write token and run again")
    assert tree(workdir / "models/export") == EXPORTED


def tree(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_pushed_export_loads_from_the_hub_as_a_user_loads_it(exported, tmp_path):
    """The real hub client both ways: `--push-to-hub` uploads to a hub on this machine (tests/fake_hub.py), and a
    user's process loads the merged model and the adapter on its base from it, by repo id."""
    import torch
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    workdir = copy_of(exported, tmp_path / "run")
    shutil.copytree(workdir / "models/base", tmp_path / "hub" / BASE_REPO, ignore=shutil.ignore_patterns("base.json"))
    hub = FakeHub(tmp_path / "hub")
    env = stage_env({"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf_home"),
                     "HF_HUB_OFFLINE": "0", "OMP_NUM_THREADS": str(runtime.CPU_THREADS)})
    prompt = files.read_jsonl(workdir / "data/prepared/eval.jsonl")[0]["prompt"]
    try:
        pushed = export(workdir, "--push-to-hub", REPO, env=env)
        assert pushed.returncode == 0 and NETWORK_REFUSED not in pushed.stderr, pushed.stderr[-3000:]
        user = subprocess.run([sys.executable, "-c", USER, REPO, BASE_REPO, prompt, str(tmp_path / "logits.pt")],
                              cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
        assert user.returncode == 0 and NETWORK_REFUSED not in user.stderr, user.stderr[-3000:]
    finally:
        hub.close()
    local, remote = workdir / "models/export", tmp_path / "hub" / REPO
    assert tree(remote) == tree(local) == EXPORTED
    assert all((remote / name).read_bytes() == (local / name).read_bytes() for name in EXPORTED)
    assert {r["authorization"] for r in hub.requests} == {f"Bearer {TOKEN}"}
    card = ModelCard.load(remote / "README.md").text
    assert f'from_pretrained("{REPO}")' in card
    assert f'PeftModel.from_pretrained(base, "{REPO}", subfolder="adapter")' in card
    loaded = torch.load(tmp_path / "logits.pt")
    runtime.setup()  # the thread count of every stage, and of the user's process (OMP_NUM_THREADS)
    assert torch.equal(loaded["merged"], logits(AutoModelForCausalLM.from_pretrained(local).eval(), loaded["ids"]))
    assert (loaded["adapter"] - loaded["merged"]).abs().max() <= MERGE_TOLERANCE


def test_ask_on_the_export_prints_what_the_base_with_the_adapter_prints(exported, monkeypatch, capsys):
    """(tests/test_pipeline.py asks the embedded default's tuned model, which writes an answer part.)"""
    question = json.loads((exported / "data/prepared/eval.jsonl").read_text().splitlines()[0])["question"]
    out = subprocess.run([sys.executable, "-m", "stages.ask", "--model", "models/export", "--hide-thinking",
                          "--max-new-tokens", "64", question], cwd=exported.path, capture_output=True, text=True,
                         env=stage_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    monkeypatch.chdir(exported.path)
    model, tokenizer = inference.load(BaseModel.read("models/base"), exported / "models/adapter", False)
    capsys.readouterr()
    answer(model, tokenizer, question, 64, 0.0, True, config.load().train.max_seq_length)
    assert out.stdout == capsys.readouterr().out
    assert out.stdout.startswith(("\n[answer]\n", "\n[no answer")) and "[thinking]" not in out.stdout


CLOSED = ["Fever and ", "cough; likely pneu", "monia.\n</th", "ink>\nCommunity-acquired ", "pneumonia."]
UNCLOSED = ["Fever and ", "cough; still think", "ing"]
THOUGHT, ANSWER = "Fever and cough; likely pneumonia.\n", "\n[answer]\nCommunity-acquired pneumonia.\n"
NO_ANSWER = "\n[no answer: the model did not close its thinking within the budget]\n"
PRINTED = {  # (stream, hide_thinking, terminal): what the printer prints
    ("closed", False, True): f"{DIM}{THOUGHT}{RESET}{ANSWER}",
    ("closed", False, False): f"[thinking]\n{THOUGHT}{ANSWER}",
    ("closed", True, True): ANSWER,
    ("closed", True, False): ANSWER,
    ("unclosed", False, True): f"{DIM}Fever and cough; still thinking{RESET}{NO_ANSWER}",
    ("unclosed", False, False): f"[thinking]\nFever and cough; still thinking{NO_ANSWER}",
    ("unclosed", True, True): NO_ANSWER,
    ("unclosed", True, False): NO_ANSWER,
}


@pytest.mark.parametrize("stream,hide,terminal", PRINTED, ids=["-".join(map(str, key)) for key in PRINTED])
def test_the_printer_prints_the_thinking_dimmed_marked_or_hidden_then_the_answer(stream, hide, terminal, capsys):
    """Exactly, for each case: the closing tag split over two pieces, or never coming."""
    printer = ThinkingPrinter(hide_thinking=hide, terminal=terminal)
    for piece in CLOSED if stream == "closed" else UNCLOSED:
        printer.write(piece)
    printer.finish()
    assert capsys.readouterr().out == PRINTED[stream, hide, terminal]
