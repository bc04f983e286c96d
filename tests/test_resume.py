"""Kill training with SIGKILL, run it again: it resumes and ends exactly where an uninterrupted run ends."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import Workdir, small, stage_env

pytestmark = pytest.mark.slow

MARKER = "models/checkpoints/*/checkpoint-4/resume.json"
RUN = {"train.max_steps": 6, "train.save_steps": 2, "data.max_rows": 40, "train.learning_rate": 5e-3}


def start_train(workdir):
    return subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=workdir.path, env=stage_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def deterministic(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("steps", "train_loss_first", "train_loss_final", "eval_loss_final",
                                    "tokens_seen")}


@pytest.mark.parametrize("processes", [1, 2])
def test_killed_run_resumes_to_identical_weights_and_metrics(tmp_path, processes):
    """The stage's process killed after its step-4 checkpoint (with 2 processes its torchrun and workers die with
    it, or they would finish and delete the checkpoints): the rerun resumes there and ends where an uninterrupted
    run at the same process count ends."""
    whole, killed = Workdir(tmp_path / "a"), Workdir(tmp_path / "b")
    for workdir in (whole, killed):
        workdir.params(small(RUN | {"train.num_processes": processes,
                                    "train.per_device_train_batch_size": 2 // processes}))
        workdir.run("prepare")
    whole.run("train")

    process = start_train(killed)
    deadline = time.time() + 300
    while not list(killed.path.glob(MARKER)) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert list(killed.path.glob(MARKER)), process.stderr.read()[-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "models/adapter").exists()
    run_dir = next(killed.path.glob(MARKER)).parent.parent  # models/checkpoints/<run fingerprint>
    # A checkpoint directory killed mid-save has no marker and must be ignored.
    shutil.copytree(run_dir / "checkpoint-4", run_dir / "checkpoint-5")
    (run_dir / "checkpoint-5/resume.json").unlink()

    resumed = killed.run("train")
    assert f"resuming from {run_dir.relative_to(killed.path)}/checkpoint-4" in resumed.stdout + resumed.stderr
    assert not run_dir.exists()  # the finished run deleted its checkpoints
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (killed / f"models/adapter/{name}").read_bytes() == (whole / f"models/adapter/{name}").read_bytes()
    read = lambda w: json.loads((w / "reports/train/metrics.json").read_text())  # noqa: E731
    assert deterministic(read(killed)) == deterministic(read(whole))
    assert (killed / "reports/train/eval_loss.csv").read_text() == (whole / "reports/train/eval_loss.csv").read_text()


def test_a_rerun_starts_over_and_clears_other_runs_checkpoints(workdir):
    workdir.params(small(RUN))
    workdir.run("prepare")
    workdir.run("train")
    assert list((workdir / "models/checkpoints").iterdir()) == []  # a finished run keeps none
    first = (workdir / "models/adapter/adapter_model.safetensors").read_bytes()
    other_run = workdir / "models/checkpoints/0123456789abcdef/checkpoint-2"  # left by a run of other params
    other_run.mkdir(parents=True)
    (other_run / "resume.json").write_text(json.dumps({"fingerprint": "0123456789abcdef" * 4, "step": 2}))
    again = workdir.run("train")  # as `dvc repro --force train` does
    assert "resuming" not in again.stdout + again.stderr
    assert list((workdir / "models/checkpoints").iterdir()) == []
    assert json.loads((workdir / "reports/train/metrics.json").read_text())["steps"] == RUN["train.max_steps"]
    assert (workdir / "models/adapter/adapter_model.safetensors").read_bytes() == first
