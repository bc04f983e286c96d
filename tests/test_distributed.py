"""Data parallelism on this CPU: torchrun with the gloo backend is the DDP code path a GPU node runs with NCCL."""

import json

import pytest
from safetensors.torch import load_file

from tests.conftest import Workdir, small

pytestmark = pytest.mark.slow

LOSS_TOLERANCE = 1e-4
"""Per-step loss of 2 processes x 1 row against 1 process x 2 rows: the same rows, the same mean over their tokens;
only the order of float additions differs (each process's own sum, then the gradients' all-reduce)."""
WEIGHT_TOLERANCE = 1e-5
"""The adapters' largest element difference after the steps (their elements are ~1e-2)."""

EVEN_BATCHES = {"data.max_rows": 40, "train.max_steps": 6, "train.save_steps": 3, "train.learning_rate": 5e-3,
                "train.gradient_accumulation_steps": 1}


def trained_with(workdir: Workdir, **overrides) -> tuple[list[dict], dict, str]:
    workdir.params(small(EVEN_BATCHES | overrides))
    workdir.run("prepare")
    result = workdir.run("train")
    steps = (workdir / "reports/train/steps.csv").read_text().splitlines()
    header, *rows = [line.split(",") for line in steps]
    return [dict(zip(header, map(float, row))) for row in rows], load_file(
        workdir / "models/adapter/adapter_model.safetensors"), result.stdout


@pytest.mark.parametrize("backend", ["unsloth", "hf"])
def test_two_processes_of_one_row_train_as_one_process_of_two(tmp_path, backend):
    one, loss_one, _ = trained_with(Workdir(tmp_path / "one"), **{"train.per_device_train_batch_size": 2,
                                                                  "train.backend": backend})
    two_dir = Workdir(tmp_path / "two")
    two, loss_two, stdout = trained_with(two_dir, **{"train.per_device_train_batch_size": 1,
                                                     "train.num_processes": 2, "train.backend": backend})
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(one, two):
        assert abs(a["loss"] - b["loss"]) <= LOSS_TOLERANCE, (a, b)
        assert a["tokens_seen"] == b["tokens_seen"]  # both processes' tokens, counted once
    assert one[-1]["loss"] < one[0]["loss"] - 0.1  # it learned: the comparison is not of two untrained runs
    assert loss_one.keys() == loss_two.keys()
    assert max((loss_one[k] - loss_two[k]).abs().max().item() for k in loss_one) <= WEIGHT_TOLERANCE
    assert max(loss_one[k].abs().max().item() for k in loss_one if "lora_B" in k) > 100 * WEIGHT_TOLERANCE
    run = json.loads((two_dir / "reports/train/run.json").read_text())
    assert (run["processes"], run["rows_per_step"]) == (2, 2)
    assert stdout.count("train: loss") == 1  # the summary of one writer
    assert not list((two_dir / "models/checkpoints").glob("*/checkpoint-*"))


def test_evaluate_in_two_processes_writes_what_one_writes(tmp_path):
    """An odd number of prompts and of batches, greedy: the files are byte-identical; sampled too (each prompt's
    sample is drawn from its own key)."""
    workdir = Workdir(tmp_path)
    odd = {"data.eval_rows": 5, "eval.num_samples": 5, "eval.batch_size": 2, "eval.mcq_protocol.max_questions": 7}
    for protocol in ({}, {"eval.mcq_protocol.decoding": "sampled", "eval.mcq_protocol.samples": 2}):
        written = {}
        for processes in (1, 2):
            workdir.params(small(odd | protocol | {"eval.num_processes": processes}))
            workdir.run("prepare")
            workdir.run("evaluate_base", own_process=True)
            written[processes] = {name: (workdir / f"reports/eval/base/{name}").read_bytes()
                                  for name in ("metrics.json", "generations.jsonl")}
            perf = json.loads((workdir / "reports/eval/base/perf.json").read_text())["base"]
            assert perf["processes"] == processes
        assert written[1] == written[2]
    generations = [json.loads(line) for line in written[2]["generations.jsonl"].splitlines()]
    assert sum(g["prompt_set"] == "mcq" for g in generations) == 7 * 2


@pytest.mark.parametrize("stage, overrides, says", [
    ("train", {"train.num_processes": 4096}, "train.num_processes: 4096 processes, but this machine has"),
    ("evaluate_base", {"eval.num_processes": 4096}, "eval.num_processes: 4096 processes, but this machine has"),
    ("train", {"train.num_processes": 2, "train.base_precision": "fp8"}, "train.base_precision fp8 trains in one "),
    ("prepare", {"train.num_processes": 0}, "train.num_processes: must be > 0"),
])
def test_what_cannot_run_in_processes_is_refused_in_one_sentence(workdir, stage, overrides, says):
    workdir.params(small(overrides))
    if stage != "prepare":
        workdir.run("prepare")
    line = workdir.error_line(stage)
    assert says in line, line
    assert not (workdir / "models/adapter").exists() and not (workdir / "reports/eval").exists()


def test_a_checkpoint_continues_only_at_the_process_count_that_wrote_it(workdir):
    from medical_r1 import config, files
    from medical_r1.training import checkpoints

    workdir.params(small({"train.max_steps": 4, "train.num_processes": 1}))
    workdir.run("prepare")
    params = config.load(workdir / "params.yaml")
    run = checkpoints.fingerprint(params.seed, params.lora, params.train, workdir / "data/prepared/train.jsonl",
                                  workdir / "models/base")
    checkpoint = checkpoints.run_dir(workdir / "models/checkpoints", run) / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    files.write_json(checkpoint / checkpoints.MARKER, {"fingerprint": run, "step": 2, "processes": 2, "rows": [],
                                                       "evals": [], "tokens": 0, "seconds": 1.0})
    line = workdir.error_line("train")
    assert line.endswith("was written by 2 processes: continue it with train.num_processes=2, or set "
                         "train.resume=never to start over at 1"), line
    assert checkpoint.is_dir()  # refused, not deleted


def test_a_stage_claims_a_free_gpu_of_the_pool_and_frees_it_on_exit(workdir, tmp_path):
    """What `dvc queue start -j N` relies on: each experiment's stage takes GPU ids no other stage holds."""
    from medical_r1 import gpus

    locks = tmp_path / "locks"
    env = {gpus.POOL_ENV: "7,8", gpus.LOCKS_ENV: str(locks), gpus.WAIT_ENV: "30"}
    workdir.params(small())
    held = gpus.claim(1, ["7"], locks, wait_seconds=0)  # another experiment's stage holds GPU 7
    try:
        result = workdir.run("prepare", env=env)
    finally:
        held.release()
    assert "gpus: claimed 8 (pool 7,8)" in result.stderr
    gpus.claim(2, ["7", "8"], locks, wait_seconds=0).release()  # the stage has exited: both are free
