"""Reruns with the same params give byte-identical metrics and weights; secrets never reach an output."""

import filecmp
from pathlib import Path

from tests.conftest import Workdir, small

RUN = {"eval.num_samples": 2, "eval.max_new_tokens": 16, "train.max_steps": 3}
FAKE_TOKEN = "hf_FAKEtoken1234567890abcdefSECRET"
COMPARED = ["reports/prepare/stats.json", "reports/train/metrics.json", "reports/train/steps.csv",
            "reports/eval/base/metrics.json", "reports/eval/tuned/metrics.json",
            "reports/eval/samples.jsonl", "reports/eval/before_after.csv", "data/prepared/train.jsonl", "data/prepared/eval.jsonl",
            "models/base/model.safetensors", "models/base/tokenizer.json", "models/adapter/adapter_config.json",
            "models/adapter/adapter_model.safetensors"]


def reproduce(workdir: Workdir, env: dict) -> None:
    workdir.params(small(RUN))
    workdir.reproduce(env=env)


def test_two_runs_are_byte_identical_and_leak_no_token(tmp_path):
    first, second = Workdir(tmp_path / "first"), Workdir(tmp_path / "second")
    reproduce(first, {"HF_TOKEN": FAKE_TOKEN, "HUGGING_FACE_HUB_TOKEN": FAKE_TOKEN})
    reproduce(second, {})
    for name in COMPARED:
        assert filecmp.cmp(first / name, second / name, shallow=False), f"{name} differs between reruns"

    written = [p for p in Path(first.path).rglob("*") if p.is_file() and not p.is_symlink()
               and "data/sample" not in str(p)]
    assert len(written) > 20
    leaks = [str(p) for p in written if FAKE_TOKEN.encode() in p.read_bytes()]
    assert leaks == []
