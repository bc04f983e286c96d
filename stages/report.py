"""report: charts and a markdown report from the files the other stages wrote. Trains nothing, loads no model.

    python -m stages.report

Reads   params.yaml: seed, model.name, data.task, data.source, data.config, lora.*, train.* (the params table),
        rl.* (the RL section), eval.mcq_protocol (the MCQ section);
        reports/prepare/stats.json, reports/train/metrics.json, reports/train/perf.json, reports/train/run.json,
        reports/train/steps.csv, reports/train/step_times.csv, reports/train/eval_loss.csv,
        reports/rl/metrics.json, reports/rl/perf.json, reports/rl/steps.csv,
        reports/eval/base/metrics.json, reports/eval/base/perf.json, reports/eval/tuned/metrics.json,
        reports/eval/tuned/perf.json, reports/eval/samples.jsonl
Writes  reports/figures/ (loss.png, throughput_memory.png, rl.png when GRPO ran, before_after.png,
        ner_f1_by_type.png for cmeee_ner),
        reports/report.md (params, training, reinforcement learning, base-vs-tuned table, the figures, the MCQ sets beside published reference rows,
        three sample generations side by side)
"""

from __future__ import annotations

from medical_r1 import artifacts, config, files
from medical_r1.artifacts import FIGURES, MODELS
from medical_r1.data import sources, tasks
from medical_r1.evaluation import metrics
from medical_r1.reporting import markdown, plots


def main() -> None:
    params = config.load()
    report(params.seed, params.model.name, params.data.task, params.data.source, params.data.config, params.lora,
           params.train, params.rl, params.eval.mcq_protocol)


def report(seed: int, model_name: str, task: str, data_source: str, data_config: str | None, lora, train_config,
           rl, protocol) -> None:
    artifacts.require_all(*artifacts.read_by("report"))
    artifacts.require_outputs_writable("report")
    stats, train, train_perf = (a.read_json() for a in (artifacts.PREPARE_STATS, artifacts.TRAIN_METRICS,
                                                          artifacts.TRAIN_PERF))
    run = artifacts.load_run_info()
    scores = {model: artifacts.load_scores(model) for model in MODELS}
    perf = {model: artifacts.load_eval_perf(model) for model in MODELS}
    figures = FIGURES.path
    plots.loss_curve(files.read_csv(artifacts.TRAIN_STEPS.path), files.read_csv(artifacts.EVAL_LOSS.path),
                     figures / "loss.png")
    plots.throughput_memory(files.read_csv(artifacts.STEP_TIMES.path), train_config.backend, run["device"],
                            train_perf, perf, figures / "throughput_memory.png")
    rl_metrics = artifacts.RL_METRICS.read_json()
    if rl_metrics["steps"]:
        plots.rl_curves(files.read_csv(artifacts.RL_STEPS.path), figures / "rl.png")
    rl_lines = markdown.rl_section(rl, rl_metrics, artifacts.RL_PERF.read_json())
    evaluation = metrics.flatten(scores)
    plots.before_after(evaluation, figures / "before_after.png")
    if "base.ner_f1" in evaluation:
        plots.per_type_f1(evaluation, figures / "ner_f1_by_type.png")
    samples = files.read_jsonl(artifacts.SAMPLES.path)
    source, _ = sources.resolve_sample(data_source, data_config, tasks.get(task).SAMPLES)
    shown_source = data_source + (f" ({data_config})" if data_config else "")
    mcq = markdown.mcq_section(scores, protocol, caveat(model_name, run["weights"])) if "mcq" in scores["base"] else []
    text = markdown.build(markdown.params_table(seed, model_name, task, shown_source, lora, train_config), source,
                          stats, train, train_perf, run, {**evaluation, **metrics.flatten(perf)}, samples, model_name,
                          mcq, rl_lines)
    files.write_text(artifacts.REPORT.path, text)
    print(f"report: wrote {artifacts.REPORT.path} and figures in {figures}")


def caveat(model_name: str, weights: str) -> str | None:
    """Why a run's MCQ accuracies say nothing about medicine, if they do not."""
    if model_name == "tiny":
        return ("The embedded default's tiny model, trained for minutes on our bundled sample, answers our bundled "
                "questions: these numbers check the pipeline, and stand beside the published rows only to show the "
                "table a real run fills.")
    if weights == "random":
        return f"The base has seeded random weights ({model_name}): these numbers measure the pipeline, not medicine."
    return None


if __name__ == "__main__":
    files.run_stage(main)
