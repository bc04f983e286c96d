"""Review the pipeline results a change commits, without re-running them: write reports/pr.md.

    python scripts/pr_review.py --base origin/main          # verdict from `dvc status`, diff against main
    python scripts/pr_review.py --base main --pull          # pull the outputs from the DVC remote first

The verdict comes from `dvc status` of dvc.yaml's stages against the committed dvc.lock:
- up to date: the committed results belong to this change's code, params and data. The comment diffs the
  committed metrics, params and figures against the base revision; no stage runs.
- stale: code, params or data changed after the results were computed, or a result differs from what dvc.lock
  records. The comment says so at the top and names the stale stages and those downstream of them. It re-runs
  them (`dvc repro`) only when the params are CPU-cheap (the tiny embedded model on a bundled sample); a GPU
  recipe is never started here.
Outputs that are only missing from this checkout (DVC-cached, never pulled) are not staleness; with --pull, the
comment says whether the DVC remote holds them all.

Exit status: 0 when the comment's results belong to the change, 1 when they are stale and were not re-run, 2 when
the working tree has uncommitted changes to tracked files (the review judges commits, and would stage dvc.lock).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medical_r1 import config  # noqa: E402
from scripts.pr_verdict import Pipeline, Verdict, judge, params_changes  # noqa: E402

PIPELINE = "dvc.yaml"
REPORT = Path("reports/pr.md")
PLOTS = Path("reports/pr_plots")
FIGURES = ("loss", "throughput_memory", "before_after")


def cpu_cheap(params_file: Path) -> str | None:
    """None when the params are CPU-cheap (the tiny embedded model on a bundled sample), else why not."""
    try:
        params = config.load(params_file)
    except config.ConfigError as err:
        return f"params.yaml is not valid ({err})"
    if params.model.name != "tiny":
        return f"model.name is {params.model.name!r}, a model this CPU runner does not train"
    if params.data.source != "sample":
        return f"data.source is {params.data.source!r}, not a bundled sample"
    return None


def dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """DVC of this Python, which also runs the stages a re-run starts (`python -m stages...`)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True,
                            env={**os.environ, "PATH": path})
    if check and result.returncode != 0:
        sys.exit(f"dvc {' '.join(args)} failed:\n{result.stderr.strip() or result.stdout.strip()}")
    return result


def verdict() -> Verdict:
    pipeline = Pipeline.read(Path(PIPELINE))
    lock = (yaml.safe_load(Path("dvc.lock").read_text()) if Path("dvc.lock").is_file() else None) or {}
    params = yaml.safe_load(Path("params.yaml").read_text()) or {}
    status = json.loads(dvc("status", PIPELINE, "--json").stdout or "{}")
    return judge(status, pipeline, params_changes(lock, params, pipeline), lock)


def pull() -> str:
    """Fetch the outputs from the default DVC remote; a sentence on what happened."""
    remote = dvc("remote", "default", check=False).stdout.strip()
    if not remote:
        return "not pulled: no default DVC remote is configured (README \"Sharing experiments\")"
    result = dvc("pull", PIPELINE, check=False)
    if result.returncode != 0:
        error = next((line for line in result.stderr.splitlines() if line.startswith("ERROR")), result.stderr.strip())
        return f"pulled from the DVC remote `{remote}` with an error: {error[:400]}"
    return f"pulled from the DVC remote `{remote}`"


def reproduce() -> tuple[list[str], str | None]:
    """`dvc repro` of the pipeline: the stages that ran, and the end of its error output if it failed."""
    result = dvc("repro", PIPELINE, check=False)
    ran = [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage '")]
    if result.returncode == 0:
        return ran, None
    return ran, "\n".join(result.stderr.strip().splitlines()[-5:]) or f"exit status {result.returncode}"


@dataclass
class Rerun:
    """What this review did about stale results."""

    ran: list[str] | None = None
    """The stages `dvc repro` ran here (None: not re-run)."""
    refusal: str | None = None
    """Why it was not re-run."""
    error: str | None = None
    """The end of `dvc repro`'s error output, if it failed."""

    @property
    def done(self) -> bool:
        return self.ran is not None and self.error is None


def header(base: str, found: Verdict, outputs: str, rerun: Rerun) -> list[str]:
    lines = [f"# Pipeline results of this change against `{base}`", ""]
    if found.up_to_date:
        lines += ["**Up to date.** The committed `dvc.lock` matches this change's code, params and data: the "
                  "results below are the ones the change commits, and no stage ran for this review."]
    else:
        lines += ["> **Stale results.** This change's code, params or data differ from what produced the committed "
                  "results (`dvc.lock`):"]
        lines += [f"> - `{stage}`: {'; '.join(reasons)}" for stage, reasons in found.stale.items()]
        if found.downstream:
            lines += [f"> - downstream of them: {', '.join(f'`{stage}`' for stage in found.downstream)}"]
        lines += [">"]
        if rerun.done:
            ran = ", ".join(f"`{stage}`" for stage in rerun.ran) or "none (all restored from the run-cache)"
            lines += [f"> Re-run here on the CPU (the params are the embedded model's): {ran}. The results below are "
                      "this re-run's; commit them (`dvc repro`, then commit `dvc.lock` and `reports/`)."]
        elif rerun.error:
            lines += ["> **The re-run failed** (`dvc repro`), so the results below are the committed ones:", ">",
                      *(f">     {line}" for line in rerun.error.splitlines())]
        else:
            lines += [f"> **Not re-run**: {rerun.refusal}. The results below are the committed ones and do not belong "
                      "to this change: re-run the stale stages where the recipe runs (`dvc repro`), commit `dvc.lock` "
                      "and the results, and push the outputs (`dvc push`)."]
    lines += ["", f"Outputs: {outputs}."]
    if found.missing:
        lines += [f"Not in this checkout (DVC-cached, not pulled): {', '.join(f'`{p}`' for p in found.missing)}."]
    if found.unchecked:
        lines += [f"Checked only once pulled (files inside another stage's output): "
                  f"{', '.join(f'`{p}`' for p in found.unchecked)}."]
    return lines + [""]


def diffs(base: str) -> list[str]:
    """Metrics, params and figures of the workspace against `base`."""
    dvc("plots", "diff", base, "--out", str(PLOTS))
    rev = base.translate(str.maketrans("/~^", "___"))
    lines = ["## Metrics", "", dvc("metrics", "diff", base, "--md", "--precision", "4").stdout.strip()
             or "No metrics changed.", "", "## Params", "",
             dvc("params", "diff", base, "--md").stdout.strip() or "No params changed.", "",
             f"## Figures (`{base}` | this change)", ""]
    for figure in FIGURES:
        lines += [f"| `{base}` | this change |", "| --- | --- |",
                  f"| ![](pr_plots/static/{rev}_reports_figures_{figure}.png) "
                  f"| ![](pr_plots/static/workspace_reports_figures_{figure}.png) |", ""]
    return lines + ["Interactive loss curves of both revisions: `reports/pr_plots/index.html`."]


def review(base: str, pull_outputs: bool) -> tuple[str, bool]:
    """The comment's markdown, and whether its results belong to this change."""
    outputs = pull() if pull_outputs else "not pulled by this review (--pull fetches them from the DVC remote)"
    found, rerun = verdict(), Rerun()
    if not found.up_to_date:
        rerun.refusal = cpu_cheap(Path("params.yaml"))
        if rerun.refusal is None:
            rerun.ran, rerun.error = reproduce()
            if rerun.error:  # a successful re-run leaves every output in the workspace
                after = verdict()
                found.missing, found.unchecked = after.missing, after.unchecked
            else:
                found.missing, found.unchecked = [], []
    comment = "\n".join(header(base, found, outputs, rerun) + diffs(base)) + "\n"
    return comment, found.up_to_date or rerun.done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the revision to diff against, e.g. origin/main")
    parser.add_argument("--pull", action="store_true", help="pull the outputs from the default DVC remote first")
    args = parser.parse_args(argv)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, check=True).stdout.split("\n")
    if any(dirty):
        print(f"error: uncommitted changes to {', '.join(line[3:] for line in dirty if line)}: the review judges the "
              "committed change; commit or stash them first", file=sys.stderr)
        return 2
    comment, belongs = review(args.base, args.pull)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(comment, encoding="utf-8")
    print(comment.split("\n## Metrics")[0])
    print(f"wrote {REPORT}")
    return 0 if belongs else 1


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
