"""A model from the hub, through the real hub client against a hub on this machine (tests/fake_hub.py): prepare,
train and evaluate download what params.yaml names, send the token from the environment with each request, and
write it into no file."""

import shutil
from pathlib import Path

import pytest

from tests.conftest import Workdir, small
from tests.fake_hub import FakeHub

pytestmark = pytest.mark.slow

TOKEN = "hf_FAKEtoken1234567890abcdefSECRET"
RUN = {"eval.num_samples": 2, "eval.max_new_tokens": 8}


def test_a_hub_model_trains_and_evaluates_with_the_token_sent_and_never_written(tmp_path):
    tiny = Workdir(tmp_path / "tiny")  # the tiny model, published as the hub repo medical/tiny
    tiny.params(small())
    tiny.run("prepare")
    shutil.copytree(tiny / "models/base", tmp_path / "hub/medical/tiny", ignore=shutil.ignore_patterns("base.json"))
    hub = FakeHub(tmp_path / "hub")
    env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf_home")}
    try:
        workdir = Workdir(tmp_path / "run")
        workdir.params(small({**RUN, "model.name": "medical/tiny"}))
        workdir.reproduce("prepare", "train", "evaluate_base", env=env)
    finally:
        hub.close()
    downloaded = {r["path"].rsplit("/", 1)[-1] for r in hub.requests if r["method"] == "GET"}
    assert {"tokenizer.json", "config.json", "model.safetensors"} <= downloaded
    assert {r["authorization"] for r in hub.requests} == {f"Bearer {TOKEN}"}
    written = [p for p in Path(workdir.path).rglob("*") if p.is_file() and "data/sample" not in str(p)]
    assert len(written) > 20 and (workdir / "models/adapter/adapter_model.safetensors").is_file()
    assert [str(p) for p in written if TOKEN.encode() in p.read_bytes()] == []
