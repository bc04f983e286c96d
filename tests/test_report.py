import shutil

import matplotlib.image

from tests.conftest import REPO


def test_report_runs_from_saved_files_alone(workdir):
    """No model, no data: only the metrics files the other stages wrote (the committed baseline)."""
    workdir.params()
    for part in ("prepare", "train", "eval"):
        shutil.copytree(REPO / "reports" / part, workdir / "reports" / part)
    workdir.run("report")
    for name in ("loss", "throughput_memory", "before_after"):
        image = matplotlib.image.imread(workdir / f"reports/figures/{name}.png")
        assert image.shape[0] > 300 and image.shape[1] > 600
    report = (workdir / "reports/report.md").read_text()
    assert "| metric | base | tuned | change |" in report and "| format compliance |" in report
    assert "| param | value |" in report and "| backend | unsloth |" in report
    assert report.count("\n| base | tuned |\n") == 3
    assert "![loss](figures/loss.png)" in report
    assert not (workdir / "models").exists()
