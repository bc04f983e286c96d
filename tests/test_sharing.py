"""Sharing an experiment through a DVC remote and a git remote, and reviewing a pull request without re-running it
(README "Sharing experiments" and "Reviewing pull requests").

A team of three checkouts of one bare git repository with one local-directory DVC remote: the GPU box (which
reproduced the embedded default and runs an experiment), a teammate who pulls that experiment, and the
pull-request runner (a fresh clone that reviews it). The tests build on each other and run in file order."""

import contextlib
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from scripts.pr_verdict import Pipeline, locked_outs
from tests.conftest import dvc, sh, stage_env

pytestmark = pytest.mark.slow

EXPERIMENT = "r8"
RESULTS = ["params.yaml", "dvc.lock", "reports/prepare/stats.json", "reports/train/metrics.json",
           "reports/train/perf.json", "reports/train/steps.csv", "reports/train/eval_loss.csv",
           "reports/train/step_times.csv", "reports/eval/base/metrics.json", "reports/eval/base/perf.json",
           "reports/eval/tuned/metrics.json", "reports/eval/tuned/perf.json", "reports/eval/before_after.csv"]
"""What a pulled experiment must hold byte for byte as it was computed, timings included."""
QUESTION = "A 45-year-old man has crushing chest pain for an hour. What is the first step?"


def copy_if_present(source: str, target: str) -> None:
    """shutil.copy2, skipping a file gone since the folder was listed: the pipeline tests may be adding to the
    reproduced repository's cache (a DVC temp file renamed into place) while this copies it."""
    with contextlib.suppress(FileNotFoundError):
        shutil.copy2(source, target)


@pytest.fixture(scope="module")
def team(reproduced, tmp_path_factory):
    """The git remote, the DVC remote and the GPU box: a clone of the reproduced repository with its DVC cache,
    which configured the remote, pushed the baseline (git and DVC), ran an experiment and pushed it."""
    root = tmp_path_factory.mktemp("team")
    origin, store, gpu = root / "origin.git", root / "dvc-store", root / "gpu-box"
    sh(["git", "init", "-q", "--bare", "-b", "main", origin], root)
    sh(["git", "clone", "-q", reproduced, gpu], root)
    shutil.copytree(reproduced / ".dvc" / "cache", gpu / ".dvc" / "cache", copy_function=copy_if_present)
    dvc("checkout", cwd=gpu)
    sh(["git", "remote", "set-url", "origin", origin], gpu)
    dvc("remote", "add", "-d", "store", store, cwd=gpu)
    sh(["git", "commit", "-qam", "DVC remote: a shared directory"], gpu)
    sh(["git", "push", "-q", "origin", "main"], gpu)
    dvc("push", cwd=gpu)
    dvc("exp", "run", "-n", EXPERIMENT, "-S", "lora.r=8", "-S", "train.max_steps=3", cwd=gpu)
    dvc("exp", "push", "origin", EXPERIMENT, cwd=gpu)
    return {"origin": origin, "store": store, "gpu": gpu, "root": root}


def ask(checkout: Path) -> str:
    return sh([sys.executable, "-m", "stages.ask", "--max-new-tokens", "48", QUESTION], checkout).stdout


def test_a_teammate_pulls_the_experiment_and_gets_its_results_and_model(team):
    """`dvc exp pull` in a fresh clone: nothing to reproduce, the same files, the same tuned model answering."""
    mate = team["root"] / "teammate"
    sh(["git", "clone", "-q", team["origin"], mate], team["root"])
    dvc("exp", "pull", "origin", EXPERIMENT, cwd=mate)
    dvc("exp", "apply", EXPERIMENT, cwd=mate)

    assert json.loads(dvc("status", "--json", "dvc.yaml", cwd=mate).stdout) == {}
    for name in RESULTS:
        assert (mate / name).read_bytes() == (team["gpu"] / name).read_bytes(), name
    assert yaml.safe_load((mate / "params.yaml").read_text())["lora"]["r"] == 8
    assert "Data and pipelines are up to date" in dvc("repro", cwd=mate).stdout
    assert ask(mate) == ask(team["gpu"])


def test_the_remote_holds_the_outputs_of_both_runs_and_nothing_else(team):
    """Checkpoints and anything else no dvc.lock names stay off the remote (and out of git)."""
    stored = {str(path.relative_to(team["store"] / "files" / "md5")).replace("/", "")
              for path in (team["store"] / "files" / "md5").rglob("*") if path.is_file()}
    cached = Pipeline.read(team["gpu"] / "dvc.yaml").cached
    needed = set()
    for rev in ("main", experiment_ref(team["gpu"])):
        lock = yaml.safe_load(sh(["git", "show", f"{rev}:dvc.lock"], team["gpu"]).stdout)
        for md5 in (md5 for path, md5 in locked_outs(lock).items() if path in cached):
            needed.add(md5)
            if md5.endswith(".dir"):  # a directory: its listing and every file in it
                needed |= {entry["md5"] for entry in json.loads(cache_file(team["gpu"], md5).read_text())}
    assert stored == needed
    tracked = sh(["git", "ls-files", "models"], team["gpu"]).stdout.split()
    assert all(name.endswith(".gitignore") or name.startswith("models/configs/") for name in tracked), tracked


def experiment_ref(checkout: Path) -> str:
    """The git ref of the experiment (DVC keeps experiments under refs/exps)."""
    refs = sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], checkout).stdout.split()
    return next(ref for ref in refs if ref.endswith(f"/{EXPERIMENT}"))


def cache_file(checkout: Path, md5: str) -> Path:
    return checkout / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


@pytest.fixture(scope="module")
def runner(team):
    """The pull-request runner: a fresh clone of the branch the GPU box made of the experiment and pushed."""
    dvc("exp", "branch", EXPERIMENT, "lora-r8", cwd=team["gpu"])
    sh(["git", "push", "-q", "origin", "lora-r8"], team["gpu"])
    path = team["root"] / "runner"
    sh(["git", "clone", "-q", "--branch", "lora-r8", team["origin"], path], team["root"])
    return path


def review(checkout: Path, *args: str) -> tuple[int, str]:
    """scripts/pr_review.py as the workflow runs it (every process it starts under the network guard)."""
    result = sh([sys.executable, "scripts/pr_review.py", "--base", "origin/main", *args], checkout, check=False,
                env={"PYTHONPATH": stage_env()["PYTHONPATH"]})
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.returncode, (checkout / "reports/pr.md").read_text()


def test_an_up_to_date_experiment_is_reviewed_without_running_a_stage(runner):
    code, comment = review(runner)
    assert code == 0 and "**Up to date.**" in comment and "Stale" not in comment
    assert re.search(r"\| params.yaml \| lora.r +\| 16 +\| 8 ", comment) and "| tuned.eval_loss " in comment
    assert "not pulled" in comment and "`models/adapter`" in comment
    assert not (runner / "models/adapter").exists() and not (runner / "data/prepared").exists()

    code, comment = review(runner, "--pull")
    assert code == 0 and "**Up to date.**" in comment
    assert "Outputs: pulled from the DVC remote `store`." in comment and "Not in this checkout" not in comment
    assert json.loads(dvc("status", "--json", "dvc.yaml", cwd=runner).stdout) == {}


def test_a_stale_gpu_recipe_is_named_and_not_run(runner):
    """Params of the 8B recipe committed without its results: every stage is named, none runs."""
    dvc("pull", cwd=runner)  # the results as the workflow's runner has them (whichever test ran before)
    sh([sys.executable, "scripts/compose_params.py", "recipe=fast_gpu"], runner)
    sh(["git", "commit", "-qam", "the fast GPU recipe, results not committed"], runner)
    adapter = (runner / "models/adapter/adapter_model.safetensors").read_bytes()
    try:
        code, comment = review(runner, "--pull")
        assert code == 1 and comment.index("**Stale results.**") < comment.index("## Metrics")
        for stage in ("prepare", "train", "rl", "evaluate_base", "evaluate", "report"):
            assert f"> - `{stage}`: " in comment
        assert 'model.name: "tiny" -> "unsloth/DeepSeek-R1-Distill-Llama-8B"' in comment
        assert "**Not re-run**: model.name is 'unsloth/DeepSeek-R1-Distill-Llama-8B'" in comment
        assert (runner / "models/adapter/adapter_model.safetensors").read_bytes() == adapter
        assert not sh(["git", "status", "--porcelain", "--untracked-files=no"], runner).stdout.strip()
    finally:
        sh(["git", "reset", "-q", "--hard", "HEAD~1"], runner)


def test_a_stale_embedded_change_is_rerun_and_only_what_changed_runs(runner):
    with (runner / "stages/report.py").open("a") as report:
        report.write("# a change to the report's code\n")
    sh(["git", "commit", "-qam", "report: a code change, results not reproduced"], runner)
    try:
        code, comment = review(runner, "--pull")
        assert code == 0 and "**Stale results.**" in comment
        assert "> - `report`: stages/report.py modified\n" in comment and "downstream" not in comment
        assert "Re-run here on the CPU (the params are the embedded model's): `report`." in comment
        assert json.loads(dvc("status", "--json", "dvc.yaml", cwd=runner).stdout) == {}
    finally:
        sh(["git", "reset", "-q", "--hard", "HEAD~1"], runner)
        dvc("checkout", "--force", cwd=runner)
