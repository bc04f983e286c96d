"""evaluate: the base model and the tuned model (base + adapter) on the same held-out rows.

    python -m stages.evaluate

Reads   params.yaml (data.task, eval.*, data.on_bad_row, train.backend, train.load_in_4bit,
        train.max_seq_length), data/prepared/eval.jsonl, models/base/, models/adapter/, and eval.mcq.source when set
Writes  reports/eval/metrics.json   flat keys base.* and tuned.*: eval_loss and perplexity (full text),
                                    response_loss, format_compliance, stop_rate, mean_generated_tokens, and the
                                    task's scores: rouge_l (medical_cot) or ner_precision/recall/f1, ner_f1.<type>,
                                    ner_malformed_lines, ner_not_in_text (cmeee_ner);
                                    with eval.mcq.source: mcq_accuracy (overall and per source shape),
                                    mcq_no_letter, mcq_thinking_tokens
        reports/eval/perf.json      base/tuned generation_tokens_per_second (and mcq_generation_tokens_per_second),
                                    peak memory
        reports/eval/samples.jsonl  question, reference, base output, tuned output
        reports/eval/before_after.csv  the 0-1 scores (metrics.RATES present) in long form for `dvc plots`
Same prompts and greedy decoding for both; Unsloth's fast inference when train.backend is unsloth.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean

from stages import backends, config, dataset, files, inference, metrics, prompts, sources, tasks, trainer
from stages.base_model import BaseModel
from stages.tasks import mcq

EVAL_ROWS = Path("data/prepared/eval.jsonl")
BASE = Path("models/base")
ADAPTER = Path("models/adapter")
REPORTS = Path("reports/eval")


def score(model, tokenizer, rows: list[dict], task, params) -> tuple[dict, float, list[str]]:
    """Loss on every held-out row, then generations for the first eval.num_samples of them, scored by the task.

    Returns the scores, the generation speed (tokens/s) and the generated texts.
    """
    losses = inference.teacher_forced_loss(model, tokenizer, rows, params.eval.batch_size,
                                           params.train.max_seq_length)
    sampled = rows[:params.eval.num_samples]
    out = inference.generate(model, tokenizer, [r["prompt"] for r in sampled], params.eval.max_new_tokens,
                             params.eval.batch_size)
    answers = [prompts.split_generation(t).answer for t in out.texts]
    return {
        "eval_loss": round(losses["full"], 5), "perplexity": round(metrics.perplexity(losses["full"]), 4),
        "response_loss": round(losses["response"], 5),
        "format_compliance": round(metrics.format_compliance(out.texts), 4),
        "stop_rate": round(metrics.stop_rate(out.stopped), 4),
        "mean_generated_tokens": round(mean(out.new_tokens), 1),
        **task.score(sampled, answers),
    }, out.tokens_per_second, out.texts


def load_mcq(params) -> list[mcq.Item]:
    cfg = params.eval.mcq
    source, hub_config = sources.resolve_sample(cfg.source, cfg.config, mcq.SAMPLES, "eval.mcq.config")
    records = sources.load_records(source, hub_config, None, cfg.split)
    rows, _ = dataset.clean(records, mcq.validate, params.data.on_bad_row, cfg.max_rows)
    return [mcq.Item(**row) for row in rows]


def score_mcq(model, tokenizer, items: list[mcq.Item], params) -> tuple[dict, float]:
    """MCQ scores and the generation speed (tokens/s) over all questions."""
    out = inference.generate(model, tokenizer, [mcq.prompt(item) for item in items],
                             params.eval.mcq.max_new_tokens, params.eval.batch_size)
    thinking = [len(tokenizer(prompts.split_generation(t).thinking, add_special_tokens=False)["input_ids"])
                for t in out.texts]
    return mcq.score(items, out.texts, thinking), out.tokens_per_second


def score_model(model, tokenizer, rows: list[dict], items: list[mcq.Item], task, params
                ) -> tuple[dict, dict, list[str]]:
    """One model's scores (the task's, and MCQ's when items are given), generation speeds and generated texts."""
    scores, speed, texts = score(model, tokenizer, rows, task, params)
    speeds = {"generation_tokens_per_second": speed}
    if items:
        mcq_scores, speeds["mcq_generation_tokens_per_second"] = score_mcq(model, tokenizer, items, params)
        scores |= mcq_scores
    return scores, speeds, texts


def side_by_side(base: dict, tuned: dict) -> dict:
    """One flat dict with keys base.<key> and tuned.<key>, as `dvc metrics` shows them."""
    return {f"{name}.{key}": value for name, values in (("base", base), ("tuned", tuned))
            for key, value in values.items()}


def main() -> None:
    params = config.load()
    task = tasks.get(params.data.task)
    backend = backends.get(params.train.backend)
    trainer.seed_everything(params.seed)
    rows = files.read_jsonl(EVAL_ROWS)
    items = load_mcq(params) if params.eval.mcq.source else []
    base = BaseModel.read(BASE)
    model, tokenizer = backend.load(base, params.train)
    model = backend.for_inference(model)
    base_scores, base_speeds, base_texts = score_model(model, tokenizer, rows, items, task, params)
    from peft import PeftModel  # after the backend: Unsloth must patch transformers first

    model = backend.for_inference(PeftModel.from_pretrained(model, ADAPTER))
    tuned_scores, tuned_speeds, tuned_texts = score_model(model, tokenizer, rows, items, task, params)

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
