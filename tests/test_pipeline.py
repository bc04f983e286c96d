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


def test_tuned_model_beats_base_on_loss_and_format(repo):
    """The tiny model learns the template: lower held-out loss and more well-formed answers."""
    scores = json.loads((repo / "reports/eval/metrics.json").read_text())
    assert scores["tuned.eval_loss"] < 0.5 * scores["base.eval_loss"]
    assert scores["tuned.response_loss"] < scores["base.response_loss"]
    assert scores["tuned.format_compliance"] >= scores["base.format_compliance"] + 0.25
    assert scores["tuned.stop_rate"] > scores["base.stop_rate"]
    samples = (repo / "reports/eval/samples.jsonl").read_text().splitlines()
    assert len(samples) == 24 and set(json.loads(samples[0])) == {"question", "reference", "base", "tuned"}
    assert (repo / "reports/report.md").is_file()
    assert all((repo / f"reports/figures/{n}.png").is_file() for n in ("loss", "throughput_memory", "before_after"))


def test_second_repro_runs_nothing(repo):
    out = dvc("repro", cwd=repo).stdout
    assert "Data and pipelines are up to date" in out
    assert "Running stage" not in out


def test_experiment_is_diffable_and_pr_report_shows_it(repo):
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "reproduced"], repo)
    dvc("exp", "run", "-S", "lora.r=8", "-S", "train.max_steps=3", "-n", "r8", cwd=repo)

    table = dvc("exp", "show", "--md", cwd=repo).stdout
    assert "r8" in table and "tuned.eval_loss" in table and "lora.r" in table
    diff = json.loads(dvc("metrics", "diff", "HEAD", "r8", "--json", cwd=repo).stdout)
    assert "tuned.eval_loss" in diff["reports/eval/metrics.json"]
    assert diff["reports/train/metrics.json"]["steps"] == {"old": 200, "new": 3, "diff": -197}

    plots = json.loads(dvc("plots", "diff", "HEAD", "r8", "--json", cwd=repo).stdout)
    curve = plots["data"]["Train loss per step"][0]
    assert set(curve["revisions"]) == {"HEAD", "r8"}
    steps_by_rev = {}
    for point in curve["content"]["data"]["values"]:
        steps_by_rev[point["rev"]] = steps_by_rev.get(point["rev"], 0) + 1
    assert steps_by_rev == {"HEAD": 200, "r8": 3}

    dvc("exp", "apply", "r8", cwd=repo)
    sh(["bash", "scripts/pr_report.sh", "HEAD"], repo)
    pr = (repo / "reports/pr.md").read_text()
    assert "## Metrics" in pr and "| reports/eval/metrics.json" in pr and "tuned.eval_loss" in pr
    assert "## Params" in pr and "| params.yaml | lora.r" in pr
    assert (repo / "reports/pr_plots/static/workspace_reports_figures_loss.png").is_file()


def test_ner_task_runs_as_an_experiment(repo):
    dvc("exp", "run", "-S", "data.task=cmeee_ner", "-S", "data.source=data/sample/cmeee_ner.json",
        "-S", "train.max_steps=4", "-S", "eval.num_samples=4", "-S", "eval.max_new_tokens=32", "-n", "ner", cwd=repo)
    stats = json.loads((repo / "reports/prepare/stats.json").read_text())
    assert stats["task"] == "cmeee_ner" and stats["rows_kept"] == 240
    scores = json.loads((repo / "reports/eval/metrics.json").read_text())
    assert {"base.ner_f1", "tuned.ner_f1", "tuned.ner_precision", "tuned.ner_recall", "tuned.ner_f1.dis"} <= set(scores)
    assert "| ner f1 |" in (repo / "reports/report.md").read_text()
    assert "ner" in dvc("exp", "show", "--md", cwd=repo).stdout
