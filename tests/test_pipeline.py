"""The whole DVC pipeline on the embedded default, in a temporary copy of the repository."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def sh(args, cwd, check=True):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.com", "GIT_COMMITTER_NAME": "ci",
           "GIT_COMMITTER_EMAIL": "ci@example.com"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def dvc(*args, cwd, check=True):
    return sh([sys.executable, "-m", "dvc", *args], cwd, check)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A fresh git repository holding the tracked (and new, unignored) files of this checkout, reproduced once."""
    root = tmp_path_factory.mktemp("repo")
    listed = sh(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout.split("\n")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    for path in ("dvc.lock", "reports"):  # reproduce from scratch, not from the committed baseline
        shutil.rmtree(root / path, ignore_errors=True) if (root / path).is_dir() else (root / path).unlink(True)
    sh(["git", "init", "-q"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "baseline"], root)
    dvc("repro", cwd=root)
    return root


def test_repro_produces_adapter_and_falling_loss(repo):
    assert (repo / "models/adapter/adapter_config.json").is_file()
    assert (repo / "models/adapter/adapter_model.safetensors").is_file()
    metrics = json.loads((repo / "reports/train/metrics.json").read_text())
    assert metrics["steps"] == 200
    assert metrics["train_loss_final"] < 0.5 * metrics["train_loss_first"]
    stats = json.loads((repo / "reports/prepare/stats.json").read_text())
    assert stats["rows_kept"] == 320 and stats["eval_rows"] == 24


def test_second_repro_runs_nothing(repo):
    out = dvc("repro", cwd=repo).stdout
    assert "Data and pipelines are up to date" in out
    assert "Running stage" not in out


def test_exp_run_with_a_param_override(repo):
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "reproduced"], repo)
    dvc("exp", "run", "-S", "train.max_steps=3", "-n", "three-steps", cwd=repo)
    shown = json.loads(dvc("exp", "show", "--json", cwd=repo).stdout)
    steps = [exp["data"]["metrics"]["reports/train/metrics.json"]["data"]["steps"]
             for rev in shown for exp in [rev] + [e for x in rev.get("experiments") or [] for e in x["revs"]]
             if exp.get("data", {}).get("metrics")]
    assert 3 in steps and 200 in steps
