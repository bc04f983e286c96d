"""evaluate: one model (the base, or the tuned base + adapter) on the held-out rows, and MCQ when asked.

    python -m stages.evaluate base      # dvc.yaml: evaluate_base, rerun only when the base or eval.* change
    python -m stages.evaluate tuned     # dvc.yaml: evaluate, after train

Reads   params.yaml (data.task, data.on_bad_row, eval.*, train.load_in_4bit, train.max_seq_length),
        data/prepared/eval.jsonl, models/base/, eval.mcq.source when set;
        tuned also models/adapter/ and the base's reports/eval/base/{metrics.json,generations.jsonl}
Writes  reports/eval/<model>/metrics.json   {"<model>": {...}}: eval_loss and perplexity (full text),
                                            response_loss, format_compliance, stop_rate, mean_generated_tokens,
                                            samples (questions generated for), and the task's scores: rouge_l (medical_cot) or ner_precision/recall/f1,
                                            ner_f1.<type>, ner_malformed_lines, ner_not_in_text (cmeee_ner); with
                                            eval.mcq.source: mcq_accuracy (overall and per source shape),
                                            mcq_no_letter, mcq_thinking_tokens
        reports/eval/<model>/perf.json      generation tokens/s and batch size (and MCQ tokens/s), peak memory
        reports/eval/<model>/generations.jsonl  what the model wrote for each sampled held-out question
        tuned also:
        reports/eval/samples.jsonl          question, reference, base output, tuned output
        reports/eval/before_after.csv       the 0-1 scores (metrics.RATES present) of both, long form, for `dvc plots`
Same prompts and greedy decoding for both, through stages/inference.py: plain transformers whichever backend
trained the adapter, the adapter merged into the weights, the static-cache engine (a CUDA graph per decode step
on a GPU) unless eval.engine says `generate`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import mean

from stages import UserError, config, dataset, files, inference, metrics, prompts, runtime, sources, tasks
from stages.base_model import BaseModel
from stages.tasks import mcq

EVAL_ROWS = Path("data/prepared/eval.jsonl")
BASE = Path("models/base")
ADAPTER = Path("models/adapter")
REPORTS = Path("reports/eval")
MODELS = ("base", "tuned")


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
        "mean_generated_tokens": round(mean(out.new_tokens), 1), "samples": len(sampled),
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


def side_by_side(rows: list[dict], base: dict, tuned: dict, base_texts: list[str], tuned_texts: list[str]
                 ) -> tuple[list[dict], list[dict]]:
    """The rates of both models in long form (before_after.csv) and the samples side by side (samples.jsonl)."""
    rates = [{"metric": key, "model": name, "value": scores[key]}
             for key in metrics.RATES if key in base for name, scores in (("base", base), ("tuned", tuned))]
    samples = [{"question": r["question"], "reference": r["answer"], "base": b, "tuned": t}
               for r, b, t in zip(rows, base_texts, tuned_texts)]
    return rates, samples


def main() -> None:
    name = sys.argv[1] if len(sys.argv) == 2 else None
    if name not in MODELS:
        raise UserError("usage: python -m stages.evaluate base|tuned")
    params = config.load()
    runtime.setup()
    task = tasks.get(params.data.task)
    rows = files.read_jsonl(EVAL_ROWS)
    model, tokenizer = inference.load(BaseModel.read(BASE), ADAPTER if name == "tuned" else None,
                                      params.train.load_in_4bit)
    scores, out = score(model, tokenizer, rows, task, params, name)
    perf = {"generation_tokens_per_second": out.tokens_per_second, "generation_batch_size": out.batch_size}
    if params.eval.mcq.source:
        mcq_scores, perf["mcq_generation_tokens_per_second"] = score_mcq(model, tokenizer, load_mcq(params),
                                                                         params, name)
        scores |= mcq_scores
    files.write_json(REPORTS / name / "metrics.json", {name: scores})
    files.write_json(REPORTS / name / "perf.json", {name: perf | runtime.peak_memory()})
    files.write_jsonl(REPORTS / name / "generations.jsonl", [{"generation": t} for t in out.texts])
    if name == "tuned":
        base = files.read_json(REPORTS / "base/metrics.json")["base"]
        base_texts = [g["generation"] for g in files.read_jsonl(REPORTS / "base/generations.jsonl")]
        rates, samples = side_by_side(rows, base, scores, base_texts, out.texts)
        files.write_csv(REPORTS / "before_after.csv", rates)
        files.write_jsonl(REPORTS / "samples.jsonl", samples)
    print(f"evaluate {name}: eval loss {scores['eval_loss']}, format compliance {scores['format_compliance']}")


if __name__ == "__main__":
    files.run_stage(main)
