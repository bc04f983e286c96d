"""evaluate: the base model and the tuned model (base + adapter) on the same held-out rows.

    python -m stages.evaluate

Reads   params.yaml (seed, data.task, eval.*, data.on_bad_row, train.load_in_4bit, train.max_seq_length),
        data/prepared/eval.jsonl, models/base/, models/adapter/, and eval.mcq.source when set
Writes  reports/eval/metrics.json   flat keys base.* and tuned.*: eval_loss and perplexity (full text),
                                    response_loss, format_compliance, stop_rate, mean_generated_tokens, and the
                                    task's scores: rouge_l (medical_cot) or ner_precision/recall/f1, ner_f1.<type>,
                                    ner_malformed_lines, ner_not_in_text (cmeee_ner);
                                    with eval.mcq.source: mcq_accuracy (overall and per source shape),
                                    mcq_no_letter, mcq_thinking_tokens
        reports/eval/perf.json      base/tuned generation_tokens_per_second and generation_batch_size (and
                                    mcq_generation_tokens_per_second), peak memory
        reports/eval/samples.jsonl  question, reference, base output, tuned output
        reports/eval/before_after.csv  the 0-1 scores (metrics.RATES present) in long form for `dvc plots`
Same prompts and greedy decoding for both, through stages/inference.py: plain transformers whichever backend
trained the adapter, the adapter merged into the weights, the static-cache engine (a CUDA graph per decode step
on a GPU) unless eval.engine says `generate`.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean

from stages import config, dataset, files, inference, metrics, prompts, sources, tasks, trainer
from stages.base_model import BaseModel
from stages.tasks import mcq

EVAL_ROWS = Path("data/prepared/eval.jsonl")
BASE = Path("models/base")
ADAPTER = Path("models/adapter")
REPORTS = Path("reports/eval")


def score(model, tokenizer, rows: list[dict], task, params, label: str) -> tuple[dict, inference.Generations]:
    """Loss on every held-out row, then generations for the first eval.num_samples of them, scored by the task."""
    losses = inference.teacher_forced_loss(model, tokenizer, rows, params.eval.batch_size,
                                           params.train.max_seq_length)
    sampled = rows[:params.eval.num_samples]
    out = inference.generate(model, tokenizer, [r["prompt"] for r in sampled], params.eval.max_new_tokens,
                             params.eval.batch_size, params.eval.engine, f"evaluate {label}")
    answers = [prompts.split_generation(t).answer for t in out.texts]
    return {
        "eval_loss": round(losses["full"], 5), "perplexity": round(metrics.perplexity(losses["full"]), 4),
        "response_loss": round(losses["response"], 5),
        "format_compliance": round(metrics.format_compliance(out.texts), 4),
        "stop_rate": round(metrics.stop_rate(out.stopped), 4),
        "mean_generated_tokens": round(mean(out.new_tokens), 1),
        **task.score(sampled, answers),
    }, out


def load_mcq(params) -> list[mcq.Item]:
    cfg = params.eval.mcq
    source, hub_config = sources.resolve_sample(cfg.source, cfg.config, mcq.SAMPLES, "eval.mcq.config")
    records = sources.load_records(source, hub_config, None, cfg.split)
    rows, _ = dataset.clean(records, mcq.validate, params.data.on_bad_row, cfg.max_rows)
    return [mcq.Item(**row) for row in rows]


def score_mcq(model, tokenizer, items: list[mcq.Item], params, label: str) -> tuple[dict, float]:
    """MCQ scores and the generation speed (tokens/s) over all questions."""
    out = inference.generate(model, tokenizer, [mcq.prompt(item) for item in items],
                             params.eval.mcq.max_new_tokens, params.eval.batch_size, params.eval.engine,
                             f"evaluate {label} MCQ")
    thinking = [len(tokenizer(prompts.split_generation(t).thinking, add_special_tokens=False)["input_ids"])
                for t in out.texts]
    return mcq.score(items, out.texts, thinking), out.tokens_per_second


def score_model(base: BaseModel, adapter: Path | None, rows: list[dict], items: list[mcq.Item], task, params
                ) -> tuple[dict, dict, list[str]]:
    """One model's scores (the task's, and MCQ's when items are given), generation speeds and generated texts."""
    label = "tuned" if adapter else "base"
    model, tokenizer = inference.load(base, adapter, params.train.load_in_4bit)
    scores, out = score(model, tokenizer, rows, task, params, label)
    speeds = {"generation_tokens_per_second": out.tokens_per_second, "generation_batch_size": out.batch_size}
    if items:
        mcq_scores, speeds["mcq_generation_tokens_per_second"] = score_mcq(model, tokenizer, items, params, label)
        scores |= mcq_scores
    return scores, speeds, out.texts


def side_by_side(base: dict, tuned: dict) -> dict:
    """One flat dict with keys base.<key> and tuned.<key>, as `dvc metrics` shows them."""
    return {f"{name}.{key}": value for name, values in (("base", base), ("tuned", tuned))
            for key, value in values.items()}


def main() -> None:
    params = config.load()
    task = tasks.get(params.data.task)
    trainer.seed_everything(params.seed)
    rows = files.read_jsonl(EVAL_ROWS)
    items = load_mcq(params) if params.eval.mcq.source else []
    base = BaseModel.read(BASE)
    base_scores, base_speeds, base_texts = score_model(base, None, rows, items, task, params)
    tuned_scores, tuned_speeds, tuned_texts = score_model(base, ADAPTER, rows, items, task, params)

    files.write_json(REPORTS / "metrics.json", {**side_by_side(base_scores, tuned_scores),
                                                "samples": len(base_texts), "weights": base.init})
    files.write_json(REPORTS / "perf.json", {**side_by_side(base_speeds, tuned_speeds), **trainer.peak_memory()})
    shown = [key for key in metrics.RATES if key in base_scores]
    files.write_csv(REPORTS / "before_after.csv", [
        {"metric": key, "model": name, "value": scores[key]}
        for key in shown for name, scores in (("base", base_scores), ("tuned", tuned_scores))])
    files.write_jsonl(REPORTS / "samples.jsonl", [
        {"question": r["question"], "reference": r["answer"], "base": b, "tuned": t}
        for r, b, t in zip(rows, base_texts, tuned_texts)])
    print(f"evaluate: eval loss {base_scores['eval_loss']} -> {tuned_scores['eval_loss']}, format compliance "
          f"{base_scores['format_compliance']} -> {tuned_scores['format_compliance']}")


if __name__ == "__main__":
    files.run_stage(main)
