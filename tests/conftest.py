"""Shared helpers: a scratch working directory with its own params.yaml, and running a stage in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.config import set_dotted

REPO = Path(__file__).resolve().parents[1]
SMALL = {"data.max_rows": 40, "data.eval_rows": 4, "train.max_steps": 2, "train.save_steps": 2,
         "train.per_device_train_batch_size": 2, "train.gradient_accumulation_steps": 1,
         "model.tiny.vocab_size": 512}


COMMANDS = {"prepare": ["stages.prepare"], "train": ["stages.train"], "evaluate_base": ["stages.evaluate", "base"],
            "evaluate": ["stages.evaluate", "tuned"], "report": ["stages.report"]}
"""dvc.yaml's stages, in order, and their commands (tests/test_deps.py checks them against dvc.yaml)."""


class Workdir:
    """A directory laid out like the repo root (params.yaml, data/sample) where stages run."""

    def __init__(self, path: Path):
        self.path = path
        (path / "data").mkdir(parents=True)
        (path / "data" / "sample").symlink_to(REPO / "data" / "sample")

    def params(self, overrides: dict | None = None) -> None:
        """Write the repo's params.yaml with dotted-key overrides applied."""
        tree = yaml.safe_load((REPO / "params.yaml").read_text())
        for dotted, value in (overrides or {}).items():
            set_dotted(tree, dotted, value)
        (self.path / "params.yaml").write_text(yaml.safe_dump(tree))

    def run(self, stage: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run the dvc.yaml stage `stage` (its command) here, as `dvc repro` would."""
        python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        environment = {**os.environ, "PYTHONPATH": python_path, "HF_HUB_OFFLINE": "1", **(env or {})}
        result = subprocess.run([sys.executable, "-m", *COMMANDS[stage]], cwd=self.path, env=environment,
                                capture_output=True, text=True, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"stage {stage} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def reproduce(self, *stages: str, env: dict | None = None) -> None:
        """Run the given stages in order (all of the pipeline when none are given)."""
        for stage in stages or COMMANDS:
            self.run(stage, env=env)

    def error_line(self, stage: str, env: dict | None = None) -> str:
        """Run a stage that must fail as a user error: exit code 2, no traceback; return its last stderr line."""
        result = self.run(stage, check=False, env=env)
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


@pytest.fixture
def workdir(tmp_path) -> Workdir:
    return Workdir(tmp_path)


def small(overrides: dict | None = None) -> dict:
    """Params for a fast run (few rows, a small vocabulary, two optimizer steps) plus `overrides`."""
    return {**SMALL, **(overrides or {})}
