"""The whole DVC pipeline on the embedded default, in a temporary copy of the repository: reproduction of the
committed results, the run-cache, experiments, recipes, a sweep and the review of an experiment.

The tests share one repository and run in file order."""

import hashlib
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from scripts.pr_verdict import locked_outs
from medical_r1.files import read_jsonl
from tests.conftest import REPO, dvc, sh, user_env

pytestmark = pytest.mark.slow

REPRODUCED = ["reports/prepare/stats.json", "reports/train/metrics.json", "reports/train/steps.csv",
              "reports/train/eval_loss.csv", "reports/rl/metrics.json", "reports/rl/steps.csv",
              "reports/eval/base/metrics.json", "reports/eval/tuned/metrics.json", "reports/eval/before_after.csv"]
"""Every result file committed to git that holds no timing (docs/reliability.md)."""
REPRODUCED_OUTS = ["data/prepared", "models/base", "models/adapter", "models/tuned", "reports/train/run.json",
                   "reports/eval/base/generations.jsonl", "reports/eval/tuned/generations.jsonl",
                   "reports/eval/samples.jsonl"]
"""Every DVC-cached output that holds no timing: dvc.lock records its hash."""
SHOW_DROP = "Created|State|Executor|.*/|.*seconds|.*per_second|.*peak_"
"""docs/sharing.md "Sweeps": the columns `dvc exp show --only-changed` leaves out in a pull request (dependency hashes,
timings)."""
RESTORED = ["models/adapter/adapter_model.safetensors", "reports/train/metrics.json", "reports/train/perf.json",
            "models/tuned/adapter_model.safetensors", "reports/rl/metrics.json", "reports/rl/perf.json",
            "reports/eval/tuned/metrics.json", "reports/eval/tuned/perf.json", "reports/eval/samples.jsonl"]


def snapshot(root: Path, names: list[str]) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in names}


def out_hashes(lock: Path) -> dict[str, str]:
    return locked_outs(yaml.safe_load(lock.read_text()))


def test_repro_rewrites_the_committed_results_byte_for_byte(reproduced):
    """What the embedded default commits is what any fresh clone computes (timings aside)."""
    for name in REPRODUCED:
        assert (reproduced / name).read_bytes() == (REPO / name).read_bytes(), f"{name} differs from the committed one"
    computed, committed = out_hashes(reproduced / "dvc.lock"), out_hashes(REPO / "dvc.lock")
    assert {p: computed[p] for p in REPRODUCED_OUTS} == {p: committed[p] for p in REPRODUCED_OUTS}
    scores = json.loads((reproduced / "reports/eval/tuned/metrics.json").read_text())["tuned"]
    base = json.loads((reproduced / "reports/eval/base/metrics.json").read_text())["base"]
    assert scores["eval_loss"] < 0.5 * base["eval_loss"] and scores["format_compliance"] > base["format_compliance"]
    assert (reproduced / "reports/report.md").is_file()
    for figure in ("loss", "throughput_memory", "rl", "before_after"):
        assert (reproduced / f"reports/figures/{figure}.png").is_file()


def test_ask_answers_with_the_tuned_model(reproduced):
    """`python -m stages.ask` streams the default's tuned model: its thinking, then the answer after </think>."""
    rows = read_jsonl(reproduced / "data/prepared/train.jsonl")
    out = sh([sys.executable, "-m", "stages.ask", "--max-new-tokens", "256", rows[0]["question"]], reproduced).stdout
    thinking, _, answer = out.partition("\n[answer]\n")
    assert thinking.startswith("[thinking]\n") and len(thinking) > 20 and answer.strip(), out[-2000:]


def test_second_repro_runs_nothing(reproduced):
    out = dvc("repro", cwd=reproduced).stdout
    assert "Data and pipelines are up to date" in out and "Running stage" not in out


def test_an_edit_to_a_watched_local_source_makes_exactly_its_readers_stale(reproduced):
    """dvc.yaml cannot list a source by its param's path, so it lists data/local/<section>/: a file added there makes
    the stages that read eval sets stale (rl drops RL rows that are in an eval set), and nothing else."""
    added = reproduced / "data/local/eval/medqa_copy.jsonl"
    added.write_text('{"question": "Which nerve?", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}\n')
    try:
        stale = json.loads(dvc("status", "--json", "dvc.yaml", cwd=reproduced).stdout)
        assert set(stale) == {"rl", "evaluate_base", "evaluate"}
    finally:
        added.unlink()
    assert "Data and pipelines are up to date" in dvc("status", "dvc.yaml", cwd=reproduced).stdout


def test_returning_to_params_that_ran_restores_from_the_run_cache(reproduced):
    """A (the default), B (another rank), A again: the third run restores train and evaluate instead of running
    them, with the first run's bytes; evaluate_base never reruns for a LoRA ablation."""
    first = snapshot(reproduced, RESTORED)
    other = dvc("exp", "run", "-S", "lora.r=8", "-S", "train.max_steps=3", cwd=reproduced).stdout
    assert all(f"Running stage '{stage}'" in other for stage in ("train", "rl", "evaluate"))
    assert "Running stage 'evaluate_base'" not in other
    back = dvc("exp", "run", cwd=reproduced).stdout
    for stage in ("train", "rl", "evaluate"):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in back
    assert ran(back) <= {"check", "report"}  # check's output is persisted, so it runs (a second), never restores
    assert snapshot(reproduced, RESTORED) == first


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def test_rl_steps_rerun_rl_and_what_follows_and_zero_hands_sft_on(reproduced):
    """`-S rl.max_steps=N` reruns rl, evaluate and report only; with 0 the tuned adapter is the SFT one, byte for
    byte, so evaluate scores SFT alone."""
    for steps in (1, 0):  # evaluate reruns where the tuned adapter changed (no reward, no change: it is restored)
        assert {"rl", "report"} <= ran(dvc("exp", "run", "-S", f"rl.max_steps={steps}", cwd=reproduced).stdout) \
            <= {"check", "rl", "evaluate", "report"}
        assert json.loads((reproduced / "reports/rl/metrics.json").read_text())["steps"] == steps
    sft = reproduced / "models/adapter"
    assert all((reproduced / "models/tuned" / f.name).read_bytes() == f.read_bytes() for f in sft.iterdir())
    sh(["git", "checkout", "--", "."], reproduced)
    dvc("checkout", "--force", cwd=reproduced)


def output_files(root: Path) -> dict[str, str]:
    """Every file under the pipeline's output folders, by its bytes' hash."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for top in ("data/prepared", "models", "reports") for path in sorted((root / top).rglob("*"))
            if path.is_file()}


@pytest.mark.parametrize("override, sentence", [
    ("train.learning_rate=inf", "train.learning_rate: must be a finite number"),
    ("train.lr_scheduler_type=cosine_with_min_lr", "train.lr_scheduler_type 'cosine_with_min_lr' with "
                                                   "train.lr_scheduler_kwargs {}: cannot be built")])
def test_a_refused_param_stops_dvc_before_any_output_goes(reproduced, override, sentence):
    """DVC deletes a stage's outputs before it runs: the check stage refuses the value first, so none goes."""
    before = output_files(reproduced)
    out = dvc("exp", "run", "-S", override, cwd=reproduced, check=False)
    assert out.returncode != 0 and sentence in out.stdout + out.stderr, out.stdout[-2000:] + out.stderr[-2000:]
    assert ran(out.stdout) == {"check"} and "Traceback" not in out.stdout + out.stderr
    assert output_files(reproduced) == before
    sh(["git", "checkout", "--", "."], reproduced)
    dvc("checkout", "--force", cwd=reproduced)


def test_an_unknown_recipe_is_refused_by_name_before_anything_runs(reproduced):
    """DVC composes params.yaml (Hydra) before any stage: an unknown recipe fails there, naming it and the recipes
    there are, with params.yaml and every output as they were."""
    before, params = output_files(reproduced), (reproduced / "params.yaml").read_bytes()
    out = dvc("exp", "run", "-S", "recipe=no_such_recipe", cwd=reproduced, check=False)
    said = out.stdout + out.stderr
    assert out.returncode != 0 and "Could not find 'recipe/no_such_recipe'" in said, said[-2000:]
    assert all(name in said for name in ("r1_medical_en", "fast_gpu", "embedded")) and "Traceback" not in said
    assert not ran(out.stdout) and (reproduced / "params.yaml").read_bytes() == params
    assert output_files(reproduced) == before


def test_a_second_concurrent_exp_run_files_no_result_under_the_wrong_params(reproduced):
    """Two `dvc exp run` at once: DVC refuses the second, but it has rewritten params.yaml by then, so the first
    run's stage fails rather than be recorded under the second's params; those params then train, not restore."""
    first = subprocess.Popen([sys.executable, "-m", "dvc", "exp", "run", "-S", "train.max_steps=40"], cwd=reproduced,
                             env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(first.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 300
    while not any("Running stage 'train'" in line for line in lines) and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(8)  # train has loaded the params and is training
    second = dvc("exp", "run", "-S", "lora.r=8", cwd=reproduced, check=False)
    first.wait(timeout=600)
    reader.join(timeout=60)
    first_out = "".join(lines)
    if first.returncode:  # params.yaml was rewritten under it
        assert "params.yaml changed while this stage ran" in first_out, first_out[-3000:]
    again = dvc("exp", "run", "-S", "train.max_steps=40", "-S", "lora.r=8", cwd=reproduced).stdout
    if second.returncode:  # refused: nothing ever ran with these params, so nothing may be restored for them
        assert "Running stage 'train'" in again, again[-3000:]
    sh(["git", "checkout", "--", "."], reproduced)
    dvc("checkout", "--force", cwd=reproduced)


def test_experiment_is_diffable_and_the_review_shows_it(reproduced):
    dvc("exp", "run", "-S", "lora.r=8", "-S", "train.max_steps=3", "-n", "r8", cwd=reproduced)

    table = dvc("exp", "show", "--md", cwd=reproduced).stdout
    assert "r8" in table and "tuned.eval_loss" in table and "lora.r" in table
    diff = json.loads(dvc("metrics", "diff", "HEAD", "r8", "--json", cwd=reproduced).stdout)
    assert "tuned.eval_loss" in diff["reports/eval/tuned/metrics.json"]
    assert "reports/eval/base/metrics.json" not in diff  # the base model did not change
    steps = yaml.safe_load((REPO / "params.yaml").read_text())["train"]["max_steps"]  # the committed default
    assert diff["reports/train/metrics.json"]["steps"] == {"old": steps, "new": 3, "diff": 3 - steps}

    plots = json.loads(dvc("plots", "diff", "HEAD", "r8", "--json", cwd=reproduced).stdout)
    curve = plots["data"]["reports/train/steps.csv"][0]
    assert set(curve["revisions"]) == {"HEAD", "r8"}
    steps_by_rev = {}
    for point in curve["content"]["data"]["values"]:
        steps_by_rev[point["rev"]] = steps_by_rev.get(point["rev"], 0) + 1
    assert steps_by_rev == {"HEAD": steps, "r8": 3}

    dvc("exp", "apply", "r8", cwd=reproduced)
    sh(["git", "commit", "-qam", "lora.r 8"], reproduced)  # the review judges commits
    sh([sys.executable, "scripts/pr_review.py", "--base", "HEAD~1"], reproduced)
    pr = (reproduced / "reports/pr.md").read_text()
    assert "**Up to date.**" in pr and "Not in this checkout" not in pr
    assert "## Metrics" in pr and "| reports/eval/tuned/metrics.json" in pr and "tuned.eval_loss" in pr
    assert "## Params" in pr and "| params.yaml | lora.r" in pr
    assert (reproduced / "reports/pr_plots/static/workspace_reports_figures_loss.png").is_file()
    sh(["git", "reset", "-q", "--hard", "HEAD~1"], reproduced)
    dvc("checkout", "--force", cwd=reproduced)


def test_a_recipe_runs_by_its_one_command_and_its_scores_are_those_of_its_generations(reproduced):
    """The NER recipe with MCQ scored as sampled pass@1 (2 samples): the scores agree with the generations evaluate
    wrote, computed here from the raw files without the scoring code (so no row is dropped, reordered or
    mismatched)."""
    dvc("exp", "run", "-S", "recipe=embedded_ner", "-S", "train.max_steps=4", "-S", "eval.num_samples=4",
        "-S", "eval.max_new_tokens=32", "-S", "eval.mcq_protocol.max_questions=6",
        "-S", "eval.mcq_protocol.max_new_tokens=16", "-S", "eval.mcq_protocol.decoding=sampled",
        "-S", "eval.mcq_protocol.samples=2", "-n", "ner", cwd=reproduced)
    stats = json.loads((reproduced / "reports/prepare/stats.json").read_text())
    assert stats["rows_kept"] == 240
    raw = read_jsonl(reproduced / "data/sample/mcq.jsonl")[:6]  # MedQA (answer_idx) and MedMCQA (cop) rows
    golds = [row["answer_idx"] if "answer_idx" in row else "ABCD"[row["cop"]] for row in raw]
    held_out = read_jsonl(reproduced / "data/prepared/eval.jsonl")[:4]
    gold_types = {entity[2] for row in held_out for entity in row["entities"]}
    for model in ("base", "tuned"):
        scores = json.loads((reproduced / f"reports/eval/{model}/metrics.json").read_text())[model]
        written = read_jsonl(reproduced / f"reports/eval/{model}/generations.jsonl")
        held, answered = ([g for g in written if g["prompt_set"] == kind] for kind in ("held_out", "mcq"))
        assert len(held) == scores["samples"] == 4
        assert [(g["question"], g["gold"], g["sample"]) for g in answered] == [
            (row["question"], gold, sample) for row, gold in zip(raw, golds) for sample in (0, 1)]
        assert all(g["chosen"] in (None, "A", "B", "C", "D") and g["set"] == "sample" for g in answered)
        mcq = scores["mcq"]["sample"]
        assert (mcq["questions"], mcq["samples"]) == (6, 2)
        assert mcq["accuracy"] == round(sum(g["chosen"] == g["gold"] for g in answered) / 12, 4)
        assert mcq["no_letter"] == round(sum(g["chosen"] is None for g in answered) / 12, 4)
        assert mcq["truncated"] <= round(sum("</think>" not in g["generation"] for g in answered) / 12, 4)
        precision, recall, f1 = scores["ner_precision"], scores["ner_recall"], scores["ner_f1"]
        assert f1 == pytest.approx(2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                                   abs=1e-3)
        assert {f"ner_f1.{kind}" for kind in gold_types} <= set(scores)
        samples = read_jsonl(reproduced / "reports/eval/samples.jsonl")
        assert [s["question"] for s in samples] == [row["question"] for row in held_out]
        assert [s[model] for s in samples] == [g["generation"] for g in held]
    report = (reproduced / "reports/report.md").read_text()
    assert "| ner f1 |" in report and "ner_f1_by_type.png" in report
    assert "sampled pass@1 over 2 samples per question (temperature 0.6, top-p 0.95, seeded)" in report
    assert "| base (this run) |" in report and "| HuatuoGPT-o1-8B, SFT + RL | – | 72.6 | 60.4 | 79.2 |" in report
    assert "ner" in dvc("exp", "show", "--md", cwd=reproduced).stdout
    sh(["git", "checkout", "--", "."], reproduced)
    dvc("checkout", "--force", cwd=reproduced)
    assert "Running stage" not in dvc("exp", "run", cwd=reproduced).stdout  # the embedded-default recipe: all cached


def test_a_queued_sweep_of_two_points(reproduced):
    """`dvc exp run --queue -S 'lora.r=4,8'` then `dvc queue start`: two experiments, one table that fits a PR."""
    dvc("exp", "remove", "--all-commits", cwd=reproduced)  # the table shows the sweep and its baseline only
    queued = dvc("exp", "run", "--queue", "-S", "lora.r=4,8", "-S", "train.max_steps=2", "-S", "eval.num_samples=2",
                 "-S", "eval.max_new_tokens=8", cwd=reproduced).stdout
    assert queued.count("Queued experiment") == 2
    dvc("queue", "start", "-j", "2", cwd=reproduced)
    deadline = time.time() + 900
    while time.time() < deadline:
        status = dvc("queue", "status", cwd=reproduced).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    dvc("queue", "stop", cwd=reproduced, check=False)
    assert status.count("Success") == 2, status
    shown = json.loads(dvc("exp", "show", "--json", cwd=reproduced).stdout)
    ranks = [exp["data"]["params"]["params.yaml"]["data"]["lora"]["r"]
             for rev in shown for exp in (rev.get("experiments") or []) for exp in exp["revs"]
             if exp["data"]["params"]["params.yaml"]["data"]["train"]["max_steps"] == 2]
    assert sorted(ranks) == [4, 8]
    table = dvc("exp", "show", "--only-changed", "--md", "--drop", SHOW_DROP, cwd=reproduced).stdout
    assert "tuned.eval_loss" in table and "lora.r" in table and "seconds" not in table
    lines = [line for line in table.splitlines() if line.strip()]
    assert len(lines) == 2 + 4  # header, rule, workspace, baseline, two experiments
    assert max(map(len, lines)) <= 720  # docs/sharing.md states the width
