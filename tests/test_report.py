import shutil

import matplotlib.image

import pytest

from tests.conftest import copy_of

pytestmark = pytest.mark.slow


def test_report_runs_from_saved_files_alone(trained, tmp_path):
    """No model, no data: only the files the other stages wrote."""
    workdir = copy_of(trained, tmp_path / "run")
    workdir.reproduce("evaluate_base", "evaluate")
    for folder in ("models", "data/prepared"):
        shutil.rmtree(workdir / folder)
    workdir.run("report")
    for name in ("loss", "throughput_memory", "before_after"):
        image = matplotlib.image.imread(workdir / f"reports/figures/{name}.png")
        assert image.shape[0] > 300 and image.shape[1] > 600
    report = (workdir / "reports/report.md").read_text()
    assert "| metric | base | tuned | change |" in report and "| format compliance |" in report
    assert "| param | value |" in report and "| backend | unsloth |" in report
    assert report.count("\n| base | tuned |\n") == 3
    assert "![loss](figures/loss.png)" in report
