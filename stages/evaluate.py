"""evaluate: one model (the base, or the tuned base + adapter) on the held-out rows, and MCQ when asked.

    python -m stages.evaluate base      # dvc.yaml: evaluate_base, rerun only when the base or eval.* change
    python -m stages.evaluate tuned     # dvc.yaml: evaluate, after train

Reads   params.yaml: data.task, data.on_bad_row, eval.*, train.load_in_4bit, train.max_seq_length;
        data/prepared/eval.jsonl, models/base/, eval.mcq.source when set;
        tuned also models/adapter/ and the base's reports/eval/base/{metrics.json,generations.jsonl}
Writes  reports/eval/<model>/metrics.json   {"<model>": {...}}: eval_loss and perplexity (full text),
                                            response_loss, format_compliance, stop_rate, mean_generated_tokens,
                                            samples (questions generated for), and the task's scores: rouge_l
                                            (medical_cot) or ner_precision/recall/f1, ner_f1.<type>,
                                            ner_malformed_lines, ner_not_in_text (cmeee_ner); with
                                            eval.mcq.source: mcq_accuracy (overall and per source shape),
                                            mcq_no_letter, mcq_thinking_tokens, and what the MCQ file lost:
                                            mcq_rows_skipped, mcq_duplicates; prompts_cut (mcq_prompts_cut): prompts
                                            longer than train.max_seq_length - the budget, cut to their end
        reports/eval/<model>/perf.json      generation tokens/s and batch size (and MCQ tokens/s), peak memory
        reports/eval/<model>/generations.jsonl  what the model wrote: each sampled held-out question
                                            (prompt_set held_out), then each MCQ question with its gold and
                                            chosen letter (prompt_set mcq)
        tuned also:
        reports/eval/samples.jsonl          question, reference, base output, tuned output
        reports/eval/before_after.csv       the 0-1 scores (metrics.RATES present) of both, long form, for `dvc plots`
Same prompts and greedy decoding for both, through stages/inference.py: plain transformers whichever backend
trained the adapter, the adapter merged into float32 weights and kept as LoRA layers on 16-bit ones (a bf16 merge
rounds part of a small adapter away: stages/inference.py, load), the static-cache engine (a CUDA graph per decode step
on a GPU) unless eval.engine says `generate`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import mean

from stages import UserError, base_model, config, dataset, files, inference, metrics, prompts, runtime, sources, tasks
from stages.base_model import BaseModel
from stages.tasks import mcq

EVAL_ROWS = Path("data/prepared/eval.jsonl")
BASE = Path("models/base")
ADAPTER = Path("models/adapter")
REPORTS = Path("reports/eval")
MODELS = ("base", "tuned")


def main() -> None:
    name = sys.argv[1] if len(sys.argv) == 2 else None
    if name not in MODELS:
        raise UserError("usage: python -m stages.evaluate base|tuned")
    params = config.load()
    evaluate(name, params.eval, params.data.task, params.data.on_bad_row, params.train.load_in_4bit,
             params.train.max_seq_length)


def evaluate(name: str, evaluation, task_name: str, on_bad_row: str, load_in_4bit: bool, max_seq_length: int
             ) -> None:
    files.require_inputs([EVAL_ROWS, BASE / base_model.BASE_FILE], "prepare")
    outputs = [REPORTS / name / out for out in ("metrics.json", "perf.json", "generations.jsonl")]
    if name == "tuned":
        files.require_inputs([ADAPTER / "adapter_config.json"], "train")
        files.require_inputs([REPORTS / "base/metrics.json", REPORTS / "base/generations.jsonl"], "evaluate_base")
        outputs += [REPORTS / "before_after.csv", REPORTS / "samples.jsonl"]
    files.require_writable(outputs)
    items, cleaned = load_mcq(evaluation.mcq, on_bad_row) if evaluation.mcq.source else (None, None)
    base = read_base() if name == "tuned" else None  # a bad MCQ file or base output fails before any model runs
    runtime.setup()
    task = tasks.get(task_name)
    rows = files.read_jsonl(EVAL_ROWS)
    model, tokenizer = inference.load(BaseModel.read(BASE), ADAPTER if name == "tuned" else None, load_in_4bit)
    scores, out = score(model, tokenizer, rows, task, evaluation, max_seq_length, name)
    perf = {"generation_tokens_per_second": out.tokens_per_second, "generation_batch_size": out.batch_size}
    generations = [{"prompt_set": "held_out", "generation": t} for t in out.texts]
    if items:
        mcq_scores, mcq_out = score_mcq(model, tokenizer, items, evaluation, max_seq_length, name)
        scores |= mcq_scores | {"mcq_rows_skipped": sum(cleaned.skipped.values()),
                                "mcq_duplicates": cleaned.duplicates, "mcq_prompts_cut": mcq_out.prompts_cut}
        perf["mcq_generation_tokens_per_second"] = mcq_out.tokens_per_second
        generations += [{"prompt_set": "mcq", "question": item.question, "gold": item.gold,
                         "chosen": mcq.extract_letter(text, item.options), "generation": text}
                        for item, text in zip(items, mcq_out.texts)]
    files.write_json(REPORTS / name / "metrics.json", {name: scores})
    files.write_json(REPORTS / name / "perf.json", {name: perf | runtime.peak_memory()})
    files.write_jsonl(REPORTS / name / "generations.jsonl", generations)
    if base is not None:
        write_side_by_side(rows, base, scores, out.texts)
    print(f"evaluate {name}: eval loss {scores['eval_loss']}, format compliance {scores['format_compliance']}")


def score(model, tokenizer, rows: list[dict], task, evaluation, max_seq_length: int, label: str
          ) -> tuple[dict, inference.Generations]:
    """Loss on every held-out row, then generations for the first eval.num_samples of them, scored by the task."""
    losses = inference.teacher_forced_loss(model, tokenizer, rows, evaluation.batch_size, max_seq_length)
    sampled = rows[:evaluation.num_samples]
    out = inference.generate(model, tokenizer, [r["prompt"] for r in sampled], evaluation.max_new_tokens,
                             evaluation.batch_size, evaluation.engine, max_seq_length, f"evaluate {label}")
    answers = [prompts.split_generation(t).answer for t in out.texts]
    return {
        "eval_loss": round(losses["full"], 5), "perplexity": metrics.rounded(metrics.perplexity(losses["full"]), 4),
        "response_loss": round(losses["response"], 5),
        "format_compliance": round(metrics.format_compliance(out.texts), 4),
        "stop_rate": round(metrics.stop_rate(out.stopped), 4),
        "mean_generated_tokens": round(mean(out.new_tokens), 1), "samples": len(sampled),
        "prompts_cut": out.prompts_cut,
        **task.score(sampled, answers),
    }, out


def load_mcq(mcq_config, on_bad_row: str) -> tuple[list[mcq.Item], dataset.CleanStats]:
    """The questions to score and what cleaning them skipped (by reason) and dropped as duplicates."""
    source, hub_config = sources.resolve_sample(mcq_config.source, mcq_config.config, mcq.SAMPLES, "eval.mcq.config")
    records = sources.load_records(source, hub_config, None, mcq_config.split, "eval.mcq")
    rows, cleaned = dataset.clean(records, mcq.validate, on_bad_row, mcq_config.max_rows)
    if not rows:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(cleaned.skipped.items())) or "none read"
        raise UserError(f"eval.mcq.source {mcq_config.source!r}: no usable question ({reasons}); fix the file or "
                        "set eval.mcq.source to null")
    return [mcq.Item(**row) for row in rows], cleaned


def score_mcq(model, tokenizer, items: list[mcq.Item], evaluation, max_seq_length: int, label: str
              ) -> tuple[dict, inference.Generations]:
    """MCQ scores over all questions, and the generations they were drawn from."""
    out = inference.generate(model, tokenizer, [mcq.prompt(item) for item in items],
                             evaluation.mcq.max_new_tokens, evaluation.batch_size, evaluation.engine, max_seq_length,
                             f"evaluate {label} MCQ")
    thinking = [len(tokenizer(prompts.split_generation(t).thinking, add_special_tokens=False)["input_ids"])
                for t in out.texts]
    return mcq.score(items, out.texts, thinking), out


def read_base() -> tuple[dict, list[str]]:
    """evaluate_base's scores and held-out generations, checked to be what evaluate_base writes."""
    try:
        scores = files.read_json(REPORTS / "base/metrics.json")["base"]
        texts = [g["generation"] for g in files.read_jsonl(REPORTS / "base/generations.jsonl")
                 if g["prompt_set"] == "held_out"]
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{REPORTS / 'base'}: not what evaluate_base writes ({type(err).__name__}: {err}); run "
                        "evaluate_base again") from None
    return scores, texts


def write_side_by_side(rows: list[dict], base_outputs: tuple[dict, list[str]], tuned: dict, tuned_texts: list[str]
                       ) -> None:
    """Both models' rates in long form (before_after.csv, for `dvc plots`) and the held-out samples side by side
    (samples.jsonl), from the base's outputs and the tuned model's results."""
    base, base_texts = base_outputs
    files.write_csv(REPORTS / "before_after.csv", [
        {"metric": key, "model": name, "value": scores[key]}
        for key in metrics.RATES if key in base for name, scores in (("base", base), ("tuned", tuned))])
    files.write_jsonl(REPORTS / "samples.jsonl", [
        {"question": r["question"], "reference": r["answer"], "base": b, "tuned": t}
        for r, b, t in zip(rows, base_texts, tuned_texts)])

if __name__ == "__main__":
    files.run_stage(main)
