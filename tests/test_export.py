"""Using the tuned model: the merged export (plain transformers, the adapter's greedy answers and loss), its model
card, the upload it refuses without a token, and `ask`."""

import json
import subprocess
import sys

import pytest

from medical_r1 import files
from medical_r1.data import prompts
from medical_r1.generation import inference
from medical_r1.model.base_model import BaseModel
from tests.conftest import copy_of, stage_env

pytestmark = pytest.mark.slow

MERGE_TOLERANCE = 1e-4
"""Merging adds the low-rank product into the weights: the loss may move by rounding only."""
EXPORTED = ["README.md", "adapter/README.md", "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/tokenizer.json",
            "adapter/tokenizer_config.json", "merged/config.json", "merged/generation_config.json",
            "merged/model.safetensors", "merged/tokenizer.json", "merged/tokenizer_config.json"]


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


def test_the_merged_export_loads_with_plain_transformers_and_answers_as_the_adapter_does(exported, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged_dir = exported / "models/export/merged"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert "peft" not in (merged_dir / "config.json").read_text() and not (merged_dir / "adapter_config.json").exists()
    monkeypatch.chdir(exported.path)
    with_adapter, _ = inference.load(BaseModel.read("models/base"), exported / "models/adapter", False, merge=False)
    rows = files.read_jsonl(exported / "data/prepared/eval.jsonl")
    for row in rows[:3]:
        assert greedy(merged, tokenizer, row["prompt"]) == greedy(with_adapter, tokenizer, row["prompt"])
    check = json.loads((exported / "reports/export/metrics.json").read_text())
    assert check["loss_difference"] <= MERGE_TOLERANCE and check["merged_bytes"] > 0
    adapter = exported / "models/export/adapter/adapter_model.safetensors"
    assert adapter.read_bytes() == (exported / "models/adapter/adapter_model.safetensors").read_bytes()


def test_the_model_card_parses_and_carries_the_evaluation(exported):
    from huggingface_hub import ModelCard

    card = ModelCard.load(exported / "models/export/README.md")
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    for model in ("base", "tuned"):
        scores = json.loads((exported / f"reports/eval/{model}/metrics.json").read_text())[model]
        assert {key: results[f"{model} {key}"] for key in scores} == scores
    assert "Warning: `weights: random`" in card.text and "random-weights" in card.data.tags
    assert prompts.THINK_OPEN in card.text and "r=16, alpha=16" in card.text


def test_pushing_without_a_token_is_refused_and_names_every_file(exported):
    env = {k: v for k, v in stage_env().items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    out = export(exported, "--push-to-hub", "someone/medical-r1", env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last == (f"error: --push-to-hub someone/medical-r1: no token in HF_TOKEN, so the {len(EXPORTED)} files of "
                    f"models/export ({', '.join(EXPORTED)}) stay here; set HF_TOKEN to a write token and run again")
    found = sorted(str(p.relative_to(exported / "models/export")) for p in (exported / "models/export").rglob("*")
                   if p.is_file())
    assert found == EXPORTED


def test_ask_on_the_merged_export_hides_the_thinking_when_asked(exported):
    """(tests/test_pipeline.py asks the embedded default's tuned model, which writes an answer part.)"""
    question = json.loads((exported / "data/prepared/eval.jsonl").read_text().splitlines()[0])["question"]
    out = subprocess.run([sys.executable, "-m", "stages.ask", "--model", "models/export/merged", "--hide-thinking",
                          "--max-new-tokens", "64", question], cwd=exported.path, capture_output=True, text=True,
                         env=stage_env(), timeout=600)
    assert out.returncode == 0 and "[thinking]" not in out.stdout, out.stderr[-2000:]
    assert "[answer]" in out.stdout or "[no answer: the model did not close its thinking" in out.stdout


@pytest.mark.parametrize("hide", [False, True])
def test_the_printer_splits_a_stream_at_the_closing_tag_even_across_pieces(hide, capsys):
    from stages.ask import ThinkingPrinter

    printer = ThinkingPrinter(hide_thinking=hide, terminal=False)
    for piece in ["Fever and ", "cough; likely pneu", "monia.\n</th", "ink>\nCommunity-acquired ", "pneumonia."]:
        printer.write(piece)
    printer.finish()
    thinking = "" if hide else "[thinking]\nFever and cough; likely pneumonia.\n"
    assert capsys.readouterr().out == thinking + "\n[answer]\nCommunity-acquired pneumonia.\n"
