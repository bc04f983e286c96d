"""scripts/pr_review.py's verdict on `dvc status`, on the states DVC reports (tests/test_sharing.py runs the script
on real clones), and the workflow that calls it."""

import copy

import yaml

from scripts.pr_review import cpu_cheap, main
from scripts.pr_verdict import Pipeline, judge, params_changes
from tests.conftest import REPO, sh

PIPELINE = Pipeline.read(REPO / "dvc.yaml")
LOCK = yaml.safe_load((REPO / "dvc.lock").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
FRESH_CLONE = {
    "prepare": [{"changed outs": {"data/prepared": "not in cache", "models/base": "not in cache"}}],
    "train": [{"changed deps": {"data/prepared": "deleted", "models/base": "deleted"}},
              {"changed outs": {"models/adapter": "not in cache", "reports/train/run.json": "not in cache"}}],
    "rl": [{"changed deps": {"data/prepared/eval.jsonl": "deleted", "models/base": "deleted",
                             "models/adapter": "deleted"}},
           {"changed outs": {"models/tuned": "not in cache"}}],
    "evaluate_base": [{"changed deps": {"data/prepared/eval.jsonl": "deleted", "models/base": "deleted"}},
                      {"changed outs": {"reports/eval/base/generations.jsonl": "not in cache"}}],
    "evaluate": [{"changed deps": {"data/prepared/eval.jsonl": "deleted", "models/base": "deleted",
                                   "models/tuned": "deleted", "reports/eval/base/generations.jsonl": "deleted"}},
                 {"changed outs": {"reports/eval/tuned/generations.jsonl": "not in cache",
                                   "reports/eval/samples.jsonl": "not in cache"}}],
    "report": [{"changed deps": {"reports/train/run.json": "deleted", "reports/eval/samples.jsonl": "deleted"}},
               {"changed outs": {"reports/report.md": "not in cache"}}]}
"""`dvc status dvc.yaml --json` in a fresh clone of this repository: every DVC-cached output absent."""


def with_change(stage: str, kind: str, path: str, state) -> dict:
    status = copy.deepcopy(FRESH_CLONE)
    status[stage].append({kind: {path: state}})
    return status


def test_outputs_missing_from_a_fresh_clone_are_not_staleness():
    verdict = judge(FRESH_CLONE, PIPELINE, {}, LOCK)
    assert verdict.up_to_date and verdict.downstream == []
    assert verdict.unchecked == ["data/prepared/eval.jsonl"]  # a file of prepare's directory output
    assert verdict.missing == ["data/prepared", "models/adapter", "models/base", "models/tuned",
                               "reports/eval/base/generations.jsonl",
                               "reports/eval/samples.jsonl", "reports/eval/tuned/generations.jsonl",
                               "reports/report.md", "reports/train/run.json"]


def test_a_param_change_names_its_stage_the_keys_and_what_runs_downstream():
    params = copy.deepcopy(PARAMS)
    params["lora"]["r"] = 8
    changes = params_changes(LOCK, params, PIPELINE)
    line = f"lora.r: {PARAMS['lora']['r']} -> 8"
    assert changes == {"check": [line], "train": [line], "report": [line]}
    status = with_change("train", "changed deps", "params.yaml", {"lora": "modified"})
    status = {**status, "report": [*status["report"], {"changed deps": {"params.yaml": {"lora": "modified"}}}],
              "check": [{"changed deps": {"params.yaml": {"lora": "modified"}}}]}
    verdict = judge(status, PIPELINE, changes, LOCK)
    assert verdict.stale == {"check": [line], "train": [line], "report": [line]}
    assert verdict.downstream == ["rl", "evaluate"]


def test_code_changes_and_results_that_differ_from_the_lock_are_stale():
    verdict = judge(with_change("prepare", "changed deps", "stages/prepare.py", "modified"), PIPELINE, {}, LOCK)
    assert verdict.stale == {"prepare": ["stages/prepare.py modified"]}
    assert verdict.downstream == ["train", "rl", "evaluate_base", "evaluate", "report"]
    edited = judge(with_change("train", "changed outs", "reports/train/metrics.json", "modified"), PIPELINE, {}, LOCK)
    assert edited.stale == {"train": ["reports/train/metrics.json differs from dvc.lock"]}
    gone = judge(with_change("train", "changed outs", "reports/train/metrics.json", "deleted"), PIPELINE, {}, LOCK)
    assert gone.stale == {"train": ["reports/train/metrics.json deleted"]}  # kept in git: not a pull away
    removed = judge(with_change("report", "changed deps", "stages/plots.py", "deleted"), PIPELINE, {}, LOCK)
    assert removed.stale == {"report": ["stages/plots.py deleted"]}
    assert judge({"report": ["changed command"]}, PIPELINE, {}, LOCK).stale == {"report": ["changed command"]}


def test_only_the_embedded_model_on_a_bundled_sample_is_rerun_on_a_cpu(workdir):
    assert cpu_cheap(REPO / "params.yaml") is None
    for dotted, value, reason in [
            ("model.name", "unsloth/DeepSeek-R1-Distill-Llama-8B", "model.name is 'unsloth/DeepSeek-R1-Distill"),
            ("data.source", "rows.json", "data.source is 'rows.json', not a bundled sample"),
            ("lora.r", 0, "params.yaml is not valid (lora.r")]:
        workdir.params({dotted: value})
        assert cpu_cheap(workdir / "params.yaml").startswith(reason)


def test_the_workflow_is_a_thin_wrapper_around_the_review_script():
    workflow = yaml.safe_load((REPO / ".github/workflows/pr-report.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["report"]["steps"]]
    assert sum("scripts/pr_review.py" in run and "--pull" in run for run in runs) == 1
    assert not any("dvc repro" in run or "dvc exp" in run for run in runs)


def test_an_absent_output_the_lock_says_another_run_wrote_is_stale():
    """prepare re-run and committed, train's lock entry left from before: without the outputs, the hashes tell."""
    lock = copy.deepcopy(LOCK)
    next(dep for dep in lock["stages"]["train"]["deps"] if dep["path"] == "data/prepared")["md5"] = "0" * 32 + ".dir"
    verdict = judge(FRESH_CLONE, PIPELINE, {}, lock)
    assert verdict.stale == {"train": ["data/prepared is not what prepare wrote (dvc.lock)"]}
    assert verdict.downstream == ["rl", "evaluate", "report"]


def test_a_dirty_tree_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    """The review judges commits: uncommitted edits would be taken for the change, and a re-run would stage
    dvc.lock over them."""
    sh(["git", "init", "-q", "-b", "main"], tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    sh(["git", "add", "-A"], tmp_path)
    sh(["git", "commit", "-qm", "base"], tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 2\n")
    monkeypatch.chdir(tmp_path)
    assert main(["--base", "HEAD"]) == 2
    assert capsys.readouterr().err.startswith("error: uncommitted changes to params.yaml: the review judges")
    assert not (tmp_path / "reports").exists()
