"""Shared helpers: a scratch working directory with its own params.yaml, and running a stage in it.

`Workdir.run` runs a stage's command: train and rl as `dvc repro` does (`python -m stages.train`, a fresh process,
since Unsloth patches transformers for the whole process), and so any stage given its own environment; the others in
this process (their main() through files.run_stage, in the directory, with their arguments), which saves
seconds of imports per run. No stage may touch the network: tests/network_guard/sitecustomize.py refuses every
host but this machine, in this process and in every process the tests start, and `Workdir.run` fails a test whose
stage tried (unless the test is about that).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import filelock
import pytest
import yaml

from medical_r1 import files
from medical_r1.config import set_dotted
from tests.network_guard import sitecustomize as network_guard

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # two test workers share two cores: idle threads sleep, not spin
REPO = Path(__file__).resolve().parents[1]
NETWORK_GUARD = REPO / "tests" / "network_guard"
NETWORK_REFUSED = network_guard.MARK
IN_A_PROCESS_OF_ITS_OWN = {"train", "rl"}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains, or starts DVC (left out by `pytest -m 'not slow'`)")


def run_order(item) -> int:
    """The longest chain (the reproduced repository, then the pipeline tests in file order) starts first, on one
    worker, with quick tests after it in its first batch; the tests that clone that repository come last, when it
    is built; the other slow tests in between."""
    if item.path.name == "test_pipeline.py":
        return 0
    if item.path.name == "test_sharing.py":
        return 3
    return 2 if "trained" in item.fixturenames or item.get_closest_marker("slow") else 1


def pytest_collection_modifyitems(items):
    items.sort(key=run_order)  # stable: each file's tests keep their order
    for item in items:
        if "trained" in item.fixturenames:  # the session's trained model: a training run
            item.add_marker(pytest.mark.slow)


def stage_env(env: dict | None = None) -> dict:
    """The environment of a stage process: this checkout importable, the network guard loaded."""
    python_path = os.pathsep.join(filter(None, [str(NETWORK_GUARD), str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": python_path, **(env or {})}
SMALL = {"data.max_rows": 40, "data.eval_rows": 4, "train.max_steps": 2, "train.save_steps": 2,
         "train.per_device_train_batch_size": 2, "train.gradient_accumulation_steps": 1,
         "model.tiny.vocab_size": 512, "eval.mcq_protocol.max_questions": 4, "eval.mcq_protocol.max_new_tokens": 16,
         "rl.max_steps": 2, "rl.max_new_tokens": 16}


COMMANDS = {"check": ["stages.check"], "prepare": ["stages.prepare"], "train": ["stages.train"], "rl": ["stages.rl"],
            "evaluate_base": ["stages.evaluate", "base"],
            "evaluate": ["stages.evaluate", "tuned"], "report": ["stages.report"]}
"""dvc.yaml's stages, in order, and their commands (tests/test_deps.py checks them against dvc.yaml)."""


class Workdir:
    """A directory laid out like the repo root (params.yaml, data/sample) where stages run."""

    def __init__(self, path: Path):
        self.path = path
        (path / "data").mkdir(parents=True, exist_ok=True)
        if not (path / "data" / "sample").exists():
            (path / "data" / "sample").symlink_to(REPO / "data" / "sample")

    def params(self, overrides: dict | None = None) -> None:
        """Write the repo's params.yaml with dotted-key overrides applied."""
        tree = yaml.safe_load((REPO / "params.yaml").read_text())
        for dotted, value in (overrides or {}).items():
            set_dotted(tree, dotted, value)
        (self.path / "params.yaml").write_text(yaml.safe_dump(tree))

    def run(self, stage: str, check: bool = True, env: dict | None = None, network: bool = False,
            own_process: bool = False) -> subprocess.CompletedProcess:
        """Run the dvc.yaml stage `stage` (its command) here, as `dvc repro` would; with `network` False (the
        default) the stage must not even try to reach another host."""
        if own_process or stage in IN_A_PROCESS_OF_ITS_OWN or env:  # libraries read the environment on import
            result = subprocess.run([sys.executable, "-m", *COMMANDS[stage]], cwd=self.path, env=stage_env(env),
                                    capture_output=True, text=True, timeout=600)
        else:
            result = self.run_here(stage)
        if not network:
            assert NETWORK_REFUSED not in result.stderr, \
                f"stage {stage} reached for the network:\n{result.stderr[-4000:]}"
        if check and result.returncode != 0:
            raise AssertionError(f"stage {stage} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def run_here(self, stage: str) -> subprocess.CompletedProcess:
        """The stage's command in this process: its main() through files.run_stage, as `python -m` would run it."""
        module, *args = COMMANDS[stage]
        main = importlib.import_module(module).main
        out, err = io.StringIO(), io.StringIO()
        cwd, argv = os.getcwd(), sys.argv
        os.chdir(self.path)
        sys.argv = [module, *args]
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                files.run_stage(main)
            code = 0
        except SystemExit as exit:
            code = exit.code
        finally:
            os.chdir(cwd)
            sys.argv = argv
        return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())

    def reproduce(self, *stages: str, env: dict | None = None) -> None:
        """Run the given stages in order (all of the pipeline when none are given)."""
        for stage in stages or COMMANDS:
            self.run(stage, env=env)

    def error_line(self, stage: str, env: dict | None = None, network: bool = False) -> str:
        """Run a stage that must fail as a user error: exit code 2, no traceback; return its last stderr line."""
        result = self.run(stage, check=False, env=env, network=network)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        return result.stderr.strip().splitlines()[-1]

    def __truediv__(self, other: str) -> Path:
        return self.path / other


def evaluation(workdir: Workdir) -> dict:
    """Both models' metrics with the keys `dvc metrics show` gives them: base.<key>, tuned.<key>."""
    scores = {}
    for model in ("base", "tuned"):
        for key, value in json.loads((workdir / f"reports/eval/{model}/metrics.json").read_text())[model].items():
            scores[f"{model}.{key}"] = value
    return scores


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Workdir:
    """The tiny base model and an adapter trained for 30 steps on 60 rows (it learns to close </think> and stop),
    then 2 GRPO steps (models/tuned); tests that change it work on a copy (`copy_of`)."""
    workdir = Workdir(tmp_path_factory.mktemp("trained"))
    workdir.params(small({"train.max_steps": 30, "train.save_steps": 30, "data.max_rows": 60, "data.eval_rows": 7}))
    workdir.reproduce("prepare", "train", "rl")
    return workdir


def user_env(env: dict | None = None) -> dict:
    """The environment of a user's shell in a checkout: this venv's tools first on PATH (so DVC's `python -m ...`
    is the venv's), offline, a git identity, and `env` on top."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
            "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.com", "GIT_COMMITTER_NAME": "ci",
            "GIT_COMMITTER_EMAIL": "ci@example.com", **(env or {})}


def sh(args: list, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """A command as a user runs it in a checkout (`user_env`)."""
    result = subprocess.run([str(arg) for arg in args], cwd=cwd, env=user_env(env), capture_output=True, text=True,
                            timeout=1200)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def dvc(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "dvc", *args], cwd, check)


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> Path:
    """A fresh git repository holding the tracked (and new, unignored) files of this checkout, reproduced once
    from scratch (its results and dvc.lock removed first) and committed, its outputs in its DVC cache. Built once
    per test run: the first test worker (pytest.ini) that needs it builds it, the other waits on the lock."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' temp folders' parent
    root, built = shared / "reproduced", shared / "reproduced.done"
    with filelock.FileLock(str(shared / "reproduced.lock")):
        if not built.is_file():
            shutil.rmtree(root, ignore_errors=True)  # a build that failed before starts over
            reproduce_checkout(root)
            built.touch()
    return root


def reproduce_checkout(root: Path) -> None:
    listed = sh(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout.split("\n")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    for path in ("dvc.lock", "reports"):
        shutil.rmtree(root / path, ignore_errors=True) if (root / path).is_dir() else (root / path).unlink(True)
    sh(["git", "init", "-q", "-b", "main"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "baseline"], root)
    dvc("repro", cwd=root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "reproduced"], root)


def copy_of(workdir: Workdir, path: Path) -> Workdir:
    """A copy of `workdir` at `path` (its data/sample link kept)."""
    shutil.copytree(workdir.path, path, symlinks=True)
    return Workdir(path)


@pytest.fixture
def workdir(tmp_path) -> Workdir:
    return Workdir(tmp_path)


def small(overrides: dict | None = None) -> dict:
    """Params for a fast run (few rows, a small vocabulary, two optimizer steps) plus `overrides`."""
    return {**SMALL, **(overrides or {})}
